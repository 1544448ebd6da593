package watcher

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// StatefulSet and DaemonSet rollouts on the sandbox's real controllers:
// each test owns its namespace. The stall threshold is 10 s: a healthy
// rollout on kwok advances every second or two.

const e2eRolloutStall = 10 * time.Second

func (h *harness) createStatefulSet(t *testing.T, name string, replicas int32) {
	t.Helper()
	labels := map[string]string{"app": name}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: appsv1.StatefulSetSpec{
		Replicas: &replicas, ServiceName: name, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres:17"}}}}}}
	if _, err := h.admin.AppsV1().StatefulSets(h.ns).Create(ctx30(t), sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitStatefulSetDone waits until every replica is updated and ready and
// the update revision is the current one.
func (h *harness) waitStatefulSetDone(t *testing.T, name string, replicas int32) {
	t.Helper()
	waitFor(t, 2*time.Minute, "statefulset "+name+" to roll out", func() (bool, string) {
		s, err := h.admin.AppsV1().StatefulSets(h.ns).Get(ctx30(t), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		st := s.Status
		return st.ObservedGeneration == s.Generation && st.ReadyReplicas == replicas && st.UpdatedReplicas == replicas &&
			st.CurrentRevision == st.UpdateRevision, fmt.Sprintf("%+v", st)
	})
}

// patchTemplateAnnotation sets (value non-empty) or removes annotation key
// of a StatefulSet's or DaemonSet's pod template.
func (h *harness) patchTemplateAnnotation(t *testing.T, kind, name, key, value string) {
	t.Helper()
	v := "null"
	if value != "" {
		v = fmt.Sprintf("%q", value)
	}
	patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{%q:%s}}}}}`, key, v)
	var err error
	if kind == "StatefulSet" {
		_, err = h.admin.AppsV1().StatefulSets(h.ns).Patch(ctx30(t), name, types.MergePatchType, patch, metav1.PatchOptions{})
	} else {
		_, err = h.admin.AppsV1().DaemonSets(h.ns).Patch(ctx30(t), name, types.MergePatchType, patch, metav1.PatchOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestStatefulSetRolloutToACrashingTemplateIsRolloutStuckUntilRolledBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.rolloutStall = e2eRolloutStall
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.createStatefulSet(t, "db", 3)
	h.waitStatefulSetDone(t, "db", 3)

	// The new revision crashes: OrderedReady replaces db-2 and waits for
	// it for ever.
	h.patchTemplateAnnotation(t, "StatefulSet", "db", sandbox.AnnotationCrashExitCode, "1")
	stuck := h.incidentID("StatefulSet", "db", events.IssueRolloutStuck)
	r := h.waitIncident(t, 2*time.Minute, stuck, "statefulset_rollout_stalled naming db-2 and its pods' incident", func(in events.Incident) bool {
		return in.Reason == "statefulset_rollout_stalled" && strings.Contains(in.Message, "see the CrashLoopBackOff incident of its pods")
	})
	in := r.event.Incident
	if in.Owner.Kind != "StatefulSet" || in.Owner.Name != "db" ||
		!strings.Contains(in.Message, "rollout of statefulset db to revision db-") ||
		!strings.Contains(in.Message, "1 of 3 replicas updated, 2 ready") ||
		!strings.Contains(in.Message, "pod db-2 of the new revision is not ready: container db waiting (CrashLoopBackOff)") {
		t.Errorf("incident = %+v", in)
	}
	// The executor's rollback restores a Deployment's ReplicaSet only.
	wantPlan(t, store, stuck, events.IssueRolloutStuck, "StatefulSet", "db", diagnostic)
	crash := events.IncidentID(testCluster, h.ns, "StatefulSet", "db", "db", events.IssueCrashLoopBackOff)
	h.waitEvent(t, time.Minute, crash, events.TransitionDetected)

	// Rolled back by hand: the template reverted, and (OrderedReady
	// waits for the broken pod, as the StatefulSet docs say) the pod of
	// the bad revision deleted.
	h.patchTemplateAnnotation(t, "StatefulSet", "db", sandbox.AnnotationCrashExitCode, "")
	if err := h.admin.CoreV1().Pods(h.ns).Delete(ctx30(t), "db-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitStatefulSetDone(t, "db", 3)
	h.waitEvent(t, time.Minute, stuck, events.TransitionResolved)
	h.waitEvent(t, time.Minute, crash, events.TransitionResolved)
}

func TestDaemonSetRolloutToACrashingTemplateIsRolloutStuckUntilReverted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.rolloutStall = e2eRolloutStall
	h.startWatcher(t)
	store := h.startPlanner(t)
	labels := map[string]string{"app": "agent"}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent"}, Spec: appsv1.DaemonSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "agent:1"}}}}}}
	if _, err := h.admin.AppsV1().DaemonSets(h.ns).Create(ctx30(t), ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var desired int32
	waitFor(t, 2*time.Minute, "the DaemonSet's pods on every node", func() (bool, string) {
		d, err := h.admin.AppsV1().DaemonSets(h.ns).Get(ctx30(t), "agent", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		desired = d.Status.DesiredNumberScheduled
		return desired > 1 && d.Status.NumberAvailable == desired && d.Status.UpdatedNumberScheduled == desired, fmt.Sprintf("%+v", d.Status)
	})

	// The new template crashes: the controller replaces one pod
	// (maxUnavailable 1) and stops there.
	h.patchTemplateAnnotation(t, "DaemonSet", "agent", sandbox.AnnotationCrashExitCode, "1")
	stuck := h.incidentID("DaemonSet", "agent", events.IssueRolloutStuck)
	r := h.waitIncident(t, 2*time.Minute, stuck, "daemonset_rollout_stalled", func(in events.Incident) bool {
		return in.Reason == "daemonset_rollout_stalled" && strings.Contains(in.Message, "is not ready: container agent waiting (CrashLoopBackOff)")
	})
	want := fmt.Sprintf("rollout of daemonset agent (generation 2) stopped: 1 of %d nodes run the updated pod, %d available", desired, desired-1)
	if in := r.event.Incident; in.Owner.Kind != "DaemonSet" || !strings.Contains(in.Message, want) || in.PodCount != int(desired-1) {
		t.Errorf("incident = %+v\nwant message with %q", in, want)
	}
	wantPlan(t, store, stuck, events.IssueRolloutStuck, "DaemonSet", "agent", diagnostic)

	// Reverted: the controller replaces the crashing pod with the old
	// template, every node runs the current one again.
	h.patchTemplateAnnotation(t, "DaemonSet", "agent", sandbox.AnnotationCrashExitCode, "")
	h.waitEvent(t, 2*time.Minute, stuck, events.TransitionResolved)
}

func TestCompletedStatefulSetRolloutIsNoIncident(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.rolloutStall = e2eRolloutStall
	h.startWatcher(t)
	h.createStatefulSet(t, "cache", 2)
	h.waitStatefulSetDone(t, "cache", 2)
	// A healthy change of template rolls through both pods.
	h.patchTemplateAnnotation(t, "StatefulSet", "cache", "example.com/config-hash", "2")
	h.waitStatefulSetDone(t, "cache", 2)
	time.Sleep(e2eRolloutStall)
	quiet()
	if all := h.events(t); len(all) != 0 {
		t.Errorf("announcements for a rollout that completed: %s", summary(all))
	}
}
