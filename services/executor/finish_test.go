package executor

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/kaar-dev/kaar/pkg/events"
)

// TestFinishTellsItsOwnWriteFromATakeover: an executor whose final write
// of a plan meets a newer revision records the end only when that
// revision is its own earlier attempt (same history); when another
// executor resumed the plan and finished it (a resume note in the
// history), it records nothing, or the plan would be finished twice (the
// three-node chaos suite found exactly that when the kaar_plans leader was
// killed mid-execution).
func TestFinishTellsItsOwnWriteFromATakeover(t *testing.T) {
	t.Parallel()
	e := startExecutor(t, startNATS(t), fake.NewClientset(), Config{})
	log := testLogger(t)
	for _, tc := range []struct {
		name      string
		meanwhile func(p events.Plan) events.Plan // what landed before the final write
		wantOwned bool
	}{
		{"its own earlier attempt landed", func(p events.Plan) events.Plan {
			p.State = events.PlanSucceeded
			return p
		}, true},
		{"another executor resumed it and is executing", func(p events.Plan) events.Plan {
			p.History = append(p.History, resumeNotePrefix+"2026-12-06T08:00:00Z")
			return p
		}, false},
		{"another executor resumed and finished it", func(p events.Plan) events.Plan {
			p.History = append(p.History, resumeNotePrefix+"2026-12-06T08:00:00Z")
			p.State = events.PlanSucceeded
			return p
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlan(t, webTarget, 2, "100", events.Step{Action: events.ActionRolloutRestart, Title: "Restart", Target: webTarget,
				Risk: events.RiskLow, Mutating: true, PatchType: events.PatchJSON,
				Patch: generationPatch(2, `{"op":"add","path":"/spec/template/metadata/annotations","value":{"x":"y"}}`)})
			e.createPlan(p)
			claimed := p
			claimed.State = events.PlanExecuting
			claimed.History = append(claimed.History, fmt.Sprintf("claimed by test at %s", time.Now().UTC().Format(time.RFC3339)))
			_, rev, err := e.plans.Get(e.context(5*time.Second), p.ID)
			if err != nil {
				t.Fatal(err)
			}
			if rev, err = e.plans.Update(e.context(5*time.Second), claimed, rev); err != nil {
				t.Fatal(err)
			}
			if _, err := e.plans.Update(e.context(5*time.Second), tc.meanwhile(claimed), rev); err != nil {
				t.Fatal(err)
			}
			if got := e.svc.setPlanState(e.context(10*time.Second), log, claimed, rev, events.PlanSucceeded); got != tc.wantOwned {
				t.Errorf("owned %t, want %t", got, tc.wantOwned)
			}
		})
	}
}
