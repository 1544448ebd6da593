package notifier

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
)

const (
	testCluster = "c1"
	testChannel = "C1"
	testSecret  = "slack-signing-secret"
	testTeam    = "T-ACME"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeSlack plays Slack's Web API: it records chat.postMessage and
// chat.update calls and the ephemeral answers sent to response URLs.
type fakeSlack struct {
	srv *httptest.Server
	mu  sync.Mutex
	// calls in order; method is "chat.postMessage", "chat.update" or
	// "response".
	calls []slackCall
	next  int
	cond  *sync.Cond
	// sock plays Socket Mode: apps.connections.open and the WebSocket.
	sock *fakeSocket
}

type slackCall struct {
	Method string
	Msg    SlackMessage
	Raw    map[string]any
}

func newFakeSlack(t *testing.T) *fakeSlack {
	f := &fakeSlack{sock: newFakeSocket()}
	f.cond = sync.NewCond(&f.mu)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.sock.serve(w, r) {
			return
		}
		b, _ := io.ReadAll(r.Body)
		method := strings.TrimPrefix(r.URL.Path, "/api/")
		if r.URL.Path == "/respond" {
			method = "response"
		} else if r.Header.Get("Authorization") != "Bearer xoxb-test" {
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "invalid_auth"})
			return
		}
		if method == "auth.test" {
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "bot_id": testBotID, "user_id": "U0KAAR"})
			return
		}
		var m SlackMessage
		var raw map[string]any
		_ = json.Unmarshal(b, &m)
		_ = json.Unmarshal(b, &raw)
		f.mu.Lock()
		f.calls = append(f.calls, slackCall{Method: method, Msg: m, Raw: raw})
		f.next++
		ts := fmt.Sprintf("1700000000.%06d", f.next)
		f.cond.Broadcast()
		f.mu.Unlock()
		switch method {
		case "chat.postMessage":
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": testChannel, "ts": ts})
		case "chat.update":
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS})
		default:
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": true})
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSlack) snapshot() []slackCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]slackCall(nil), f.calls...)
}

// last is the latest call of method (zero if none): other calls, such as
// the plan's own message, may arrive after it.
func (f *fakeSlack) last(method string) slackCall {
	calls := f.snapshot()
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].Method == method {
			return calls[i]
		}
	}
	return slackCall{}
}

func (f *fakeSlack) count(method string) int {
	n := 0
	for _, c := range f.snapshot() {
		if c.Method == method {
			n++
		}
	}
	return n
}

// waitFor waits until some call satisfies ok and returns it.
func (f *fakeSlack) waitFor(t *testing.T, what string, ok func(c slackCall) bool) slackCall {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		for _, c := range f.calls {
			if ok(c) {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("fake Slack: no %s within 20s; calls: %s", what, describe(f.calls))
		}
		timer := time.AfterFunc(200*time.Millisecond, func() { f.mu.Lock(); f.cond.Broadcast(); f.mu.Unlock() })
		f.cond.Wait()
		timer.Stop()
	}
}

func describe(calls []slackCall) string {
	var b strings.Builder
	for _, c := range calls {
		fmt.Fprintf(&b, "\n  %s ts=%s thread=%s text=%q", c.Method, c.Msg.TS, c.Msg.ThreadTS, c.Msg.Text)
	}
	return b.String()
}

// blocksText is every text of a message's blocks, for assertions.
func blocksText(c slackCall) string {
	b, _ := json.Marshal(c.Raw["blocks"])
	return string(b)
}

// env is one test bus with a running notifier.
type env struct {
	t     *testing.T
	nc    *nats.Conn
	js    jetstream.JetStream
	plans *bus.PlanStore
	clock *clock
	slack *fakeSlack
	svc   *Service
	h     http.Handler
	stop  func()
}

func startBus(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{DontListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := emb.Connect(ctx, bus.ConnectOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Provision(ctx, js, bus.Config{Clusters: []string{testCluster}}); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func newEnv(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	nc, js := startBus(t)
	e := &env{t: t, nc: nc, js: js, clock: &clock{t: time.Now()}, slack: newFakeSlack(t)}
	ps, err := bus.OpenPlanStore(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	e.plans = ps
	cfg := Config{
		Cluster: testCluster,
		Slack: SlackConfig{Token: "xoxb-test", SigningSecret: testSecret, Channel: testChannel,
			APIURL: e.slack.srv.URL + "/api/", AllowedUsers: []string{"U-alice"}, AllowedTeams: []string{testTeam}},
		InboundSecret: "inbound-secret-0123456789",
		RetryBase:     20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		Tick: time.Hour, // tests call tick themselves
	}
	if mutate != nil {
		mutate(&cfg)
	}
	e.start(cfg)
	return e
}

func (e *env) start(cfg Config) {
	t := e.t
	// The notifier binds to what "kaar bus provision" declares for cfg.
	decl, err := BusDeclarations(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Provision(context.Background(), e.js, bus.Config{Clusters: []string{testCluster}, Notify: decl}); err != nil {
		t.Fatal(err)
	}
	svc, err := New(cfg, Deps{NATS: e.nc, Now: e.clock.Now, Logger: testLogger(t), Signer: testNotifierKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	select {
	case <-svc.Ready():
	case err := <-done:
		t.Fatalf("notifier stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("notifier not ready within 20s")
	}
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("notifier Run: %v", err)
		}
	}
	t.Cleanup(e.stop)
	e.svc, e.h = svc, svc.Handler()
}

func incident(pods int, reason string) events.Incident {
	now := time.Now().UTC()
	code := int32(1)
	in := events.Incident{Cluster: testCluster, Namespace: "shop", Owner: events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web"},
		Container: "app", Type: events.IssueCrashLoopBackOff, Reason: reason, Message: "back-off 40s <restarting>", ExitCode: &code,
		RestartCount: 5, Pods: []string{"web-1"}, PodCount: pods, FirstSeen: now.Add(-time.Minute), LastSeen: now, Count: 3, Severity: events.SeverityHigh}
	in.ID = events.IncidentID(in.Cluster, in.Namespace, in.Owner.Kind, in.Owner.Name, in.Container, in.Type)
	return in
}

func (e *env) publishIncident(tr events.Transition, obs int64, in events.Incident) {
	e.t.Helper()
	ev := events.IncidentEvent{Transition: tr, Incident: in, ObservedAt: time.Now().UTC(), Observation: obs}
	env, err := events.New(tr.EventType(), events.SourceWatcher, testCluster, in.ID, ev)
	if err != nil {
		e.t.Fatal(err)
	}
	subj, _ := events.IssueSubject(testCluster, in.Namespace, in.Type)
	if _, err := bus.Publish(context.Background(), e.js, subj, env, events.IncidentMsgID(in.ID, obs)+"-"+uuid.NewString()); err != nil {
		e.t.Fatal(err)
	}
}

func newPlan(incidentID string, expiresIn time.Duration) events.Plan {
	now := time.Now().UTC()
	target := events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web", APIVersion: "apps/v1"}
	p := events.Plan{ID: uuid.NewString(), IncidentID: incidentID, Cluster: testCluster, Namespace: "shop", Target: target,
		TargetResourceVersion: "42", Type: events.IssueCrashLoopBackOff, Summary: "Roll web back to revision 3",
		Steps: []events.Step{{Index: 0, Action: events.ActionRollback, Title: "Roll back to revision 3", Target: target,
			Params: map[string]string{events.ParamRevision: "3"}, PatchType: events.PatchStrategic, Patch: json.RawMessage(`{"spec":{"template":{}}}`),
			Kubectl: "kubectl rollout undo deployment/web -n shop --to-revision=3", Risk: events.RiskLow, Mutating: true}},
		Evidence: []events.Evidence{{Kind: events.EvidenceLogs, Title: "Previous logs", Source: "pod/web-1 app", Lines: []string{"panic: <nil> map"}}},
		Risk:     events.RiskLow, State: events.PlanProposed, CreatedAt: now, ExpiresAt: now.Add(expiresIn)}
	p.Seal()
	return p
}

// propose stores the plan and announces it, as the planner does.
func (e *env) propose(p events.Plan) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.plans.Create(ctx, p, time.Until(p.ExpiresAt)); err != nil {
		e.t.Fatal(err)
	}
	e.publishPlanEvent(events.PlanEventProposed, p)
}

func (e *env) publishPlanEvent(ev events.PlanEvent, p events.Plan) {
	e.t.Helper()
	env, err := events.New(ev.EventType(), events.SourcePlanner, testCluster, p.ID, &p)
	if err != nil {
		e.t.Fatal(err)
	}
	subj, _ := events.PlanEventSubject(testCluster, ev)
	if _, err := bus.Publish(context.Background(), e.js, subj, env, events.PlanEventMsgID(p.ID, ev)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) audit(kind events.AuditKind, p events.Plan, actor string, via events.Via, data any) string {
	e.t.Helper()
	raw, _ := json.Marshal(data)
	rec := events.AuditRecord{ID: uuid.NewString(), PlanID: p.ID, Digest: p.Digest, Kind: kind, Actor: actor, Via: via,
		At: time.Now().UTC(), Message: string(kind), Data: raw}
	env, err := events.New(kind.EventType(), events.SourceExecutor, testCluster, p.ID, rec)
	if err != nil {
		e.t.Fatal(err)
	}
	subj, _ := events.AuditSubject(testCluster, kind)
	if _, err := bus.Publish(context.Background(), e.js, subj, env, events.AuditMsgID(rec.ID)); err != nil {
		e.t.Fatal(err)
	}
	return env.ID
}

// clickPayload is Slack's block_actions payload for a click on a kaar
// button of plan p by user in channel.
func (e *env) clickPayload(user, channel, action string, p events.Plan) map[string]any {
	return map[string]any{
		"type":         "block_actions",
		"team":         map[string]any{"id": testTeam, "domain": "acme"},
		"user":         map[string]any{"id": "U-" + user, "username": user, "name": user, "team_id": testTeam},
		"channel":      map[string]any{"id": channel},
		"container":    map[string]any{"type": "message", "channel_id": channel, "message_ts": "1700000000.000001"},
		"response_url": e.slack.srv.URL + "/respond",
		"actions":      []map[string]any{{"action_id": action, "block_id": "kaar_decision", "type": "button", "value": p.ID + "|" + p.Digest}},
	}
}

// click sends a Slack block_actions interaction as Slack would, signed
// with secret at ts.
func (e *env) click(user, channel, action string, p events.Plan, secret string, ts time.Time) *httptest.ResponseRecorder {
	b, _ := json.Marshal(e.clickPayload(user, channel, action, p))
	body := "payload=" + url.QueryEscape(string(b))
	tss := strconv.FormatInt(ts.Unix(), 10)
	req := httptest.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(slackTimestampHeader, tss)
	req.Header.Set(slackSignatureHeader, SlackSignature(secret, tss, []byte(body)))
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// decisions returns the decisions waiting on APPROVALS.
func (e *env) decisions() []events.Decision {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.js.Stream(ctx, events.StreamApprovals)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []events.Decision
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		env, err := events.Decode(m.Data)
		if err != nil {
			e.t.Fatal(err)
		}
		d, err := events.DecodeData[events.Decision](env)
		if err != nil {
			e.t.Fatal(err)
		}
		// Every decision the notifier publishes is signed by its key.
		if err := events.VerifyDecision(d, []string{testNotifierKey.PublicKey()}); err != nil {
			e.t.Fatalf("decision %d: %v", seq, err)
		}
		out = append(out, d)
	}
	return out
}

// testNotifierKey is the decision key of every test notifier.
var testNotifierKey = func() *events.Signer {
	s, err := events.GenerateSigner()
	if err != nil {
		panic(err)
	}
	return s
}()

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
