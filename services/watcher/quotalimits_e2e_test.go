package watcher

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// A ResourceQuota on limits.memory and requests.cpu makes the quota
// admission refuse every pod that does not declare them: the ReplicaSet
// controller cannot create the Deployment's pods, whatever the quota's
// usage.

func TestQuotaRequiringLimitsThePodsLackIsFailedCreateUntilTheyDeclareThem(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "compute"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			corev1.ResourceLimitsMemory: resource.MustParse("2Gi"),
			corev1.ResourceRequestsCPU:  resource.MustParse("2"),
		}}}
	if _, err := h.admin.CoreV1().ResourceQuotas(h.ns).Create(ctx30(t), quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Until the quota controller has computed its usage, the admission
	// refuses pods for that ("status unknown"), not for the missing limits.
	waitFor(t, time.Minute, "the quota's usage", func() (bool, string) {
		q, err := h.admin.CoreV1().ResourceQuotas(h.ns).Get(ctx30(t), "compute", metav1.GetOptions{})
		return err == nil && q.Status.Hard != nil, "no status"
	})
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.create(t, testDeployment("api", 2, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}))

	id := h.incidentID("Deployment", "api", events.IssueFailedCreate)
	r := h.waitIncident(t, 2*time.Minute, id, "quota_requires_limits", func(in events.Incident) bool {
		return in.Reason == "quota_requires_limits"
	})
	in := r.event.Incident
	// The controller's own message: "pods "api-..." is forbidden: failed
	// quota: compute: must specify limits.memory for: app; requests.cpu
	// for: app".
	if in.Owner.Kind != "Deployment" || in.Owner.Name != "api" || in.PodCount != 2 || in.Severity != events.SeverityHigh ||
		!strings.Contains(in.Message, "failed quota: compute") || !strings.Contains(in.Message, "must specify") ||
		!strings.Contains(in.Message, "limits.memory") || !strings.Contains(in.Message, "requests.cpu") {
		t.Errorf("incident = %+v\nwant deployment api, 2 pods missing, the quota's message", in)
	}
	// A quota is a policy object, never changed by kaar: diagnostic.
	wantPlan(t, store, id, events.IssueFailedCreate, "Deployment", "api", diagnostic)

	// The template declares them: the pods are created, the incident
	// resolves.
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"app","resources":{"limits":{"memory":"128Mi"},"requests":{"cpu":"100m"}}}]}}}}`)
	if _, err := h.admin.AppsV1().Deployments(h.ns).Patch(ctx30(t), "api", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(t, 3*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}
