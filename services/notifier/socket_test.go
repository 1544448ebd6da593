package notifier

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
)

const testAppToken = "xapp-test"

// fakeSocket plays Slack's Socket Mode on the fake Slack server:
// apps.connections.open (app token only) answers a one-use ws:// URL on
// the same server, whose connections are handed to the test.
type fakeSocket struct {
	mu        sync.Mutex
	opens     int // successful apps.connections.open calls
	failOpens int // how many next calls answer a retryable error
	conns     chan *fakeConn
}

// fakeConn is the server side of one Socket Mode connection.
type fakeConn struct {
	c *websocket.Conn
	// msgs are the text messages the notifier sent, closed when the
	// connection ends.
	msgs chan []byte
}

func newFakeSocket() *fakeSocket { return &fakeSocket{conns: make(chan *fakeConn, 16)} }

// serve handles the Socket Mode requests and reports whether r was one.
func (fs *fakeSocket) serve(w http.ResponseWriter, r *http.Request) bool {
	switch r.URL.Path {
	case "/api/apps.connections.open":
		if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer "+testAppToken {
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "invalid_auth"})
			return true
		}
		fs.mu.Lock()
		fail := fs.failOpens > 0
		if fail {
			fs.failOpens--
		} else {
			fs.opens++
		}
		n := fs.opens
		fs.mu.Unlock()
		if fail {
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "internal_error"})
			return true
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "url": "ws://" + r.Host + "/link/?ticket=" + strconv.Itoa(n)})
		return true
	case "/link/":
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return true
		}
		c.SetReadLimit(maxBody)
		fc := &fakeConn{c: c, msgs: make(chan []byte, 64)}
		fs.conns <- fc
		defer close(fc.msgs)
		for {
			typ, b, err := c.Read(context.Background())
			if err != nil {
				return true
			}
			if typ == websocket.MessageText {
				fc.msgs <- b
			}
		}
	}
	return false
}

func (fs *fakeSocket) openCount() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.opens
}

func (fs *fakeSocket) failNextOpens(n int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.failOpens = n
}

// accept waits for the notifier's next connection.
func (fs *fakeSocket) accept(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case c := <-fs.conns:
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("fake Slack: no Socket Mode connection within 20s")
		return nil
	}
}

// send writes v (JSON, or a string as it is) to the notifier.
func (c *fakeConn) send(t *testing.T, v any) {
	t.Helper()
	b, ok := v.(string)
	if !ok {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		b = string(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, []byte(b)); err != nil {
		t.Fatalf("fake Slack: write: %v", err)
	}
}

// expectAck waits for the notifier's next message and checks it
// acknowledges envelope id.
func (c *fakeConn) expectAck(t *testing.T, id string) {
	t.Helper()
	select {
	case b, ok := <-c.msgs:
		if !ok {
			t.Fatalf("fake Slack: connection closed before the ack of %s", id)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil || m["envelope_id"] != id || len(m) != 1 {
			t.Fatalf("fake Slack: got %s, want the ack of %s", b, id)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("fake Slack: no ack of %s within 20s", id)
	}
}

// expectClosed waits until the notifier ends the connection, failing on
// any message it sends meanwhile.
func (c *fakeConn) expectClosed(t *testing.T) {
	t.Helper()
	select {
	case b, ok := <-c.msgs:
		if ok {
			t.Fatalf("fake Slack: unexpected message %s", b)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("fake Slack: connection not closed within 20s")
	}
}

func hello() map[string]any {
	return map[string]any{"type": "hello", "num_connections": 1, "connection_info": map[string]any{"app_id": "A1"}}
}

func interactive(id string, payload any) map[string]any {
	return map[string]any{"envelope_id": id, "type": "interactive", "accepts_response_payload": false, "payload": payload}
}

func socketEnv(t *testing.T, signingSecret string) (*env, events.Plan) {
	t.Helper()
	e := newEnv(t, func(c *Config) { c.Slack.AppToken, c.Slack.SigningSecret = testAppToken, signingSecret })
	in := incident(1, "exit_code_1")
	e.publishIncident(events.TransitionDetected, 1, in)
	p := newPlan(in.ID, 15*time.Minute)
	e.propose(p)
	e.slack.waitFor(t, "plan message", func(c slackCall) bool {
		return c.Method == "chat.update" && strings.Contains(blocksText(c), ActionApprove)
	})
	return e, p
}

func decisionSent(c slackCall) bool {
	return c.Method == "chat.update" && strings.Contains(blocksText(c), "Decision sent by alice (U-alice) via slack") &&
		!strings.Contains(blocksText(c), ActionApprove)
}

// Without inbound HTTP: clicks arrive over Socket Mode, each envelope is
// acknowledged, and the payload takes the HTTP endpoint's path: a user
// who is not allowed gets a refusal and decides nothing, an allowed one
// publishes exactly one approval naming the Slack user, via slack.
// Malformed envelopes are acknowledged or ignored and keep the connection.
func TestSlackSocketModeClickDecidesLikeTheHTTPEndpoint(t *testing.T) {
	e, p := socketEnv(t, "")
	// No signing secret: /slack/interactions is not served at all.
	req, _ := http.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader("payload={}"))
	if rec := httpRecord(e, req); rec.Code != http.StatusNotFound {
		t.Fatalf("/slack/interactions without a signing secret: %d", rec.Code)
	}

	c := e.slack.sock.accept(t)
	c.send(t, hello())

	// Malformed and foreign envelopes.
	c.send(t, "not json")
	if err := c.c.Write(context.Background(), websocket.MessageBinary, []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	c.send(t, map[string]any{"type": "interactive", "payload": e.clickPayload("alice", testChannel, ActionApprove, p)}) // no envelope id
	c.send(t, interactive("bad-1", "not an object"))
	c.send(t, interactive("bad-2", nil))
	c.send(t, interactive("bad-3", map[string]any{"type": "block_actions", "user": map[string]any{"id": "U-alice", "username": "alice"},
		"channel": map[string]any{"id": testChannel}, "actions": []map[string]any{{"action_id": ActionApprove, "value": "no-digest"}}}))
	c.send(t, map[string]any{"envelope_id": "ev-1", "type": "events_api", "payload": map[string]any{"event": map[string]any{"type": "app_mention"}}})
	c.send(t, map[string]any{"envelope_id": "x-1", "type": "something_new"})
	for _, id := range []string{"bad-1", "bad-2", "bad-3", "ev-1", "x-1"} {
		c.expectAck(t, id)
	}

	// A user who is not allowed.
	c.send(t, interactive("click-1", e.clickPayload("mallory", testChannel, ActionApprove, p)))
	c.expectAck(t, "click-1")
	refusal := e.slack.waitFor(t, "refusal", func(c slackCall) bool { return c.Method == "response" })
	if !strings.Contains(refusal.Msg.Text, "not allowed") {
		t.Fatalf("refusal = %q", refusal.Msg.Text)
	}
	if ds := e.decisions(); len(ds) != 0 {
		t.Fatalf("refused click decided: %+v", ds)
	}

	// An allowed user.
	c.send(t, interactive("click-2", e.clickPayload("alice", testChannel, ActionApprove, p)))
	c.expectAck(t, "click-2")
	e.slack.waitFor(t, "decision sent", decisionSent)
	ds := e.decisions()
	if len(ds) != 1 || ds[0].Via != events.ViaSlack || ds[0].DecidedBy != "alice (U-alice)" || ds[0].Decision != events.DecisionApproved ||
		ds[0].Digest != p.Digest || ds[0].PlanID != p.ID {
		t.Fatalf("decisions = %+v", ds)
	}

	// Slack redelivers an envelope it thinks was not acknowledged: still
	// one decision. Stopping the notifier finishes what was acknowledged
	// and closes the connection.
	c.send(t, interactive("click-2", e.clickPayload("alice", testChannel, ActionApprove, p)))
	c.expectAck(t, "click-2")
	e.stop()
	c.expectClosed(t)
	if ds := e.decisions(); len(ds) != 1 {
		t.Fatalf("redelivered click: %d decisions", len(ds))
	}
	if n := e.slack.sock.openCount(); n != 1 {
		t.Fatalf("%d connections opened, want 1 (malformed envelopes must not drop it)", n)
	}
	if n := e.slack.count("response"); n != 1 {
		t.Fatalf("%d ephemeral answers, want 1 (the refusal)", n)
	}
}

// A connection that Slack asks to replace (disconnect) is replaced, one
// that drops is reopened with backoff (also through failing
// apps.connections.open calls), and a click on the new connection still
// decides. The signed HTTP endpoint is served as well when a signing
// secret is configured.
func TestSlackSocketModeReconnects(t *testing.T) {
	e, p := socketEnv(t, testSecret)
	req, _ := http.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader("payload={}"))
	if rec := httpRecord(e, req); rec.Code != http.StatusUnauthorized {
		t.Fatalf("/slack/interactions with a signing secret, unsigned: %d", rec.Code)
	}

	c1 := e.slack.sock.accept(t)
	c1.send(t, hello())
	c1.send(t, map[string]any{"type": "disconnect", "reason": "refresh_requested", "debug_info": map[string]any{"host": "fake"}})
	c1.expectClosed(t)

	c2 := e.slack.sock.accept(t)
	c2.send(t, hello())
	e.slack.sock.failNextOpens(2)
	if err := c2.c.CloseNow(); err != nil { // the network drops it
		t.Fatal(err)
	}

	c3 := e.slack.sock.accept(t)
	c3.send(t, hello())
	c3.send(t, interactive("click-3", e.clickPayload("alice", testChannel, ActionApprove, p)))
	c3.expectAck(t, "click-3")
	e.slack.waitFor(t, "decision sent", decisionSent)
	ds := e.decisions()
	if len(ds) != 1 || ds[0].Via != events.ViaSlack || ds[0].DecidedBy != "alice (U-alice)" || ds[0].Digest != p.Digest {
		t.Fatalf("decisions = %+v", ds)
	}
	if n := e.slack.sock.openCount(); n != 3 {
		t.Fatalf("%d connections opened, want 3", n)
	}
}

func TestSlackSocketModeConfig(t *testing.T) {
	nc, _ := startBus(t)
	// The notifier takes the slack keys validated by config.Load.
	if _, err := config.Load(strings.NewReader("notify: {slack: {app_token: "+testAppToken+"}}"), nil); err == nil || !strings.Contains(err.Error(), `"notify.slack.app_token"`) {
		t.Fatalf("app token without bot token: %v", err)
	}
	if _, err := config.Load(strings.NewReader("notify: {slack: {bot_token: xoxb-1, channel: "+testChannel+"}}"), nil); err == nil || !strings.Contains(err.Error(), `"notify.slack.signing_secret"`) {
		t.Fatalf("slack without signing secret or app token: %v", err)
	}
	if _, err := New(Config{Cluster: testCluster, Slack: SlackConfig{Token: "xoxb-1", AppToken: testAppToken, Channel: testChannel}}, Deps{NATS: nc, Signer: testNotifierKey}); err != nil {
		t.Fatalf("socket mode without signing secret: %v", err)
	}
	var kc config.Config
	kc.Kubernetes.ClusterName = testCluster
	kc.Notify.Slack.AppToken = testAppToken
	if got := ConfigFrom(kc).Slack.AppToken; got != testAppToken {
		t.Fatalf("ConfigFrom: app token %q", got)
	}
}
