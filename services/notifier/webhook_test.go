package notifier

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// recvServer is a webhook receiver that can be down (503) for a while.
type recvServer struct {
	mu       sync.Mutex
	down     bool
	failed   int
	ids      []string // accepted event ids, in arrival order
	types    []string
	badSigs  int
	received chan struct{}
	// clock, when set, is the notifier's test clock, which signatures
	// are checked against (default the real time).
	clock *clock
}

func (r *recvServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() {
		select {
		case r.received <- struct{}{}:
		default:
		}
	}()
	now := time.Now()
	if r.clock != nil {
		now = r.clock.Now()
	}
	if err := VerifySignature("receiver-secret-123", req.Header.Get(HeaderTimestamp), req.Header.Get(HeaderSignature), body, now, 5*time.Minute); err != nil {
		r.badSigs++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.down {
		r.failed++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var ce struct {
		SpecVersion string `json:"specversion"`
		ID          string `json:"id"`
		Type        string `json:"type"`
	}
	if json.Unmarshal(body, &ce) != nil || ce.SpecVersion != "1.0" || ce.ID != req.Header.Get(HeaderEventID) ||
		req.Header.Get("Content-Type") != events.ContentTypeCloudEvents {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.ids = append(r.ids, ce.ID)
	r.types = append(r.types, ce.Type)
	w.WriteHeader(http.StatusNoContent)
}

func (r *recvServer) state() (down bool, failed int, ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.down, r.failed, append([]string(nil), r.ids...)
}

// A receiver that is down for a while gets every event it subscribed to
// when it comes back, in order, signed, as CloudEvents; events outside
// its subject filter never reach it.
func TestWebhookReceiverDownGetsEveryEventInOrder(t *testing.T) {
	rs := &recvServer{down: true, received: make(chan struct{}, 1)}
	srv := httptest.NewServer(rs)
	t.Cleanup(srv.Close)
	e := newEnv(t, func(c *Config) {
		c.Slack = SlackConfig{}
		c.Webhooks = []WebhookConfig{{Name: "ops", URL: srv.URL, Secret: "receiver-secret-123", Subjects: []string{"kaar.c1.audit.>", "kaar.c1.plan.>"}}}
	})
	p := newPlan("", 15*time.Minute)
	var want []string
	for i := range 12 {
		if i == 5 {
			// Not in the receiver's subjects.
			e.publishIncident(events.TransitionDetected, 1, incident(1, "exit_code_1"))
		}
		want = append(want, e.audit(events.AuditStepStarted, p, "kaar-executor", "", events.StepResult{PlanID: p.ID, Digest: p.Digest,
			Index: i, Action: events.ActionRollback, Status: events.StepStarted, StartedAt: time.Now()}))
	}
	// Wait until the receiver has refused a few attempts while down.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, failed, _ := rs.state(); failed >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no delivery attempts while the receiver was down")
		}
		<-rs.received
	}
	rs.mu.Lock()
	rs.down = false
	rs.mu.Unlock()
	// Events published while it comes back are delivered after the others.
	want = append(want, e.audit(events.AuditVerified, p, "kaar-executor", "", events.Verification{PlanID: p.ID, Digest: p.Digest, Healthy: true, CheckedAt: time.Now()}))
	deadline = time.Now().Add(30 * time.Second)
	var got []string
	for {
		_, _, ids := rs.state()
		got = dedup(ids)
		if len(got) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver got %d of %d events", len(got), len(want))
		}
		select {
		case <-rs.received:
		case <-time.After(time.Second):
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event %d: got %s, want %s (order broken)\n got %v\nwant %v", i, got[i], want[i], got, want)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d: an event outside the filter was delivered", len(got), len(want))
	}
	if rs.badSigs != 0 {
		t.Fatalf("%d deliveries with a bad signature", rs.badSigs)
	}
}

func dedup(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func TestInboundApprovalWebhook(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Slack = SlackConfig{} })
	p := newPlan("", 15*time.Minute)
	e.propose(p)
	const secret = "inbound-secret-0123456789"
	post := func(body any, secret string, ts time.Time) (int, InboundAnswer) {
		b, _ := json.Marshal(body)
		req := httptest.NewRequest(http.MethodPost, "/webhooks/approval", bytes.NewReader(b))
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set(HeaderSignature, Sign(secret, ts.Unix(), b))
		rec := httpRecord(e, req)
		var a InboundAnswer
		_ = json.Unmarshal(rec.Body.Bytes(), &a)
		return rec.Code, a
	}
	now := e.clock.Now()
	ok := map[string]any{"plan_id": p.ID, "digest": p.Digest, "decision": "approved"}
	cases := []struct {
		name   string
		body   any
		secret string
		ts     time.Time
		code   int
		field  string
	}{
		{"forged", ok, "wrong-secret-0123456789", now, http.StatusUnauthorized, ""},
		{"replayed", ok, secret, now.Add(-10 * time.Minute), http.StatusUnauthorized, ""},
		{"decided_by of another", map[string]any{"plan_id": p.ID, "digest": p.Digest, "decision": "approved", "decided_by": "pagerduty:jane"}, secret, now, http.StatusBadRequest, "decided_by"},
		{"bad decision", map[string]any{"plan_id": p.ID, "digest": p.Digest, "decision": "maybe"}, secret, now, http.StatusBadRequest, "decision"},
		{"other digest", map[string]any{"plan_id": p.ID, "digest": "sha256:" + string(bytes.Repeat([]byte("a"), 64)), "decision": "approved"}, secret, now, http.StatusConflict, ""},
		{"unknown plan", map[string]any{"plan_id": "0196a1a4-0000-7000-8000-000000000000", "digest": p.Digest, "decision": "approved"}, secret, now, http.StatusNotFound, ""},
	}
	for _, c := range cases {
		code, a := post(c.body, c.secret, c.ts)
		if code != c.code || a.Field != c.field {
			t.Errorf("%s: %d %+v, want %d field %q", c.name, code, a, c.code, c.field)
		}
	}
	if ds := e.decisions(); len(ds) != 0 {
		t.Fatalf("refused requests published %+v", ds)
	}
	if code, a := post(ok, secret, now); code != http.StatusAccepted || a.Decision != "approved" {
		t.Fatalf("signed approval: %d %+v", code, a)
	}
	ds := e.decisions()
	// The deprecated notify.inbound.secret is the sender "webhook".
	if len(ds) != 1 || ds[0].Via != events.ViaWebhook || ds[0].DecidedBy != "webhook" {
		t.Fatalf("decisions %+v", ds)
	}
}
