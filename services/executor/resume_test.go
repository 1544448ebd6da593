package executor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// An executor that dies in the middle of a plan leaves the plan executing,
// its decision unacknowledged and an execution record saying how far it
// got. These tests build exactly that state at each step boundary (the
// crash itself, a SIGKILL of the executor process, is exercised by the
// chaos test in cmd/kaar), redeliver the claiming decision, and check that
// the plan completes with every step applied exactly once: the
// Deployment's generation moves by one per step and no more.
func TestInterruptedExecutionIsResumedWithoutApplyingAStepTwice(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{})

	// Two patches of the same Deployment, both guarded by the generation
	// it had when the plan was made (the executor moves the second
	// guard forward after the first step).
	steps := func(name string, gen int64) []events.Step {
		target := events.ObjectRef{Kind: "Deployment", Namespace: c.ns, Name: name, APIVersion: "apps/v1"}
		return []events.Step{
			{Action: events.ActionSetImage, Title: "Set image to nginx:1.28", Target: target, Risk: events.RiskLow, Mutating: true, PatchType: events.PatchJSON,
				Patch: generationPatch(gen, `{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}`)},
			{Action: events.ActionSetResourceRequests, Title: "Set the memory request to 128Mi", Target: target, Risk: events.RiskMedium, Mutating: true, PatchType: events.PatchJSON,
				Patch: generationPatch(gen, `{"op":"replace","path":"/spec/template/spec/containers/0/resources/requests/memory","value":"128Mi"}`)},
		}
	}
	tests := []struct {
		name string
		// crash leaves the cluster and the execution record as the
		// executor left them when it died; nil record: none written.
		crash func(t *testing.T, p events.Plan) *events.Execution
		// resumedFrom is what the resumed audit record says was done.
		resumedFrom string
	}{
		{name: "after the claim", crash: func(*testing.T, events.Plan) *events.Execution { return nil },
			resumedFrom: "between the claim and the first step"},
		{name: "after the execution record, before the first step", crash: func(_ *testing.T, p events.Plan) *events.Execution {
			return executing(p)
		}, resumedFrom: "no step started"},
		{name: "after step 0 started, before it was applied", crash: func(_ *testing.T, p events.Plan) *events.Execution {
			return executing(p, started(p, 0))
		}, resumedFrom: "step 0 started"},
		{name: "after step 0 was applied, before it was recorded", crash: func(t *testing.T, p events.Plan) *events.Execution {
			c.applyPatch(t, p.Steps[0])
			return executing(p, started(p, 0))
		}, resumedFrom: "step 0 started"},
		{name: "after step 0 was recorded", crash: func(t *testing.T, p events.Plan) *events.Execution {
			gen := c.applyPatch(t, p.Steps[0])
			done := started(p, 0)
			done.Status, done.FinishedAt, done.Generation = events.StepSucceeded, done.StartedAt, gen
			return executing(p, done)
		}, resumedFrom: "step 0 succeeded"},
		{name: "after step 1 was applied, before it was recorded", crash: func(t *testing.T, p events.Plan) *events.Execution {
			gen := c.applyPatch(t, p.Steps[0])
			done := started(p, 0)
			done.Status, done.FinishedAt, done.Generation = events.StepSucceeded, done.StartedAt, gen
			c.applyPatchAt(t, p.Steps[1], gen)
			return executing(p, done, started(p, 1))
		}, resumedFrom: "step 0 succeeded, step 1 started"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("web%d", i)
			dep := c.createDeployment(t, name)
			target := events.ObjectRef{Kind: "Deployment", Namespace: c.ns, Name: name, UID: string(dep.UID), APIVersion: "apps/v1"}
			p := newPlan(t, target, dep.Generation, dep.ResourceVersion, steps(name, dep.Generation)...)
			e.createPlan(p)

			// The state a crash leaves: the plan claimed by decision
			// env, the execution record as far as it got.
			env := decisionEnvelope(t, p)
			cur, rev, err := e.plans.Get(e.context(5*time.Second), p.ID)
			if err != nil {
				t.Fatal(err)
			}
			cur.State = events.PlanExecuting
			cur.History = append(cur.History, claimNote(env.ID, decisionOf(t, env)))
			if _, err := e.plans.Update(e.context(5*time.Second), cur, rev); err != nil {
				t.Fatal(err)
			}
			if rec := tc.crash(t, p); rec != nil {
				if err := e.svc.storeExecution(e.context(5*time.Second), rec); err != nil {
					t.Fatal(err)
				}
			}

			// JetStream redelivers the unacknowledged decision.
			e.publishDecision(env, env.ID)
			trail := e.waitAudit(p.ID, events.AuditExecutionFinished, 1, 2*time.Minute)
			ex := e.execution(p.ID)
			if ex.State != events.ExecutionSucceeded || len(ex.Steps) != 2 {
				t.Fatalf("execution %s (%s), %d steps; trail %v", ex.State, ex.Error, len(ex.Steps), kinds(trail))
			}
			for _, s := range ex.Steps {
				if s.Status != events.StepSucceeded {
					t.Errorf("step %d %s: %s", s.Index, s.Status, s.Message)
				}
			}
			if got, want := c.deployment(t, name).Generation, dep.Generation+2; got != want {
				t.Errorf("generation %d after a two-step plan from generation %d: a step was applied twice or not at all", got, dep.Generation)
			}
			got := c.deployment(t, name).Spec.Template.Spec.Containers[0]
			if got.Image != "nginx:1.28" || got.Resources.Requests.Memory().String() != "128Mi" {
				t.Errorf("container %s requests %v: the plan's changes are not both there", got.Image, got.Resources.Requests)
			}
			i := slices.IndexFunc(trail, func(r events.AuditRecord) bool { return r.Kind == events.AuditResumed })
			if i < 0 || !strings.Contains(trail[i].Message, tc.resumedFrom) {
				t.Errorf("want a resumed audit record saying %q; trail %v", tc.resumedFrom, kinds(trail))
			}
			if e.plan(p.ID).State != events.PlanSucceeded {
				t.Errorf("plan state %s", e.plan(p.ID).State)
			}
		})
	}
}

// A resumed plan whose object somebody else changed during the
// interruption is not applied over that change.
func TestResumeDoesNotApplyOverAnotherChange(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	e := startExecutor(t, startNATS(t), c.executor, Config{})
	dep := c.createDeployment(t, "web")
	target := events.ObjectRef{Kind: "Deployment", Namespace: c.ns, Name: "web", UID: string(dep.UID), APIVersion: "apps/v1"}
	p := newPlan(t, target, dep.Generation, dep.ResourceVersion, events.Step{Action: events.ActionSetImage, Title: "Set image to nginx:1.28",
		Target: target, Risk: events.RiskLow, Mutating: true, PatchType: events.PatchJSON,
		Patch: generationPatch(dep.Generation, `{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}`)})
	e.createPlan(p)
	env := decisionEnvelope(t, p)
	cur, rev, err := e.plans.Get(e.context(5*time.Second), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	cur.State = events.PlanExecuting
	cur.History = append(cur.History, claimNote(env.ID, decisionOf(t, env)))
	if _, err := e.plans.Update(e.context(5*time.Second), cur, rev); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.storeExecution(e.context(5*time.Second), executing(p, started(p, 0))); err != nil {
		t.Fatal(err)
	}
	// Somebody rolls another image while the executor is down.
	c.applyPatch(t, events.Step{Target: target, PatchType: events.PatchJSON,
		Patch: generationPatch(dep.Generation, `{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.29"}`)})

	e.publishDecision(env, env.ID)
	e.waitAudit(p.ID, events.AuditExecutionFinished, 1, time.Minute)
	if img := c.deployment(t, "web").Spec.Template.Spec.Containers[0].Image; img != "nginx:1.29" {
		t.Fatalf("image %s: the resumed plan overwrote another change", img)
	}
	if ex := e.execution(p.ID); ex.State == events.ExecutionSucceeded {
		t.Fatalf("execution %s: want failed or refused as stale", ex.State)
	}
}

// decisionEnvelope is an approval of p at its digest.
func decisionEnvelope(t *testing.T, p events.Plan) events.Envelope {
	t.Helper()
	d := events.Decision{PlanID: p.ID, Digest: p.Digest, Decision: events.DecisionApproved, DecidedBy: "alice", Via: events.ViaCLI, At: time.Now().UTC()}
	testCLIKey.SignDecision(&d)
	env, err := events.New(events.DecisionApproved.EventType(), events.SourceCLI, testCluster, p.ID, d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func decisionOf(t *testing.T, env events.Envelope) events.Decision {
	t.Helper()
	d, err := events.DecodeData[events.Decision](env)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func executing(p events.Plan, steps ...events.StepResult) *events.Execution {
	return &events.Execution{PlanID: p.ID, Digest: p.Digest, State: events.ExecutionExecuting, StartedAt: time.Now().UTC(), Steps: steps}
}

func started(p events.Plan, i int) events.StepResult {
	return events.StepResult{PlanID: p.ID, Digest: p.Digest, Index: i, Action: p.Steps[i].Action, Status: events.StepStarted, StartedAt: time.Now().UTC()}
}

// applyPatch applies a step's patch as the dead executor did, returning
// the Deployment's new generation.
func (c cluster) applyPatch(t *testing.T, st events.Step) int64 {
	t.Helper()
	d, err := c.admin.AppsV1().Deployments(c.ns).Patch(context.Background(), st.Target.Name, types.JSONPatchType, st.Patch, metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("apply step %d: %v", st.Index, err)
	}
	return d.Generation
}

// applyPatchAt applies a later step's patch with its generation guard
// moved to gen, as the executor does.
func (c cluster) applyPatchAt(t *testing.T, st events.Step, gen int64) int64 {
	t.Helper()
	patch, err := rewriteGenerationTest(st.Patch, gen)
	if err != nil {
		t.Fatal(err)
	}
	st.Patch = patch
	return c.applyPatch(t, st)
}
