package executor

import (
	"strings"
	"testing"

	"github.com/kaar-dev/kaar/pkg/events"
)

// A MemoryNearLimit plan (a warning, planned on request) raises the limit
// with the same set_memory_limit step an OOMKilled plan has: the
// catalogue accepts it on the same terms, whatever the issue type, and
// refuses it when it touches more than that step may (a path outside
// resources, here the image).
func TestMemoryNearLimitPlanPassesTheCatalogueLikeAnOOMKilledRaise(t *testing.T) {
	warn := plannerPlan(t, "warning-memory-near-limit-raise")
	oom := plannerPlan(t, "deployment-set-memory-limit")
	if warn.Type != events.IssueMemoryNearLimit || oom.Type != events.IssueOOMKilled {
		t.Fatalf("types %s and %s", warn.Type, oom.Type)
	}
	for _, p := range []events.Plan{warn, oom} {
		if st := mutating(t, &p); st.Action != events.ActionSetMemoryLimit {
			t.Fatalf("%s: mutating step %s", p.Type, st.Action)
		}
		if r := validatePlanSteps(p, catalogueTestConfig); r != nil {
			t.Errorf("%s plan refused: %v", p.Type, r)
		}
	}
	tampered := plannerPlan(t, "warning-memory-near-limit-raise")
	st := mutating(t, &tampered)
	ops := ops(t, st.Patch)
	ops = append(ops, map[string]any{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "evil:1"})
	st.Patch = enc(t, ops)
	r := validatePlanSteps(tampered, catalogueTestConfig)
	if r == nil || !strings.Contains(r.Error(), "step 0 (set_memory_limit)") {
		t.Fatalf("a set_memory_limit step that also sets the image: refusal %v", r)
	}
}
