package watcher

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
)

// The scenario suite (docs/detection.md, "Scenario suite") checks the
// plan kind of every failure: a real planner on the harness's bus
// (startPlanner) plans each incident the watcher publishes, and wantPlan
// checks the plan against the kind the table gives it.

// diagnostic is wantPlan's action for a plan without a mutating step.
const diagnostic events.ActionType = ""

// wantPlan waits for the plan of incident id (of type typ) and fails
// unless it is about the owner kind/name and of the wanted kind:
// diagnostic (no mutating step), or typed whose first mutating step is
// action on the owner, accepted by the API server's dry run.
func wantPlan(t *testing.T, store *bus.PlanStore, id string, typ events.IssueType, kind, name string, action events.ActionType) events.Plan {
	t.Helper()
	p := waitPlan(t, store, id, typ)
	if p.Target.Kind != kind || p.Target.Name != name {
		t.Errorf("plan of %s is about %s/%s, want %s/%s", id, p.Target.Kind, p.Target.Name, kind, name)
	}
	first := slices.IndexFunc(p.Steps, func(s events.Step) bool { return s.Mutating })
	if action == diagnostic {
		if !p.DiagnosticOnly || first >= 0 {
			t.Errorf("plan of %s: want diagnostic, got diagnostic_only %t, steps %s", id, p.DiagnosticOnly, stepActions(p))
		}
		return p
	}
	if p.DiagnosticOnly || first < 0 {
		t.Errorf("plan of %s: want typed %s, got diagnostic_only %t, steps %s, notes %q", id, action, p.DiagnosticOnly, stepActions(p), p.Notes)
		return p
	}
	s := p.Steps[first]
	if s.Action != action || s.Target.Kind != kind || s.Target.Name != name || s.DryRun == nil || !s.DryRun.OK {
		t.Errorf("plan of %s: want a first mutating step %s on %s/%s, dry-run accepted; got steps %s (dry run %+v)",
			id, action, kind, name, stepActions(p), s.DryRun)
	}
	return p
}

// stepActions are a plan's steps as action(target) for messages.
func stepActions(p events.Plan) string {
	var parts []string
	for _, s := range p.Steps {
		parts = append(parts, fmt.Sprintf("%s(%s/%s)", s.Action, s.Target.Kind, s.Target.Name))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
