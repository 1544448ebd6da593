package executor

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"k8s.io/client-go/kubernetes/fake"
)

// The chain of custody (issue 13): whoever can write to the bus cannot
// make the executor act. A plan must be signed by a trusted planner key
// and a decision by a key trusted for its channel; anything else is
// refused with reason untrusted, audited, and never reaches the cluster
// (the fake clientset's action log proves it).

// refusedUntrusted waits for the refusal of p and checks that nothing
// else happened: only a refused audit record naming the reason, no
// execution record, the plan unchanged, no cluster call.
func refusedUntrusted(t *testing.T, e *env, kube *fake.Clientset, p events.Plan, wantDetail string) {
	t.Helper()
	e.waitAudit(p.ID, events.AuditRefused, 1, 10*time.Second)
	e.waitDrained(10 * time.Second)
	trail := e.auditTrail(p.ID)
	if got := kinds(trail); !slices.Equal(got, []events.AuditKind{events.AuditRefused}) {
		t.Fatalf("audit trail %v, want only refused", got)
	}
	if !strings.Contains(trail[0].Message, string(events.RefusalUntrusted)) || !strings.Contains(trail[0].Message, wantDetail) {
		t.Errorf("refusal message %q, want reason %s and %q", trail[0].Message, events.RefusalUntrusted, wantDetail)
	}
	if rec := e.execution(p.ID); rec != nil {
		t.Errorf("an untrusted decision or plan left an execution record: %+v", rec)
	}
	if acts := kube.Actions(); len(acts) != 0 {
		t.Fatalf("the cluster was called: %v", acts)
	}
}

// TestForgedPlanIsRefused: a plan written to kaar_plans by anyone but the
// planner (the review's hand-made privileged plan with risk none and a
// correct digest), approved by a genuine, signed decision.
func TestForgedPlanIsRefused(t *testing.T) {
	t.Parallel()
	attacker := mustSigner()
	forge := map[string]func(p *events.Plan){
		"unsigned, correct digest": func(p *events.Plan) { p.Signature = nil; p.Seal() },
		"signed by another key":    func(p *events.Plan) { attacker.SignPlan(p) },
		"signed by another key, claiming the planner's": func(p *events.Plan) {
			attacker.SignPlan(p)
			p.Signature.Key = testPlannerKey.PublicKey()
		},
	}
	for name, mutate := range forge {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			kube := fake.NewClientset()
			e := startExecutor(t, startNATS(t), kube, Config{})
			p := newPlan(t, webTarget, 2, "100", events.Step{Action: events.ActionSetImage, Title: "Set image", Target: webTarget,
				Risk: events.RiskNone, Mutating: true, PatchType: events.PatchJSON,
				Patch: generationPatch(2, `{"op":"add","path":"/spec/template/spec/containers/0/securityContext","value":{"privileged":true}}`)})
			p.Risk = events.RiskNone
			mutate(&p)
			e.createPlan(p)
			e.decide(p, events.DecisionApproved, "alice", p.Digest)
			refusedUntrusted(t, e, kube, p, "not signed by a trusted planner")
			if got := e.plan(p.ID).State; got != events.PlanProposed {
				t.Errorf("plan state %s, want proposed", got)
			}
		})
	}
}

// TestPlanAlteredAfterSigningIsRefused: every field the person is shown or
// the executor acts on, changed in the stored plan with the (public)
// digest recomputed and the planner's signature kept.
func TestPlanAlteredAfterSigningIsRefused(t *testing.T) {
	t.Parallel()
	alter := map[string]func(p *events.Plan){
		"patch": func(p *events.Plan) {
			p.Steps[0].Patch = generationPatch(2, `{"op":"add","path":"/spec/template/spec/hostNetwork","value":true}`)
		},
		"undo patch": func(p *events.Plan) {
			p.Steps[0].UndoPatch = generationPatch(3, `{"op":"remove","path":"/spec/template/spec/containers"}`)
		},
		"title":      func(p *events.Plan) { p.Steps[0].Title = "Nothing to see" },
		"kubectl":    func(p *events.Plan) { p.Steps[0].Kubectl = "kubectl get pods" },
		"risk":       func(p *events.Plan) { p.Risk, p.Steps[0].Risk = events.RiskNone, events.RiskNone },
		"expires_at": func(p *events.Plan) { p.ExpiresAt = p.ExpiresAt.Add(24 * time.Hour) },
	}
	for name, mutate := range alter {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			kube := fake.NewClientset()
			e := startExecutor(t, startNATS(t), kube, Config{})
			p := newPlan(t, webTarget, 2, "100")
			mutate(&p)
			p.Seal() // the attacker recomputes the digest; the signature stays the planner's
			if err := p.Validate(); err != nil {
				t.Fatalf("altered plan must still look valid: %v", err)
			}
			e.createPlan(p)
			e.decide(p, events.DecisionApproved, "alice", p.Digest)
			refusedUntrusted(t, e, kube, p, "does not verify")
		})
	}
}

// TestUntrustedDecisionsAreRefused: decisions signed by no one, by an
// unknown key, by a trusted key for another channel (a CLI key claiming
// Slack), and via auto while auto-approval is off.
func TestUntrustedDecisionsAreRefused(t *testing.T) {
	t.Parallel()
	attacker := mustSigner()
	cases := []struct {
		name   string
		via    events.Via
		signer *events.Signer
		detail string
	}{
		{"unsigned", events.ViaCLI, nil, "unsigned"},
		{"unknown key", events.ViaCLI, attacker, "key not trusted"},
		{"cli key claiming slack", events.ViaSlack, testCLIKey, "key not trusted"},
		{"via auto with auto-approval off", events.ViaAuto, testExecutorKey, "auto-approval (remediation.auto_approve) is off"},
		{"planner key as a decision key", events.ViaCLI, testPlannerKey, "key not trusted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kube := fake.NewClientset()
			e := startExecutor(t, startNATS(t), kube, Config{})
			p := newPlan(t, webTarget, 2, "100")
			e.createPlan(p)
			d := events.Decision{PlanID: p.ID, Digest: p.Digest, Decision: events.DecisionApproved, DecidedBy: "slack-user U123",
				Via: tc.via, At: time.Now().UTC()}
			if tc.signer != nil {
				tc.signer.SignDecision(&d)
			}
			env, err := events.New(events.TypeDecisionApproved, events.SourceCLI, testCluster, p.ID, d)
			if err != nil {
				t.Fatal(err)
			}
			e.publishDecision(env, events.DecisionMsgID(p.ID, p.Digest, events.DecisionApproved))
			refusedUntrusted(t, e, kube, p, tc.detail)
			if got := e.plan(p.ID).State; got != events.PlanProposed {
				t.Errorf("plan state %s, want proposed", got)
			}
			// The person's genuine decision is still taken afterwards: the
			// forged one changed nothing (the fake cluster has no web
			// Deployment, so the genuine approval ends as stale, past
			// every trust check).
			e.decide(p, events.DecisionApproved, "alice", p.Digest)
			e.waitAudit(p.ID, events.AuditApproved, 1, 10*time.Second)
		})
	}
}

// TestUnsignedRejectionChangesNothing: a forged rejection cannot cancel a
// plan the person is about to approve.
func TestUnsignedRejectionChangesNothing(t *testing.T) {
	t.Parallel()
	kube := fake.NewClientset()
	e := startExecutor(t, startNATS(t), kube, Config{})
	p := newPlan(t, webTarget, 2, "100")
	e.createPlan(p)
	d := events.Decision{PlanID: p.ID, Digest: p.Digest, Decision: events.DecisionRejected, DecidedBy: "mallory", Via: events.ViaCLI, At: time.Now().UTC()}
	env, err := events.New(events.TypeDecisionRejected, events.SourceCLI, testCluster, p.ID, d)
	if err != nil {
		t.Fatal(err)
	}
	e.publishDecision(env, events.DecisionMsgID(p.ID, p.Digest, events.DecisionRejected))
	trail := e.waitAudit(p.ID, events.AuditRefused, 1, 10*time.Second)
	if !strings.Contains(trail[0].Message, "unsigned") {
		t.Errorf("refusal %q", trail[0].Message)
	}
	e.waitDrained(10 * time.Second)
	if got := e.plan(p.ID).State; got != events.PlanProposed {
		t.Fatalf("plan state %s after a forged rejection, want proposed", got)
	}
	if acts := kube.Actions(); len(acts) != 0 {
		t.Fatalf("the cluster was called: %v", acts)
	}
}

// TestTrustNeedsAPlannerKey: an executor with nobody to trust refuses to
// start rather than refuse every plan silently; auto-approval needs the
// executor's own key.
func TestTrustNeedsAPlannerKey(t *testing.T) {
	t.Parallel()
	if _, err := trustFor(Config{}, events.Trust{}, nil); err == nil || !strings.Contains(err.Error(), "no planner key") {
		t.Errorf("empty trust: %v", err)
	}
	if _, err := trustFor(Config{AutoApprove: true}, testTrust(), nil); err == nil || !strings.Contains(err.Error(), "Signer") {
		t.Errorf("auto-approval without a signer: %v", err)
	}
	tr, err := trustFor(Config{}, events.Trust{Planners: []string{testPlannerKey.PublicKey()},
		Channels: map[events.Via][]string{events.ViaAuto: {testExecutorKey.PublicKey()}}}, testExecutorKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Channels[events.ViaAuto]) != 0 {
		t.Errorf("via auto trusted with auto-approval off: %v", tr.Channels[events.ViaAuto])
	}
	tr, err = trustFor(Config{AutoApprove: true}, testTrust(), testExecutorKey)
	if err != nil || !slices.Contains(tr.Channels[events.ViaAuto], testExecutorKey.PublicKey()) {
		t.Errorf("auto-approval on: via auto keys %v (%v)", tr.Channels[events.ViaAuto], err)
	}
}
