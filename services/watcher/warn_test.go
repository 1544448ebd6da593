package watcher

import (
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
)

// A warning is an incident of its container: two containers without a
// memory limit are two warnings, each with its evidence, announced once,
// not again when only the numbers move, and resolved when gone.
func TestWarningsAreIncidentsPerContainer(t *testing.T) {
	tr := newTracker("prod", Timing{GroupInterval: 30e9, ResolveWait: 10e9}, nil)
	ev := func(v float64) *events.WarningEvidence {
		return &events.WarningEvidence{Measurements: []events.Measurement{{Name: "memory_working_set", Value: v, Unit: events.UnitBytes}}}
	}
	obs := func(v float64, containers ...string) []ctrlObs {
		var issues []ControllerIssue
		for _, c := range containers {
			issues = append(issues, ControllerIssue{Type: events.IssueMissingResources, Reason: "no_memory_limit", Container: c,
				Message: "container " + c + " has no memory limit", Warning: ev(v)})
		}
		return []ctrlObs{{Chain: []events.ObjectRef{payments}, Issues: issues}}
	}
	due, _ := tr.ObserveOwner(payments, nil, obs(1, "app", "sidecar"), t0)
	if len(due) != 2 {
		t.Fatalf("announced %d, want 2 (one per container)", len(due))
	}
	for _, a := range due {
		in := a.Incident
		if err := in.Validate(); err != nil {
			t.Fatalf("invalid warning incident: %v", err)
		}
		if in.Severity != events.SeverityWarning || in.Warning == nil || in.Container == "" {
			t.Errorf("%s: severity %s, warning %v, container %q", in.ID, in.Severity, in.Warning, in.Container)
		}
		tr.Commit(a)
	}
	if due, _ := tr.ObserveOwner(payments, nil, obs(2, "app", "sidecar"), t0.Add(time.Minute)); len(due) != 0 {
		t.Fatalf("new numbers alone announced %d transitions", len(due))
	}
	snap := tr.Snapshot(nil)
	if len(snap) != 2 || snap[0].Warning.Measurements[0].Value != 2 {
		t.Fatalf("snapshot does not carry the latest numbers: %+v", snap)
	}
	tr.ObserveOwner(payments, nil, obs(2, "app"), t0.Add(2*time.Minute))
	due, _ = tr.ObserveOwner(payments, nil, obs(2, "app"), t0.Add(3*time.Minute))
	if len(due) != 1 || due[0].Transition != events.TransitionResolved || due[0].Incident.Container != "sidecar" {
		t.Fatalf("want the sidecar's warning resolved, got %+v", due)
	}
}

func TestWarningTypesTurnedOff(t *testing.T) {
	off := false
	obs := []ctrlObs{{Chain: []events.ObjectRef{payments}, Issues: []ControllerIssue{
		{Type: events.IssueRolloutStuck, Reason: "progress_deadline_exceeded"},
		{Type: events.IssueMutableImageTag, Reason: "latest_tag", Container: "app"},
		{Type: events.IssueMissingProbes, Reason: "no_probes", Container: "app"},
	}}}
	for name, tc := range map[string]struct {
		opts WarningOptions
		want int
	}{
		"zero config: off":    {WarningOptions{}, 1},
		"on":                  {WarningOptions{Enabled: true}, 3},
		"one type disabled":   {WarningOptions{Enabled: true, Config: config.Warnings{Disabled: []string{"MutableImageTag"}}}, 2},
		"enabled: false wins": {WarningOptions{Enabled: true, Config: config.Warnings{Enabled: &off}}, 1},
	} {
		t.Run(name, func(t *testing.T) {
			s := &Service{cfg: Config{Warnings: tc.opts}}
			got := s.keepOn(obs)
			n := 0
			for _, o := range got {
				n += len(o.Issues)
			}
			if n != tc.want {
				t.Fatalf("kept %d issues, want %d: %+v", n, tc.want, got)
			}
			if len(obs[0].Issues) != 3 {
				t.Fatal("keepOn changed its argument")
			}
		})
	}
}

// A warning's pod count moving (pods bound to a nearly full node) is not
// news: no changed announcement; a failure's is.
func TestWarningPodCountIsNotNews(t *testing.T) {
	tr := newTracker("prod", Timing{GroupInterval: time.Second, ResolveWait: time.Second}, nil)
	node := events.ObjectRef{Kind: "Node", Namespace: events.ClusterScopeNamespace, Name: "n1"}
	obs := func(pods int) []ctrlObs {
		return []ctrlObs{{Chain: []events.ObjectRef{node}, Issues: []ControllerIssue{
			{Type: events.IssueNodeNearlyFull, Reason: "cpu_requested", PodCount: pods, Message: "m"},
			{Type: events.IssueNodePressure, Reason: "memory_pressure", PodCount: pods, Message: "m"}}}}
	}
	due, _ := tr.ObserveOwner(node, nil, obs(10), t0)
	for _, a := range due {
		tr.Commit(a)
	}
	due, _ = tr.ObserveOwner(node, nil, obs(11), t0.Add(time.Minute))
	if len(due) != 1 || due[0].Incident.Type != events.IssueNodePressure || due[0].Transition != events.TransitionChanged {
		t.Fatalf("want only the failure's change announced, got %+v", due)
	}
}
