package watcher

import (
	"testing"

	"github.com/kaar-dev/kaar/pkg/events"
)

// A failure of an owner whose only open incidents are warnings is news:
// it is evaluated at once (enqueueFailing), not after the debounce, or
// every workload with a warning (MissingProbes, MissingResources) would
// be detected 500 ms late.
func TestOpenCountsFailuresNotWarnings(t *testing.T) {
	tr := newTracker("prod", Timing{GroupInterval: 30e9, ResolveWait: 10e9}, nil)
	warn := []ctrlObs{{Chain: []events.ObjectRef{payments}, Issues: []ControllerIssue{
		{Type: events.IssueMissingProbes, Reason: "no_probes", Container: "app", Message: "container app has no probes"}}}}
	due, _ := tr.ObserveOwner(payments, nil, warn, t0)
	if len(due) != 1 || !due[0].Incident.Type.IsWarning() {
		t.Fatalf("announced %+v, want the one warning", due)
	}
	tr.Commit(due[0])
	if tr.Open(keyOf(payments)) {
		t.Fatal("an owner with only a warning open counts as having an open incident")
	}
	stuck := append(warn, ctrlObs{Chain: []events.ObjectRef{payments}, Issues: []ControllerIssue{
		{Type: events.IssueRolloutStuck, Reason: "progress_deadline_exceeded"}}})
	due, _ = tr.ObserveOwner(payments, nil, stuck, t0.Add(1e9))
	for _, a := range due {
		tr.Commit(a)
	}
	if !tr.Open(keyOf(payments)) {
		t.Fatal("an owner with a failure open does not count as having an open incident")
	}
}
