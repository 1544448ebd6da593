package watcher

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func rolloutInt32(v int32) *int32 { return &v }

// rollingStatefulSet is StatefulSet db of 3 replicas rolling from
// revision db-old to db-new, with updated pods updated and ready pods
// ready.
func rollingStatefulSet(updated, ready int32) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", UID: "sts-uid", Generation: 2},
		Spec: appsv1.StatefulSetSpec{Replicas: rolloutInt32(3)},
		Status: appsv1.StatefulSetStatus{ObservedGeneration: 2, Replicas: 3, UpdatedReplicas: updated, ReadyReplicas: ready,
			CurrentRevision: "db-old", UpdateRevision: "db-new"}}
}

func rollingDaemonSet(updated, available int32) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "ns", UID: "ds-uid", Generation: 2},
		Status: appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 3, CurrentNumberScheduled: 3,
			UpdatedNumberScheduled: updated, NumberAvailable: available, NumberReady: available}}
}

func TestStatefulSetRolloutRunsUntilEveryPodIsUpdatedAndReady(t *testing.T) {
	done := rollingStatefulSet(3, 3)
	done.Status.CurrentRevision = "db-new"
	onDelete := rollingStatefulSet(1, 2)
	onDelete.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType
	stale := rollingStatefulSet(1, 2)
	stale.Generation = 3
	scaledToZero := rollingStatefulSet(0, 0)
	scaledToZero.Spec.Replicas = rolloutInt32(0)
	partitioned := func(updated, ready int32) *appsv1.StatefulSet {
		s := rollingStatefulSet(updated, ready)
		s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: rolloutInt32(2)}
		return s
	}
	for name, tc := range map[string]struct {
		sts     *appsv1.StatefulSet
		running bool
	}{
		"one of three updated":               {rollingStatefulSet(1, 2), true},
		"all updated, one not ready":         {rollingStatefulSet(3, 2), true},
		"done":                               {done, false},
		"OnDelete waits for people":          {onDelete, false},
		"status older than spec":             {stale, false},
		"scaled to zero":                     {scaledToZero, false},
		"partition reached, all ready":       {partitioned(1, 3), false},
		"partition reached, one not ready":   {partitioned(1, 2), true},
		"partition not reached (0 of 1 yet)": {partitioned(0, 3), true},
	} {
		if got := StatefulSetRollout(tc.sts) != ""; got != tc.running {
			t.Errorf("%s: rollout running = %t, want %t", name, got, tc.running)
		}
	}
	if StatefulSetRollout(rollingStatefulSet(1, 2)) == StatefulSetRollout(rollingStatefulSet(1, 3)) {
		t.Error("a pod becoming ready is progress")
	}
}

func TestDaemonSetRolloutRunsWhileNodesRunAnOlderTemplate(t *testing.T) {
	onDelete := rollingDaemonSet(1, 2)
	onDelete.Spec.UpdateStrategy.Type = appsv1.OnDeleteDaemonSetStrategyType
	stale := rollingDaemonSet(1, 2)
	stale.Generation = 3
	for name, tc := range map[string]struct {
		ds      *appsv1.DaemonSet
		running bool
	}{
		"one of three nodes updated": {rollingDaemonSet(1, 2), true},
		"all nodes updated":          {rollingDaemonSet(3, 2), false},
		"OnDelete":                   {onDelete, false},
		"status older than spec":     {stale, false},
		"no node wants it":           {&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, false},
	} {
		if got := DaemonSetRollout(tc.ds) != ""; got != tc.running {
			t.Errorf("%s: rollout running = %t, want %t", name, got, tc.running)
		}
	}
}

func statefulPod(name, revision string, ready bool, waiting string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{labelRevisionHash: revision}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	cs := corev1.ContainerStatus{Name: "db", Ready: ready, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	if waiting != "" {
		cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting}}
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
	return p
}

func TestClassifyStatefulSetRolloutNamesTheRevisionAndThePodItWaitsFor(t *testing.T) {
	sts := rollingStatefulSet(1, 2)
	pods := []*corev1.Pod{statefulPod("db-0", "db-old", true, ""), statefulPod("db-1", "db-old", true, ""),
		statefulPod("db-2", "db-new", false, "CrashLoopBackOff")}
	since := fixtureNow.Add(-5 * time.Minute)

	issues, recheck := ClassifyStatefulSetRollout(sts, pods, since, fixtureNow, 10*time.Minute)
	if len(issues) != 0 || !recheck.Equal(since.Add(10*time.Minute)) {
		t.Fatalf("young rollout: %+v, recheck %v; want none, recheck when it would stall", issues, recheck)
	}
	issues, recheck = ClassifyStatefulSetRollout(sts, pods, since, fixtureNow.Add(6*time.Minute), 10*time.Minute)
	if len(issues) != 1 || !recheck.IsZero() {
		t.Fatalf("stalled rollout: %+v, recheck %v; want one issue", issues, recheck)
	}
	iss := issues[0]
	want := "rollout of statefulset db to revision db-new stopped: 1 of 3 replicas updated, 2 ready, no progress for 11m0s; " +
		"pod db-2 of the new revision is not ready: container db waiting (CrashLoopBackOff)"
	if iss.Type != events.IssueRolloutStuck || iss.Reason != "statefulset_rollout_stalled" || iss.Message != want || iss.PodCount != 1 {
		t.Errorf("issue = %+v\nwant message %q", iss, want)
	}
	// The trimmed objects the informers cache classify the same.
	tsts, _ := transform(sts)
	var tpods []*corev1.Pod
	for _, p := range pods {
		tp, _ := transform(p)
		tpods = append(tpods, tp.(*corev1.Pod))
	}
	if again, _ := ClassifyStatefulSetRollout(tsts.(*appsv1.StatefulSet), tpods, since, fixtureNow.Add(6*time.Minute), 10*time.Minute); len(again) != 1 || again[0] != iss {
		t.Errorf("trimmed objects classify as %+v", again)
	}
	// Done, or never seen: nothing.
	done := rollingStatefulSet(3, 3)
	done.Status.CurrentRevision = "db-new"
	if got, _ := ClassifyStatefulSetRollout(done, pods, since, fixtureNow.Add(time.Hour), 10*time.Minute); len(got) != 0 {
		t.Errorf("finished rollout = %+v", got)
	}
	if got, _ := ClassifyStatefulSetRollout(sts, pods, time.Time{}, fixtureNow.Add(time.Hour), 10*time.Minute); len(got) != 0 {
		t.Errorf("rollout without a recorded start = %+v", got)
	}
}

func TestClassifyDaemonSetRolloutNamesTheNewestPodNotReady(t *testing.T) {
	ds := rollingDaemonSet(1, 2)
	old := statefulPod("agent-a", "agent-1", true, "")
	old.CreationTimestamp = metav1.NewTime(fixtureNow.Add(-time.Hour))
	old2 := statefulPod("agent-b", "agent-1", true, "")
	old2.CreationTimestamp = old.CreationTimestamp
	broken := statefulPod("agent-c", "agent-2", false, "ImagePullBackOff")
	broken.CreationTimestamp = metav1.NewTime(fixtureNow.Add(-20 * time.Minute))
	issues, _ := ClassifyDaemonSetRollout(ds, []*corev1.Pod{old, broken, old2}, fixtureNow.Add(-15*time.Minute), fixtureNow, 10*time.Minute)
	if len(issues) != 1 {
		t.Fatalf("issues = %+v, want one", issues)
	}
	want := "rollout of daemonset agent (generation 2) stopped: 1 of 3 nodes run the updated pod, 2 available, no progress for 15m0s; " +
		"pod agent-c is not ready: container db waiting (ImagePullBackOff)"
	if iss := issues[0]; iss.Reason != "daemonset_rollout_stalled" || iss.Message != want || iss.PodCount != 2 {
		t.Errorf("issue = %+v\nwant message %q", iss, want)
	}
	tds, _ := transform(ds)
	if again, _ := ClassifyDaemonSetRollout(tds.(*appsv1.DaemonSet), []*corev1.Pod{broken}, fixtureNow.Add(-15*time.Minute), fixtureNow, 10*time.Minute); len(again) != 1 {
		t.Errorf("trimmed DaemonSet classifies as %+v", again)
	}
}

func TestRolloutMemoryCountsFromTheLastProgress(t *testing.T) {
	m := newRolloutMemory()
	t1, t2 := fixtureNow, fixtureNow.Add(time.Minute)
	if got := m.observe("u", "a", t1); !got.Equal(t1) {
		t.Fatalf("first observation since %v", got)
	}
	if got := m.observe("u", "a", t2); !got.Equal(t1) {
		t.Errorf("no progress: since %v, want %v", got, t1)
	}
	if got := m.since("u", "a"); !got.Equal(t1) {
		t.Errorf("since = %v", got)
	}
	if got := m.since("u", "b"); !got.IsZero() {
		t.Errorf("since of another progress = %v, want zero", got)
	}
	if got := m.observe("u", "b", t2); !got.Equal(t2) {
		t.Errorf("progress: since %v, want %v", got, t2)
	}
	if got := m.observe("u", "", t2); !got.IsZero() || len(m.m) != 0 {
		t.Errorf("finished rollout still remembered: %v %v", got, m.m)
	}
}

func TestPodStateSaysWhyAPodIsNotReady(t *testing.T) {
	unscheduled := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Message: "0/3 nodes are available: 3 Insufficient cpu."}}}}
	terminated := &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 2}}}}}}
	for p, want := range map[*corev1.Pod]string{
		unscheduled:                            "not scheduled (0/3 nodes are available: 3 Insufficient cpu.)",
		terminated:                             "container app terminated (Error, exit code 2)",
		statefulPod("x", "r", false, ""):       "container db running but not ready",
		{Status: corev1.PodStatus{Phase: "X"}}: "phase X",
	} {
		if got := podState(p); !strings.Contains(got, want) {
			t.Errorf("podState = %q, want %q", got, want)
		}
	}
}
