package watcher

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// A pod that stays Terminating: on the sandbox, kwok deletes a pod as soon
// as it has a deletionTimestamp, so what keeps one is what keeps one on a
// cluster, a finalizer nobody removes (here the test's own).

// stuckAfterForTests is watcher.stuck_terminating_after in these tests.
const stuckAfterForTests = 5 * time.Second

// withStuckAfter makes the harness's watcher report a pod terminating
// stuckAfterForTests past its deletion deadline.
func (h *harness) withStuckAfter() {
	h.configure = func(c *Config) {
		c.Classify = DefaultClassifyOptions()
		c.Classify.StuckTerminatingAfter = stuckAfterForTests
	}
}

// runningPodOf waits for Deployment name's one running pod and returns it.
func (h *harness) runningPodOf(t *testing.T, name string) corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	waitFor(t, 2*time.Minute, "a running pod of "+name, func() (bool, string) {
		pods, err := h.admin.CoreV1().Pods(h.ns).List(ctx30(t), metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, err.Error()
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				pod = p
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d pods, none running", len(pods.Items))
	})
	return pod
}

// deletePod deletes pod name with a one-second grace period.
func (h *harness) deletePod(t *testing.T, name string) {
	t.Helper()
	grace := int64(1)
	if err := h.admin.CoreV1().Pods(h.ns).Delete(ctx30(t), name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
}

func TestPodHeldByAFinalizerIsStuckTerminatingUntilReleased(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.withStuckAfter()
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.create(t, testDeployment("web", 1, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}))
	pod := h.runningPodOf(t, "web")

	// A finalizer of the test's own, which no controller will remove.
	finalizer := "kaar.dev/held-by-" + h.ns
	patch := fmt.Appendf(nil, `{"metadata":{"finalizers":[%q]}}`, finalizer)
	if _, err := h.admin.CoreV1().Pods(h.ns).Patch(ctx30(t), pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	release := func() {
		_, err := h.admin.CoreV1().Pods(h.ns).Patch(ctx30(t), pod.Name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("remove the finalizer of pod %s: %v", pod.Name, err)
		}
	}
	t.Cleanup(release) // else the namespace is never deleted
	h.deletePod(t, pod.Name)

	id := h.incidentID("Deployment", "web", events.IssueStuckTerminating)
	r := h.waitIncident(t, 2*time.Minute, id, "finalizers", func(in events.Incident) bool { return in.Reason == "finalizers" })
	in := r.event.Incident
	if in.Owner.Kind != "Deployment" || in.Owner.Name != "web" || in.PodCount != 1 || len(in.Pods) != 1 || in.Pods[0] != pod.Name ||
		in.Severity != events.SeverityLow ||
		!strings.Contains(in.Message, "pod is still terminating") || !strings.Contains(in.Message, "after its deletion deadline") ||
		!strings.Contains(in.Message, "finalizers: "+finalizer) {
		t.Errorf("incident = %+v\nwant the held pod of deployment web, its finalizer named", in)
	}
	// Forcing a deletion is a person's call once the node is known gone:
	// diagnostic.
	p := wantPlan(t, store, id, events.IssueStuckTerminating, "Deployment", "web", diagnostic)
	if titles := stepTitles(p); !strings.Contains(titles, "finalizers") {
		t.Errorf("plan does not look at the finalizers:\n%s", titles)
	}

	// Released: the API server deletes the pod, the incident resolves.
	release()
	h.waitEvent(t, time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

func TestPodDeletedNormallyIsNoIncident(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.withStuckAfter()
	h.startWatcher(t)
	h.create(t, testDeployment("web", 1, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}))
	pod := h.runningPodOf(t, "web")
	h.deletePod(t, pod.Name)
	waitFor(t, time.Minute, "pod "+pod.Name+" to be gone", func() (bool, string) {
		_, err := h.admin.CoreV1().Pods(h.ns).Get(ctx30(t), pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	h.runningPodOf(t, "web") // its replacement
	time.Sleep(stuckAfterForTests)
	quiet()
	if all := h.events(t); len(all) != 0 {
		t.Errorf("announcements for a pod deleted normally: %s", summary(all))
	}
}
