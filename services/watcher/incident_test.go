package watcher

import (
	"fmt"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

var (
	t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	// timing is an Alertmanager-style configured group wait (the default
	// has none: see TestFirstFailingPodIsDetectedAtOnce).
	timing   = Timing{GroupWait: 5 * time.Second, GroupInterval: 30 * time.Second, ResolveWait: 10 * time.Second}
	payments = events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "payments-api", APIVersion: "apps/v1"}
	rsChain  = []events.ObjectRef{{Kind: "ReplicaSet", Namespace: "shop", Name: "payments-api-7d9f"}, payments}
)

func exit(code int32) *int32 { return &code }

// crashing returns n pods of payments-api crash-looping with code.
func crashing(n int, code int32, restarts int32) []podObs {
	pods := make([]podObs, n)
	for i := range pods {
		pods[i] = podObs{Name: fmt.Sprintf("payments-api-7d9f-%03d", i), Chain: rsChain, Issues: []PodIssue{{
			Type: events.IssueCrashLoopBackOff, Container: "app", Reason: exitReason(code), Message: "exited",
			ExitCode: exit(code), RestartCount: restarts}}}
	}
	return pods
}

// step observes, checks the announcements are valid events, and commits
// them as the service does after publishing.
func step(t *testing.T, tr *tracker, owner events.ObjectRef, pods []podObs, now time.Time) ([]announcement, time.Time) {
	t.Helper()
	due, next := tr.Observe(owner, pods, now)
	for _, a := range due {
		ev := events.IncidentEvent{Transition: a.Transition, Incident: a.Incident, ObservedAt: a.At, Observation: a.Observation}
		if err := ev.Validate(); err != nil {
			t.Fatalf("announcement %s is not a valid event: %v", a.Transition, err)
		}
		tr.Commit(a)
	}
	return due, next
}

func transitions(due []announcement) []string {
	out := make([]string, len(due))
	for i, a := range due {
		out[i] = fmt.Sprintf("%s/%d/pods=%d", a.Transition, a.Observation, a.Incident.PodCount)
	}
	return out
}

func expect(t *testing.T, due []announcement, want ...string) {
	t.Helper()
	got := transitions(due)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("announcements = %v, want %v", got, want)
	}
}

func TestFiftyReplicaCrashIsOneIncident(t *testing.T) {
	tr := newTracker("prod", timing, nil)
	pods := crashing(50, 1, 3)
	due, next := step(t, tr, payments, pods[:20], t0)
	expect(t, due)
	if !next.Equal(t0.Add(timing.GroupWait)) {
		t.Fatalf("next = %s, want the end of the group wait", next)
	}
	// The rest of the replicas fail within the group wait.
	due, _ = step(t, tr, payments, pods, t0.Add(2*time.Second))
	expect(t, due)
	due, _ = step(t, tr, payments, pods, t0.Add(timing.GroupWait))
	expect(t, due, "detected/1/pods=50")
	in := due[0].Incident
	wantID := events.IncidentID("prod", "shop", "Deployment", "payments-api", "app", events.IssueCrashLoopBackOff)
	if in.ID != wantID || in.Owner != payments || in.Reason != "exit_code_1" || *in.ExitCode != 1 || in.Severity != events.SeverityHigh {
		t.Errorf("incident = %+v", in)
	}
	if len(in.Pods) != events.MaxIncidentPods || in.Pods[0] != "payments-api-7d9f-000" || in.Count != 50 || !in.FirstSeen.Equal(t0) {
		t.Errorf("pods %v, count %d, first seen %s", in.Pods, in.Count, in.FirstSeen)
	}
	if len(in.OwnerChain) != 2 || in.OwnerChain[0].Kind != "ReplicaSet" {
		t.Errorf("owner chain = %+v", in.OwnerChain)
	}
	// Nothing more while nothing changes.
	due, next = step(t, tr, payments, pods, t0.Add(time.Minute))
	expect(t, due)
	if !next.IsZero() {
		t.Errorf("next = %s, want nothing pending", next)
	}
	if got := tr.Counts()[events.IssueCrashLoopBackOff]; got != 1 {
		t.Errorf("present CrashLoopBackOff incidents = %d, want 1", got)
	}
}

func TestRestartIncrementsDoNotReannounce(t *testing.T) {
	tr := newTracker("prod", timing, nil)
	step(t, tr, payments, crashing(3, 1, 3), t0)
	due, _ := step(t, tr, payments, crashing(3, 1, 3), t0.Add(timing.GroupWait))
	expect(t, due, "detected/1/pods=3")
	for i, restarts := range []int32{4, 5, 9} {
		due, next := step(t, tr, payments, crashing(3, 1, restarts), t0.Add(time.Duration(i+1)*time.Minute))
		expect(t, due)
		if !next.IsZero() {
			t.Fatalf("next = %s after a restart increment, want nothing pending", next)
		}
	}
	snap := tr.Snapshot(nil)
	if len(snap) != 1 || snap[0].RestartCount != 9 || snap[0].Count != 3+3*6 {
		t.Errorf("snapshot = %+v, want restart count 9 and count %d", snap, 3+3*6)
	}
}

func TestChangedIsCoalescedByGroupInterval(t *testing.T) {
	tr := newTracker("prod", timing, nil)
	step(t, tr, payments, crashing(3, 1, 3), t0)
	expect(t, first(step(t, tr, payments, crashing(3, 1, 3), t0.Add(5*time.Second))), "detected/1/pods=3")

	// The pod count drops 10s after the announcement: due at +30s.
	due, next := step(t, tr, payments, crashing(2, 1, 3), t0.Add(15*time.Second))
	expect(t, due)
	if want := t0.Add(5*time.Second + timing.GroupInterval); !next.Equal(want) {
		t.Fatalf("next = %s, want %s", next, want)
	}
	// Back to 3 then 1: only the state at the due time is announced.
	step(t, tr, payments, crashing(3, 1, 3), t0.Add(20*time.Second))
	due, _ = step(t, tr, payments, crashing(1, 1, 3), t0.Add(35*time.Second))
	expect(t, due, "changed/2/pods=1")

	// A new reason class is a change too.
	due, _ = step(t, tr, payments, crashing(1, 139, 3), t0.Add(70*time.Second))
	expect(t, due, "changed/3/pods=1")
	if due[0].Incident.Reason != "segfault" || *due[0].Incident.ExitCode != 139 {
		t.Errorf("changed incident = %+v", due[0].Incident)
	}
	// Back to the announced state before the interval: nothing to say.
	step(t, tr, payments, crashing(2, 139, 3), t0.Add(80*time.Second))
	due, next = step(t, tr, payments, crashing(1, 139, 3), t0.Add(90*time.Second))
	expect(t, due)
	if !next.IsZero() {
		t.Errorf("next = %s, want nothing pending", next)
	}
}

func first(due []announcement, _ time.Time) []announcement { return due }

func TestResolution(t *testing.T) {
	tr := newTracker("prod", timing, nil)
	step(t, tr, payments, crashing(3, 1, 3), t0)
	step(t, tr, payments, crashing(3, 1, 3), t0.Add(5*time.Second))

	// Gone, back within the resolve wait (a flap): nothing announced.
	due, next := step(t, tr, payments, nil, t0.Add(time.Minute))
	expect(t, due)
	if !next.Equal(t0.Add(time.Minute + timing.ResolveWait)) {
		t.Fatalf("next = %s, want the end of the resolve wait", next)
	}
	expect(t, first(step(t, tr, payments, crashing(3, 1, 3), t0.Add(time.Minute+5*time.Second))))
	if snap := tr.Snapshot(nil); len(snap) != 1 || !snap[0].FirstSeen.Equal(t0) {
		t.Fatalf("after a flap the incident keeps its first seen: %+v", snap)
	}

	// Gone for good.
	step(t, tr, payments, nil, t0.Add(2*time.Minute))
	due, _ = step(t, tr, payments, nil, t0.Add(2*time.Minute+timing.ResolveWait))
	expect(t, due, "resolved/2/pods=0")
	if in := due[0].Incident; len(in.Pods) != 0 || !in.LastSeen.Equal(t0.Add(time.Minute+5*time.Second)) {
		t.Errorf("resolved incident = %+v", in)
	}
	if len(tr.Snapshot(nil)) != 0 || tr.Counts()[events.IssueCrashLoopBackOff] != 0 {
		t.Errorf("resolved incident still present")
	}
	expect(t, first(step(t, tr, payments, nil, t0.Add(time.Hour))))

	// It comes back: a new episode, with the next observation number, so
	// the stream does not drop it as a duplicate.
	step(t, tr, payments, crashing(1, 1, 3), t0.Add(2*time.Hour))
	due, _ = step(t, tr, payments, crashing(1, 1, 3), t0.Add(2*time.Hour+5*time.Second))
	expect(t, due, "detected/3/pods=1")
	if in := due[0].Incident; !in.FirstSeen.Equal(t0.Add(2*time.Hour)) || in.Count != 1 {
		t.Errorf("recurrence = %+v, want a new first seen and count 1", in)
	}
}

func TestBlipShorterThanGroupWaitIsNeverAnnounced(t *testing.T) {
	tr := newTracker("prod", timing, nil)
	step(t, tr, payments, crashing(1, 1, 2), t0)
	due, next := step(t, tr, payments, nil, t0.Add(3*time.Second))
	expect(t, due)
	if !next.IsZero() || tr.Has(keyOf(payments)) {
		t.Errorf("a never-announced incident that went away is forgotten (next %s)", next)
	}
}

func TestIncidentsSplitByContainerAndType(t *testing.T) {
	tr := newTracker("prod", timing, func(ns string) bool { return ns == "shop" })
	pods := []podObs{
		{Name: "web-1", Issues: []PodIssue{
			{Type: events.IssueImagePullBackOff, Container: "web", Reason: "image_not_found", Message: "m"},
			{Type: events.IssueCrashLoopBackOff, Container: "sidecar", Reason: "exit_code_1", Message: "m", ExitCode: exit(1), RestartCount: 4},
		}},
		{Name: "web-2", Issues: []PodIssue{{Type: events.IssueImagePullBackOff, Container: "web", Reason: "image_not_found", Message: "m"}}},
	}
	step(t, tr, payments, pods, t0)
	due, _ := step(t, tr, payments, pods, t0.Add(5*time.Second))
	if len(due) != 2 {
		t.Fatalf("announcements = %v, want two incidents", transitions(due))
	}
	byType := map[events.IssueType]events.Incident{}
	for _, a := range due {
		byType[a.Incident.Type] = a.Incident
	}
	if in := byType[events.IssueImagePullBackOff]; in.PodCount != 2 || in.Container != "web" || !in.Protected {
		t.Errorf("image pull incident = %+v", in)
	}
	if in := byType[events.IssueCrashLoopBackOff]; in.PodCount != 1 || in.Container != "sidecar" {
		t.Errorf("crash incident = %+v", in)
	}
}

func TestGenericReasonDoesNotFlap(t *testing.T) {
	tr := newTracker("prod", timing, nil)
	pull := func(reason string) []podObs {
		return []podObs{{Name: "web-1", Issues: []PodIssue{{Type: events.IssueImagePullBackOff, Container: "web", Reason: reason, Message: "m"}}}}
	}
	step(t, tr, payments, pull("image_not_found"), t0)
	step(t, tr, payments, pull("pull_back_off"), t0.Add(2*time.Second))
	due, _ := step(t, tr, payments, pull("pull_back_off"), t0.Add(5*time.Second))
	expect(t, due, "detected/1/pods=1")
	if due[0].Incident.Reason != "image_not_found" {
		t.Errorf("reason = %q, want the specific image_not_found kept over the back-off", due[0].Incident.Reason)
	}
	for i := range 4 {
		r := []string{"image_not_found", "pull_back_off"}[i%2]
		expect(t, first(step(t, tr, payments, pull(r), t0.Add(time.Duration(i+1)*time.Minute))))
	}
}

func TestRestoreAfterRestart(t *testing.T) {
	// A first watcher announces an incident.
	tr := newTracker("prod", timing, nil)
	step(t, tr, payments, crashing(3, 1, 3), t0)
	due, _ := step(t, tr, payments, crashing(3, 1, 3), t0.Add(5*time.Second))
	rec := record{Observation: due[0].Observation, Transition: due[0].Transition, PublishedAt: due[0].At, Incident: due[0].Incident}

	t.Run("still failing: silent", func(t *testing.T) {
		tr2 := newTracker("prod", timing, nil)
		owners := tr2.Restore([]record{rec})
		if len(owners) != 1 || owners[0] != keyOf(payments) {
			t.Fatalf("owners to re-evaluate = %v", owners)
		}
		if len(tr2.Snapshot(nil)) != 0 {
			t.Errorf("a restored incident is not present until observed")
		}
		due, next := step(t, tr2, payments, crashing(3, 1, 7), t0.Add(time.Hour))
		expect(t, due)
		if !next.IsZero() {
			t.Errorf("next = %s", next)
		}
		snap := tr2.Snapshot(nil)
		if len(snap) != 1 || !snap[0].FirstSeen.Equal(t0) || snap[0].Count != 3 {
			t.Errorf("restored incident = %+v, want first seen %s and count 3 (not counted twice)", snap, t0)
		}
	})
	t.Run("changed while down", func(t *testing.T) {
		tr2 := newTracker("prod", timing, nil)
		tr2.Restore([]record{rec})
		due, _ := step(t, tr2, payments, crashing(1, 1, 3), t0.Add(time.Hour))
		expect(t, due, "changed/2/pods=1")
	})
	t.Run("resolved while down", func(t *testing.T) {
		tr2 := newTracker("prod", timing, nil)
		tr2.Restore([]record{rec})
		due, next := step(t, tr2, payments, nil, t0.Add(time.Hour))
		expect(t, due)
		due, _ = step(t, tr2, payments, nil, next)
		expect(t, due, "resolved/2/pods=0")
	})
	t.Run("resolved records keep the observation number", func(t *testing.T) {
		tr2 := newTracker("prod", timing, nil)
		res := rec
		res.Transition, res.Observation = events.TransitionResolved, 2
		if owners := tr2.Restore([]record{res}); len(owners) != 0 {
			t.Errorf("a resolved record needs no re-evaluation: %v", owners)
		}
		step(t, tr2, payments, crashing(3, 1, 3), t0.Add(time.Hour))
		due, _ := step(t, tr2, payments, crashing(3, 1, 3), t0.Add(time.Hour+5*time.Second))
		expect(t, due, "detected/3/pods=3")
		if !due[0].Incident.FirstSeen.Equal(t0.Add(time.Hour)) {
			t.Errorf("first seen = %s, want the new episode's", due[0].Incident.FirstSeen)
		}
	})
}

func TestExpire(t *testing.T) {
	tr := newTracker("prod", timing, nil)
	step(t, tr, payments, crashing(1, 1, 3), t0)
	step(t, tr, payments, crashing(1, 1, 3), t0.Add(5*time.Second))
	step(t, tr, payments, nil, t0.Add(time.Minute))
	step(t, tr, payments, nil, t0.Add(2*time.Minute))
	if ids := tr.Expire(t0); len(ids) != 0 {
		t.Fatalf("expired %v before the cutoff", ids)
	}
	ids := tr.Expire(t0.Add(3 * time.Minute))
	if len(ids) != 1 || tr.Has(keyOf(payments)) {
		t.Fatalf("expired %v, want the resolved incident", ids)
	}
}

// defaultTiming is the watcher's default timing, as New fills it in.
func defaultTiming(t *testing.T) Timing {
	t.Helper()
	cfg, err := Config{Cluster: "prod"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Timing.GroupWait != 0 {
		t.Fatalf("default group wait = %s, want none", cfg.Timing.GroupWait)
	}
	return cfg.Timing
}

// TestFirstFailingPodIsDetectedAtOnce: with the default timing the first
// failing replica is announced when it is observed, the replicas that
// follow it are one "changed" at the group interval, and nothing is
// announced per pod.
func TestFirstFailingPodIsDetectedAtOnce(t *testing.T) {
	tm := defaultTiming(t)
	tr := newTracker("prod", tm, nil)
	pods := crashing(50, 1, 3)
	due, next := step(t, tr, payments, pods[:1], t0)
	expect(t, due, "detected/1/pods=1")
	if !next.IsZero() {
		t.Errorf("next = %s after the detection, want nothing pending", next)
	}
	if in := due[0].Incident; !in.FirstSeen.Equal(t0) || in.Count != 1 || in.Pods[0] != "payments-api-7d9f-000" {
		t.Errorf("detected incident = %+v", in)
	}
	// The other 49 replicas fail over the next five seconds.
	for i := 2; i <= 50; i++ {
		due, next = step(t, tr, payments, pods[:i], t0.Add(time.Duration(i)*100*time.Millisecond))
		expect(t, due)
		if want := t0.Add(tm.GroupInterval); !next.Equal(want) {
			t.Fatalf("with %d pods next = %s, want the end of the group interval %s", i, next, want)
		}
	}
	due, next = step(t, tr, payments, pods, t0.Add(tm.GroupInterval))
	expect(t, due, "changed/2/pods=50")
	if in := due[0].Incident; in.ID != events.IncidentID("prod", "shop", "Deployment", "payments-api", "app", events.IssueCrashLoopBackOff) ||
		in.Count != 50 || !in.FirstSeen.Equal(t0) {
		t.Errorf("changed incident = %+v", in)
	}
	if !next.IsZero() {
		t.Errorf("next = %s, want nothing pending", next)
	}
	expect(t, first(step(t, tr, payments, crashing(50, 1, 5), t0.Add(time.Hour))))
}

// TestImmediateDetectionStillResolvesAndRecurs: without a group wait a
// pod that fails and recovers is detected then resolved after the resolve
// wait (a flap within it is silent), and a recurrence is a new detection
// with the next observation number.
func TestImmediateDetectionStillResolvesAndRecurs(t *testing.T) {
	tm := defaultTiming(t)
	tr := newTracker("prod", tm, nil)
	expect(t, first(step(t, tr, payments, crashing(1, 1, 2), t0)), "detected/1/pods=1")
	expect(t, first(step(t, tr, payments, nil, t0.Add(time.Second))))
	expect(t, first(step(t, tr, payments, crashing(1, 1, 3), t0.Add(2*time.Second))))
	step(t, tr, payments, nil, t0.Add(time.Minute))
	expect(t, first(step(t, tr, payments, nil, t0.Add(time.Minute+tm.ResolveWait))), "resolved/2/pods=0")
	expect(t, first(step(t, tr, payments, crashing(2, 1, 3), t0.Add(time.Hour))), "detected/3/pods=2")
}
