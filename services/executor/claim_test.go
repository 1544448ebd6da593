package executor

import (
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/kaar-dev/kaar/pkg/events"
)

// TestRedeliveredDecisionMustNameTheClaimedPlansDigest: a claim note and
// the plan's state are outside the signed digest, so a plan left
// executing with a claim note naming a decision is resumed only when that
// decision names the plan's digest. A signed decision for another digest
// whose id a claim note carries is refused, and nothing resumes.
func TestRedeliveredDecisionMustNameTheClaimedPlansDigest(t *testing.T) {
	t.Parallel()
	e := startExecutor(t, startNATS(t), fake.NewClientset(), Config{})
	step := func(title string) events.Step {
		return events.Step{Action: events.ActionRolloutRestart, Title: title, Target: webTarget, Risk: events.RiskLow, Mutating: true,
			PatchType: events.PatchJSON, Patch: generationPatch(2, `{"op":"add","path":"/spec/template/metadata/annotations","value":{"x":"y"}}`)}
	}
	p := newPlan(t, webTarget, 2, "100", step("Restart"))
	other := newPlan(t, webTarget, 2, "100", step("Restart the other way"))
	if other.Digest == p.Digest {
		t.Fatal("the two plans have one digest")
	}
	e.createPlan(p)

	// A signed decision for the other plan's digest, sent for p, whose
	// id the claim note of p names.
	env := decisionEnvelope(t, other)
	d := decisionOf(t, env)
	cur, rev, err := e.plans.Get(e.context(5*time.Second), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	cur.State = events.PlanExecuting
	cur.History = append(cur.History, claimNote(env.ID, d))
	if _, err := e.plans.Update(e.context(5*time.Second), cur, rev); err != nil {
		t.Fatal(err)
	}
	d.PlanID = p.ID
	testCLIKey.SignDecision(&d)
	forged, err := events.New(events.DecisionApproved.EventType(), events.SourceCLI, testCluster, p.ID, d)
	if err != nil {
		t.Fatal(err)
	}
	forged.ID = env.ID

	e.publishDecision(forged, forged.ID)
	trail := e.waitAudit(p.ID, events.AuditRefused, 1, 30*time.Second)
	if !strings.Contains(trail[len(trail)-1].Message, string(events.RefusalDigestMismatch)) {
		t.Errorf("refusal %q does not name %s", trail[len(trail)-1].Message, events.RefusalDigestMismatch)
	}
	e.waitDrained(10 * time.Second)
	for _, r := range e.auditTrail(p.ID) {
		if r.Kind == events.AuditResumed || r.Kind == events.AuditStepStarted {
			t.Errorf("audit %s after a decision for another digest: %s", r.Kind, r.Message)
		}
	}
}
