package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/kubernetes/fake"
)

// These tests cover the decisions that must never reach the cluster. The
// refusal happens before any Kubernetes call, so the fake clientset is
// enough, and its action log proves that nothing was called at all.

var webTarget = events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web", APIVersion: "apps/v1"}

func TestRefusalsNeverTouchTheCluster(t *testing.T) {
	t.Parallel()
	diagnostic := func(t *testing.T) events.Plan {
		return newPlan(t, webTarget, 2, "100", events.Step{Action: events.ActionCheckLogs, Title: "read the logs", Risk: events.RiskNone})
	}
	tests := []struct {
		name     string
		cfg      Config
		plan     func(t *testing.T) events.Plan
		create   bool
		reason   events.RefusalReason
		sentinel error
	}{
		{name: "paused", cfg: Config{Paused: true}, plan: func(t *testing.T) events.Plan { return newPlan(t, webTarget, 2, "100") },
			create: true, reason: events.RefusalPaused, sentinel: ErrPaused},
		{name: "plan missing (window passed)", plan: func(t *testing.T) events.Plan { return newPlan(t, webTarget, 2, "100") },
			reason: events.RefusalExpired, sentinel: ErrPlanExpired},
		{name: "diagnostic only", plan: diagnostic, create: true, reason: events.RefusalNotApproved, sentinel: ErrNotApproved},
		{name: "protected namespace", cfg: Config{ProtectedNamespaces: []string{"kube-system"}},
			plan: func(t *testing.T) events.Plan {
				return newPlan(t, events.ObjectRef{Kind: "Deployment", Namespace: "kube-system", Name: "coredns"}, 1, "7")
			}, create: true, reason: events.RefusalNotApproved, sentinel: ErrNotApproved},
		{name: "another cluster's plan", plan: func(t *testing.T) events.Plan {
			p := newPlan(t, webTarget, 2, "100")
			p.Cluster = "prod"
			signPlan(&p)
			return p
		}, create: true, reason: events.RefusalNotApproved, sentinel: ErrNotApproved},
		{name: "approved by its requester", cfg: Config{RequireDistinctApprover: true}, plan: func(t *testing.T) events.Plan {
			p := newPlan(t, webTarget, 2, "100")
			p.RequestedBy = "alice" // the approver below
			p.Seal()
			signPlan(&p)
			return p
		}, create: true, reason: events.RefusalNotApproved, sentinel: ErrNotApproved},
		{name: "superseded", plan: func(t *testing.T) events.Plan {
			p := newPlan(t, webTarget, 2, "100")
			p.State = events.PlanSuperseded
			return p
		}, create: true, reason: events.RefusalNotApproved, sentinel: ErrNotApproved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kube := fake.NewClientset()
			e := startExecutor(t, startNATS(t), kube, tt.cfg)
			p := tt.plan(t)
			if tt.create {
				e.createPlan(p)
			}
			e.decide(p, events.DecisionApproved, "alice", p.Digest)
			e.waitAudit(p.ID, events.AuditRefused, 1, 10*time.Second)
			e.waitDrained(10 * time.Second)
			trail := e.auditTrail(p.ID)
			if got := kinds(trail); !slices.Equal(got, []events.AuditKind{events.AuditRefused}) {
				t.Fatalf("audit trail %v", got)
			}
			var ex events.Execution
			if err := json.Unmarshal(trail[0].Data, &ex); err != nil || ex.RefusalReason != tt.reason {
				t.Fatalf("refused record data %+v (%v), want reason %s", ex, err, tt.reason)
			}
			if rec := e.execution(p.ID); rec == nil || rec.State != events.ExecutionRefused || rec.RefusalReason != tt.reason {
				t.Fatalf("execution record %+v", rec)
			}
			if tt.create {
				if got := e.plan(p.ID).State; got != p.State {
					t.Errorf("plan state %s, want %s unchanged", got, p.State)
				}
			}
			if acts := kube.Actions(); len(acts) != 0 {
				t.Fatalf("the cluster was called: %v", acts)
			}
			if n := testutil.ToFloat64(e.svc.metrics.refusals.WithLabelValues(string(tt.reason))); n != 1 {
				t.Errorf("refusals_total{reason=%s} = %v", tt.reason, n)
			}
			// The same refusal through precheck, for errors.Is.
			if tt.create {
				d := events.Decision{Digest: p.Digest, DecidedBy: "alice"}
				if r := e.svc.precheck(p, d); r == nil || !errors.Is(r, tt.sentinel) {
					t.Errorf("precheck: %v, want %v", r, tt.sentinel)
				}
			}
		})
	}
}

// Separation of duties: only the requester is refused, only with the
// option, and plans nobody requested are not restricted.
func TestDistinctApprover(t *testing.T) {
	t.Parallel()
	p := newPlan(t, webTarget, 2, "100")
	p.RequestedBy = "alice"
	p.Seal()
	signPlan(&p)
	auto := newPlan(t, webTarget, 2, "100")
	strict := &Service{cfg: Config{RequireDistinctApprover: true}}
	r := strict.distinctApprover(p, events.Decision{DecidedBy: "alice"})
	if r == nil || !errors.Is(r, ErrNotApproved) || r.Reason != events.RefusalNotApproved ||
		!strings.Contains(r.Error(), "require_distinct_approver") || !strings.Contains(r.Error(), `"alice"`) {
		t.Errorf("requester's approval: %v", r)
	}
	if r := strict.distinctApprover(p, events.Decision{DecidedBy: "bob"}); r != nil {
		t.Errorf("another's approval: %v", r)
	}
	if r := strict.distinctApprover(auto, events.Decision{DecidedBy: "alice"}); r != nil {
		t.Errorf("a plan nobody requested: %v", r)
	}
	if r := (&Service{}).distinctApprover(p, events.Decision{DecidedBy: "alice"}); r != nil {
		t.Errorf("without the option: %v", r)
	}
	c := config.Default()
	c.Remediation.RequireDistinctApprover = true
	if !ConfigFrom(c).RequireDistinctApprover {
		t.Error("ConfigFrom drops remediation.require_distinct_approver")
	}
}

func TestPrecheckOrder(t *testing.T) {
	t.Parallel()
	n := startNATS(t)
	e := startExecutor(t, n, fake.NewClientset(), Config{Paused: true})
	p := newPlan(t, webTarget, 2, "100")
	d := events.Decision{Digest: p.Digest}
	wrong := events.Decision{Digest: "sha256:" + strings.Repeat("0", 64)}
	expired := p
	expired.ExpiresAt = time.Now().Add(-time.Second)
	executed := p
	executed.State = events.PlanSucceeded
	tests := []struct {
		name string
		p    events.Plan
		d    events.Decision
		want error
	}{
		{"executed beats everything", executed, wrong, ErrAlreadyExecuted},
		{"expired beats a wrong digest", expired, wrong, ErrPlanExpired},
		{"digest beats paused", p, wrong, ErrDigestMismatch},
		{"paused last", p, d, ErrPaused},
	}
	for _, tt := range tests {
		if r := e.svc.precheck(tt.p, tt.d); r == nil || !errors.Is(r, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, r, tt.want)
		}
	}
}

// Messages that are not valid decisions for this executor are terminated
// (never retried, never executed) and the executor keeps working.
func TestInvalidDecisionsAreTerminated(t *testing.T) {
	t.Parallel()
	kube := fake.NewClientset()
	e := startExecutor(t, startNATS(t), kube, Config{})
	p := newPlan(t, webTarget, 2, "100")
	e.createPlan(p)
	subject, _ := events.ApprovalSubject(testCluster, p.ID)
	otherSubject, _ := events.ApprovalSubject(testCluster, uuid.Must(uuid.NewV7()).String())

	approve := events.Decision{PlanID: p.ID, Digest: p.Digest, Decision: events.DecisionApproved, DecidedBy: "alice", Via: events.ViaCLI, At: time.Now().UTC()}
	testCLIKey.SignDecision(&approve)
	good, err := events.New(events.TypeDecisionApproved, events.SourceCLI, testCluster, p.ID, approve)
	if err != nil {
		t.Fatal(err)
	}
	mismatched := good
	mismatched.Type = events.TypeDecisionRejected // data says approved
	audit, err := events.New(events.AuditClaimed.EventType(), events.SourceExecutor, testCluster, p.ID,
		events.AuditRecord{ID: uuid.Must(uuid.NewV7()).String(), PlanID: p.ID, Kind: events.AuditClaimed, Actor: "x", At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	foreign := good
	foreign.Cluster = "prod"
	noDigest := good
	noDigest.Data = json.RawMessage(strings.Replace(string(good.Data), p.Digest, "", 1))
	enc := func(v any) []byte { b, _ := json.Marshal(v); return b }

	msgs := []struct {
		name    string
		subject string
		body    []byte
	}{
		{"not JSON", subject, []byte("approve it!")},
		{"not an envelope", subject, []byte(`{"plan_id":"` + p.ID + `"}`)},
		{"an audit record, not a decision", subject, enc(audit)},
		{"type does not match the decision", subject, enc(mismatched)},
		{"another cluster's envelope", subject, enc(foreign)},
		{"decision without a digest", subject, enc(noDigest)},
		{"decision on another plan's subject", otherSubject, enc(good)},
	}
	for i, m := range msgs {
		msg := nats.NewMsg(m.subject)
		msg.Data = m.body
		if _, err := e.js.PublishMsg(e.context(5*time.Second), msg, jetstream.WithMsgID("bad-"+string(rune('a'+i)))); err != nil {
			t.Fatalf("%s: publish: %v", m.name, err)
		}
	}
	e.waitDrained(15 * time.Second)
	if n := testutil.ToFloat64(e.svc.metrics.invalid); n != float64(len(msgs)) {
		t.Errorf("invalid_messages_total = %v, want %d", n, len(msgs))
	}
	if trail := e.auditTrail(p.ID); len(trail) != 0 {
		t.Errorf("invalid messages were audited: %v", kinds(trail))
	}
	if got := e.plan(p.ID).State; got != events.PlanProposed {
		t.Errorf("plan state %s", got)
	}
	if acts := kube.Actions(); len(acts) != 0 {
		t.Fatalf("the cluster was called: %v", acts)
	}

	// Still serving: a valid rejection is processed.
	e.decide(p, events.DecisionRejected, "alice", p.Digest)
	e.waitAudit(p.ID, events.AuditRejected, 1, 10*time.Second)
}

func TestStatusEndpoint(t *testing.T) {
	t.Parallel()
	e := startExecutor(t, startNATS(t), fake.NewClientset(), Config{})
	subject, _ := events.ServiceSubject(testCluster, events.ServiceExecutor, events.VerbStatus)
	ask := func(body string) (events.ExecutionStatusResponse, error) {
		msg, err := e.nc.RequestWithContext(e.context(5*time.Second), subject, []byte(body))
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		return events.DecodeReply[events.ExecutionStatusResponse](msg.Data, msg.Header.Get(events.HeaderError))
	}
	var er *events.ErrorReply
	for _, body := range []string{`{}`, `{"plan_id":"nope"}`, `not json`} {
		if _, err := ask(body); !errors.As(err, &er) || er.Code != events.CodeInvalidArgument || !errors.Is(err, events.ErrInvalid) {
			t.Errorf("%s: %v, want invalid_argument", body, err)
		} else if body != "not json" && er.Field != "plan_id" {
			t.Errorf("%s: field %q, want plan_id", body, er.Field)
		}
	}
	if _, err := ask(`{"plan_id":"` + uuid.Must(uuid.NewV7()).String() + `"}`); !errors.As(err, &er) || er.Code != events.CodeNotFound {
		t.Errorf("unknown plan: %v, want not_found", err)
	}
	p := newPlan(t, webTarget, 2, "100")
	e.createPlan(p)
	resp, err := ask(`{"plan_id":"` + p.ID + `"}`)
	if err != nil || resp.PlanState != events.PlanProposed || resp.Execution != nil {
		t.Errorf("proposed plan: %+v %v", resp, err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	n := startNATS(t)
	if _, err := New(Config{Cluster: "UPPER"}, Deps{NATS: n.nc, Kube: fake.NewClientset()}); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("bad cluster: %v", err)
	}
	if _, err := New(Config{Cluster: "c"}, Deps{Kube: fake.NewClientset()}); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("no NATS: %v", err)
	}
	if _, err := New(Config{Cluster: "c"}, Deps{NATS: n.nc}); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("no Kubernetes: %v", err)
	}
}

// The kill switch in kaar_control (set from MCP, the CLI or any bus
// client) stops new executions at once and names who paused and why;
// switched off, approvals are processed again.
func TestKillSwitchOnTheBusPausesAndResumes(t *testing.T) {
	t.Parallel()
	kube := fake.NewClientset()
	e := startExecutor(t, startNATS(t), kube, Config{})
	set := func(paused bool) {
		t.Helper()
		p := events.Pause{Paused: paused, By: "ops@example.com", Via: events.ViaMCP, Reason: "change freeze", At: time.Now().UTC()}
		if err := bus.SetPause(e.context(5*time.Second), e.js, testCluster, p); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the executor sees the switch", func() (bool, string) {
			cur := e.svc.pause.Load()
			return cur != nil && cur.Paused == paused, fmt.Sprintf("%+v", cur)
		})
	}
	set(true)
	p := newPlan(t, webTarget, 2, "100")
	e.createPlan(p)
	e.decide(p, events.DecisionApproved, "alice", p.Digest)
	e.waitAudit(p.ID, events.AuditRefused, 1, 10*time.Second)
	rec := e.execution(p.ID)
	if rec == nil || rec.RefusalReason != events.RefusalPaused || !strings.Contains(rec.Error, "ops@example.com") || !strings.Contains(rec.Error, "change freeze") {
		t.Fatalf("execution record %+v: want refused paused, naming who and why", rec)
	}
	if acts := kube.Actions(); len(acts) != 0 {
		t.Fatalf("the cluster was called while paused: %v", acts)
	}

	set(false)
	p2 := newPlan(t, webTarget, 2, "100")
	e.createPlan(p2)
	e.decide(p2, events.DecisionApproved, "alice", p2.Digest)
	e.waitAudit(p2.ID, events.AuditExecutionFinished, 1, 20*time.Second)
	// The fake cluster has no such Deployment: the plan gets as far as
	// the stale check, which a paused executor never reaches.
	if rec := e.execution(p2.ID); rec == nil || rec.RefusalReason == events.RefusalPaused {
		t.Fatalf("after resume: %+v", rec)
	}
}
