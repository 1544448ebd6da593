package executor

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
)

// With remediation.auto_approve, a proposed plan whose every step is at
// or below the risk limit is approved by policy and executed; a riskier
// plan, a plan for a GitOps-managed workload and one in a protected
// namespace wait for a person.
func TestAutoApprovalFollowsThePolicy(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{AutoApprove: true, AutoApproveMaxRisk: events.RiskLow,
		ProtectedNamespaces: []string{"kube-system"}})

	// The risk that counts is the action's (the executor's catalogue),
	// not what the plan claims: a rollout restart is low, a set_image
	// medium.
	plan := func(name string, action events.ActionType, risk events.RiskLevel, edit func(*events.Plan)) events.Plan {
		dep := c.createDeployment(t, name)
		target := events.ObjectRef{Kind: "Deployment", Namespace: c.ns, Name: name, UID: string(dep.UID), APIVersion: "apps/v1"}
		st := events.Step{Action: events.ActionSetImage, Title: "Set image to nginx:1.28",
			Target: target, Risk: risk, Mutating: true, PatchType: events.PatchJSON,
			Patch: generationPatch(dep.Generation, `{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}`)}
		if action == events.ActionRolloutRestart {
			st.Action, st.Title = action, "Restart deployment/"+name
			st.Patch = generationPatch(dep.Generation, `{"op":"add","path":"/spec/template/metadata/annotations","value":{"kubectl.kubernetes.io/restartedAt":"2026-12-06T00:00:00Z"}}`)
		}
		p := newPlan(t, target, dep.Generation, dep.ResourceVersion, st)
		p.Risk = risk
		if edit != nil {
			edit(&p)
		}
		signPlan(&p)
		e.createPlan(p)
		e.announce(p)
		return p
	}
	low := plan("low", events.ActionRolloutRestart, events.RiskLow, nil)
	trail := e.waitAudit(low.ID, events.AuditExecutionFinished, 1, 2*time.Minute)
	if got := kinds(trail); !slices.Contains(got, events.AuditAutoApproved) || !slices.Contains(got, events.AuditApproved) {
		t.Fatalf("audit trail %v: want auto_approved and approved", got)
	}
	if ex := e.execution(low.ID); ex.State != events.ExecutionSucceeded {
		t.Fatalf("auto-approved plan: %s (%s)", ex.State, ex.Error)
	}
	if i := slices.IndexFunc(trail, func(r events.AuditRecord) bool { return r.Kind == events.AuditApproved }); trail[i].Actor != AutoApprover || trail[i].Via != events.ViaAuto {
		t.Errorf("approved by %s via %s, want %s via auto", trail[i].Actor, trail[i].Via, AutoApprover)
	}

	medium := plan("medium", events.ActionSetImage, events.RiskMedium, nil)
	// A set_image that calls itself harmless is still a set_image.
	lying := plan("lying", events.ActionSetImage, events.RiskNone, nil)
	managed := plan("managed", events.ActionRolloutRestart, events.RiskLow, func(p *events.Plan) { p.ManagedBy = "Argo CD" })
	// A warning's plan is a person's to approve, however low its risk.
	warned := plan("warned", events.ActionRolloutRestart, events.RiskLow, func(p *events.Plan) { p.Type = events.IssueMemoryNearLimit })
	e.waitAutoApproverIdle()
	for _, p := range []events.Plan{medium, lying, managed, warned} {
		if got := e.plan(p.ID).State; got != events.PlanProposed {
			t.Errorf("plan %s (%s) is %s: auto-approval must not apply", p.ID, p.Summary, got)
		}
		if ex := e.execution(p.ID); ex != nil {
			t.Errorf("plan %s executed: %+v", p.ID, ex)
		}
	}
	// The same policy with the test's namespace protected (a service
	// that is not running: autoApprovable is pure).
	guarded, err := New(Config{Cluster: testCluster, AutoApprove: true, AutoApproveMaxRisk: events.RiskLow, ProtectedNamespaces: []string{c.ns}},
		Deps{NATS: e.nc, Kube: c.executor, Trust: testTrust(), Signer: testExecutorKey})
	if err != nil {
		t.Fatal(err)
	}
	p := e.plan(low.ID)
	p.State = events.PlanProposed
	if why := guarded.autoApprovable(p); !strings.Contains(why, "changes protected namespace "+c.ns) {
		t.Errorf("protected namespace: %q", why)
	}
}

// announce publishes the plan-proposed event the planner publishes.
func (e *env) announce(p events.Plan) {
	e.t.Helper()
	env, err := events.New(events.PlanEventProposed.EventType(), events.SourcePlanner, testCluster, p.ID, &p)
	if err != nil {
		e.t.Fatal(err)
	}
	subject, err := events.PlanEventSubject(testCluster, events.PlanEventProposed)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := bus.Publish(e.context(10*time.Second), e.js, subject, env, events.PlanEventMsgID(p.ID, events.PlanEventProposed)); err != nil {
		e.t.Fatal(err)
	}
}

// waitAutoApproverIdle waits until the auto-approver has acknowledged
// every plan event published so far.
func (e *env) waitAutoApproverIdle() {
	e.t.Helper()
	name, _ := events.AutoApproveConsumer(testCluster)
	waitFor(e.t, 30*time.Second, "the auto-approver consumed every plan event", func() (bool, string) {
		c, err := e.js.Consumer(e.context(5*time.Second), events.StreamPlanEvents, name)
		if err != nil {
			return false, err.Error()
		}
		info, err := c.Info(e.context(5 * time.Second))
		if err != nil {
			return false, err.Error()
		}
		return info.NumPending == 0 && info.NumAckPending == 0, fmt.Sprintf("pending %d, ack pending %d", info.NumPending, info.NumAckPending)
	})
}
