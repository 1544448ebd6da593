package watcher

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Failures with no crashing pod, on the sandbox's real controllers and
// admission: each test owns its namespace.

func ctx30(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (h *harness) incidentID(kind, name string, typ events.IssueType) string {
	return events.IncidentID(testCluster, h.ns, kind, name, "", typ)
}

// onePodQuota creates the ResourceQuota "compute" allowing one pod, and
// waits until it refuses pods: the quota admission refuses them until the
// quota controller has computed the quota's usage.
func (h *harness) onePodQuota(t *testing.T) *corev1.ResourceQuota {
	t.Helper()
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "compute"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}}}
	if _, err := h.admin.CoreV1().ResourceQuotas(h.ns).Create(ctx30(t), quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the quota's usage", func() (bool, string) {
		q, err := h.admin.CoreV1().ResourceQuotas(h.ns).Get(ctx30(t), "compute", metav1.GetOptions{})
		return err == nil && q.Status.Hard != nil, "no status"
	})
	return quota
}

// raisePodQuota raises quota to 10 pods.
func (h *harness) raisePodQuota(t *testing.T, quota *corev1.ResourceQuota) {
	t.Helper()
	quota.Spec.Hard[corev1.ResourcePods] = resource.MustParse("10")
	if _, err := h.admin.CoreV1().ResourceQuotas(h.ns).Update(ctx30(t), quota, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestQuotaForbiddingPodsIsFailedCreateUntilRaised(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	quota := h.onePodQuota(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.create(t, testDeployment("web", 3, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}))

	id := h.incidentID("Deployment", "web", events.IssueFailedCreate)
	r := h.waitIncident(t, 2*time.Minute, id, "exceeded_quota, 2 pods missing", func(in events.Incident) bool {
		return in.Reason == "exceeded_quota" && in.PodCount == 2
	})
	in := r.event.Incident
	if in.Owner.Kind != "Deployment" || in.Owner.Name != "web" || len(in.OwnerChain) != 2 || in.OwnerChain[0].Kind != "ReplicaSet" ||
		!strings.Contains(in.Message, "exceeded quota: compute") || in.Severity != events.SeverityHigh {
		t.Errorf("incident = %+v", in)
	}
	resp, err := h.analyze(events.AnalyzeRequest{Type: events.IssueFailedCreate})
	if err != nil || len(resp.Incidents) != 1 || resp.Incidents[0].ID != id {
		t.Errorf("analyze = %+v, %v; want the FailedCreate incident", resp, err)
	}
	// A quota is a policy object: diagnostic by design.
	wantPlan(t, store, id, events.IssueFailedCreate, "Deployment", "web", diagnostic)

	// Raised: the ReplicaSet controller creates the pods, the condition
	// clears, the incident resolves.
	h.raisePodQuota(t, quota)
	h.waitEvent(t, 3*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

func TestMissingServiceAccountIsFailedCreate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	d := testDeployment("builder", 2, nil, corev1.Container{Name: "app", Image: "nginx:1.27"})
	d.Spec.Template.Spec.ServiceAccountName = "builder"
	h.create(t, d)

	id := h.incidentID("Deployment", "builder", events.IssueFailedCreate)
	r := h.waitIncident(t, 2*time.Minute, id, "missing_service_account", func(in events.Incident) bool {
		return in.Reason == "missing_service_account"
	})
	if in := r.event.Incident; in.PodCount != 2 || !strings.Contains(in.Message, `serviceaccount "builder" not found`) {
		t.Errorf("incident = %+v", in)
	}
	wantPlan(t, store, id, events.IssueFailedCreate, "Deployment", "builder", diagnostic)
}

func TestJobPastItsDeadlineIsJobFailed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	// The sandbox keeps a crashing pod running (CrashLoopBackOff) whatever
	// its restart policy, so the Job fails by its active deadline.
	zero, deadline := int32(0), int64(5)
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "migrate"}, Spec: batchv1.JobSpec{
		BackoffLimit: &zero, ActiveDeadlineSeconds: &deadline,
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{sandbox.AnnotationCrashExitCode: "1"}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "migrate", Image: "migrate:3"}}}}}}
	if _, err := h.admin.BatchV1().Jobs(h.ns).Create(ctx30(t), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	id := h.incidentID("Job", "migrate", events.IssueJobFailed)
	r := h.waitIncident(t, 2*time.Minute, id, "deadline_exceeded", func(in events.Incident) bool {
		return in.Reason == "deadline_exceeded"
	})
	if in := r.event.Incident; in.Owner.Kind != "Job" || !strings.Contains(in.Message, "job migrate failed (DeadlineExceeded)") {
		t.Errorf("incident = %+v", in)
	}
	// A re-run is a person's decision: diagnostic by design.
	wantPlan(t, store, id, events.IssueJobFailed, "Job", "migrate", diagnostic)
	// Deleting the failed Job ends it.
	bg := metav1.DeletePropagationBackground
	if err := h.admin.BatchV1().Jobs(h.ns).Delete(ctx30(t), "migrate", metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(t, time.Minute, id, events.TransitionResolved)
}

func TestRolloutPastItsDeadlineIsRolloutStuckBesideItsPodsIncident(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	d := testDeployment("web", 1, map[string]string{sandbox.AnnotationCrashExitCode: "1"}, corev1.Container{Name: "app", Image: "nginx:1.27"})
	deadline := int32(5)
	d.Spec.ProgressDeadlineSeconds = &deadline
	h.create(t, d)

	crash := events.IncidentID(testCluster, h.ns, "Deployment", "web", "app", events.IssueCrashLoopBackOff)
	stuck := h.incidentID("Deployment", "web", events.IssueRolloutStuck)
	h.waitEvent(t, 2*time.Minute, crash, events.TransitionDetected)
	r := h.waitIncident(t, 2*time.Minute, stuck, "see the pods' incident", func(in events.Incident) bool {
		return strings.Contains(in.Message, "see the CrashLoopBackOff incident of its pods")
	})
	if in := r.event.Incident; in.Reason != "progress_deadline_exceeded" || !strings.Contains(in.Message, "(revision 1)") {
		t.Errorf("incident = %+v", in)
	}
	// No older revision to roll back to: diagnostic.
	wantPlan(t, store, stuck, events.IssueRolloutStuck, "Deployment", "web", diagnostic)

	// Fixed: the new rollout progresses, both resolve.
	h.fixCrash(t, "web")
	h.waitEvent(t, 2*time.Minute, stuck, events.TransitionResolved)
	h.waitEvent(t, 2*time.Minute, crash, events.TransitionResolved)
}

func TestScaledToZeroAndCompletedJobAreNoIncident(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startWatcher(t)
	// A Deployment scaled to zero on purpose, and a Job that completed.
	h.create(t, testDeployment("idle", 0, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}))
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "once"}, Spec: batchv1.JobSpec{
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "once", Image: "busybox:1.37"}}}}}}
	if _, err := h.admin.BatchV1().Jobs(h.ns).Create(ctx30(t), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the Job to complete", func() (bool, string) {
		j, err := h.admin.BatchV1().Jobs(h.ns).Get(ctx30(t), "once", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		_, done := jobFinished(j)
		return done && j.Status.Succeeded == 1, "not complete"
	})
	quiet()
	if all := h.events(t); len(all) != 0 {
		t.Errorf("announcements for healthy workloads: %s", summary(all))
	}
	if resp, err := h.analyze(events.AnalyzeRequest{}); err != nil || len(resp.Incidents) != 0 {
		t.Errorf("analyze = %+v, %v; want no incident", resp, err)
	}
}

func TestStatefulSetRefusedByQuotaIsFailedCreateFromItsEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	quota := h.onePodQuota(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	replicas, labels := int32(3), map[string]string{"app": "db"}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: appsv1.StatefulSetSpec{
		Replicas: &replicas, ServiceName: "db", PodManagementPolicy: appsv1.ParallelPodManagement,
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres:17"}}}}}}
	if _, err := h.admin.AppsV1().StatefulSets(h.ns).Create(ctx30(t), sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	id := h.incidentID("StatefulSet", "db", events.IssueFailedCreate)
	r := h.waitIncident(t, 2*time.Minute, id, "exceeded_quota, 2 pods missing", func(in events.Incident) bool {
		return in.Reason == "exceeded_quota" && in.PodCount == 2
	})
	if in := r.event.Incident; in.Owner.Kind != "StatefulSet" || !strings.Contains(in.Message, "exceeded quota: compute") {
		t.Errorf("incident = %+v", in)
	}
	wantPlan(t, store, id, events.IssueFailedCreate, "StatefulSet", "db", diagnostic)
	h.raisePodQuota(t, quota)
	h.waitEvent(t, 3*time.Minute, id, events.TransitionResolved)
}
