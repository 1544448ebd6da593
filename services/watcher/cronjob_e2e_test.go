package watcher

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// CronJobs on the sandbox's real cronjob controller: each test owns its
// namespace. A minutely schedule is the shortest the controller knows.

// minutelyCronJob runs every minute a Job whose pod never finishes (the
// sandbox keeps a pod whose readiness fails Running, not Ready, for
// ever), with concurrencyPolicy Forbid.
func minutelyCronJob(suspend bool) *batchv1.CronJob {
	return &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "report"}, Spec: batchv1.CronJobSpec{
		Schedule: "* * * * *", ConcurrencyPolicy: batchv1.ForbidConcurrent, Suspend: &suspend,
		JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{sandbox.AnnotationReadiness: "fail"}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "report", Image: "report:1"}}}}}}}}
}

func TestCronJobWhosePreviousRunNeverEndsIsNotSchedulingUntilSuspended(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cronGrace = 5 * time.Second
	h.startWatcher(t)
	store := h.startPlanner(t)
	if _, err := h.admin.BatchV1().CronJobs(h.ns).Create(ctx30(t), minutelyCronJob(false), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The controller starts the first run within a minute; the run never
	// ends, so Forbid skips the next one, which the watcher reports once
	// it is past due (capped grace: a minutely schedule waits at most one
	// period, here the 5 s grace).
	id := h.incidentID("CronJob", "report", events.IssueCronJobNotScheduling)
	r := h.waitIncident(t, 3*time.Minute, id, "previous_run_active", func(in events.Incident) bool {
		return in.Reason == "previous_run_active"
	})
	in := r.event.Incident
	if in.Owner.Kind != "CronJob" || in.Owner.APIVersion != "batch/v1" || in.Severity != events.SeverityMedium ||
		!strings.Contains(in.Message, `cronjob report (schedule "* * * * *") has not started 1 scheduled run since: its last run started at`) ||
		!strings.Contains(in.Message, "concurrencyPolicy Forbid skips every run while job report-") {
		t.Errorf("incident = %+v", in)
	}
	// Ending a run is a person's decision: diagnostic by design.
	wantPlan(t, store, id, events.IssueCronJobNotScheduling, "CronJob", "report", diagnostic)

	// Suspended on purpose: no incident any more.
	patch := []byte(`{"spec":{"suspend":true}}`)
	if _, err := h.admin.BatchV1().CronJobs(h.ns).Patch(ctx30(t), "report", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(t, time.Minute, id, events.TransitionResolved)
}

func TestSuspendedCronJobIsNoIncident(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cronGrace = 5 * time.Second
	h.startWatcher(t)
	if _, err := h.admin.BatchV1().CronJobs(h.ns).Create(ctx30(t), minutelyCronJob(true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Past its first scheduled minute and the grace: a CronJob that were
	// not suspended would be reported as never started by now.
	created := time.Now()
	next := created.Truncate(time.Minute).Add(time.Minute)
	time.Sleep(time.Until(next.Add(h.cronGrace + 5*time.Second)))
	quiet()
	if all := h.events(t); len(all) != 0 {
		t.Errorf("announcements for a suspended CronJob: %s", summary(all))
	}
	cj, err := h.admin.BatchV1().CronJobs(h.ns).Get(ctx30(t), "report", metav1.GetOptions{})
	if err != nil || cj.Status.LastScheduleTime != nil {
		t.Errorf("the suspended CronJob ran: %+v, %v", cj.Status, err)
	}
}

func TestCronJobWhoseJobsAQuotaRefusesIsFailedCreateUntilRaised(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.cronGrace = 5 * time.Second
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "jobs"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"count/jobs.batch": resource.MustParse("0")}}}
	if _, err := h.admin.CoreV1().ResourceQuotas(h.ns).Create(ctx30(t), quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the quota's usage", func() (bool, string) {
		q, err := h.admin.CoreV1().ResourceQuotas(h.ns).Get(ctx30(t), "jobs", metav1.GetOptions{})
		return err == nil && q.Status.Hard != nil, "no status"
	})
	h.startWatcher(t)
	store := h.startPlanner(t)
	cj := minutelyCronJob(false)
	cj.Spec.JobTemplate.Spec.Template.Annotations = nil // its runs complete
	if _, err := h.admin.BatchV1().CronJobs(h.ns).Create(ctx30(t), cj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// At its first minute the cronjob controller cannot create the Job:
	// its Warning FailedCreate on the CronJob is the cause, reported as
	// such (and not also as a missed schedule).
	id := h.incidentID("CronJob", "report", events.IssueFailedCreate)
	r := h.waitIncident(t, 2*time.Minute, id, "exceeded_quota", func(in events.Incident) bool { return in.Reason == "exceeded_quota" })
	if in := r.event.Incident; in.Owner.Kind != "CronJob" ||
		!strings.Contains(in.Message, "cronjob report cannot create its jobs: Error creating job: ") ||
		!strings.Contains(in.Message, "exceeded quota: jobs") {
		t.Errorf("incident = %+v", in)
	}
	wantPlan(t, store, id, events.IssueFailedCreate, "CronJob", "report", diagnostic)
	// Raised: the next run starts, the report is history.
	quota.Spec.Hard["count/jobs.batch"] = resource.MustParse("10")
	if _, err := h.admin.CoreV1().ResourceQuotas(h.ns).Update(ctx30(t), quota, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
	if all := h.events(t); len(all) != 2 {
		t.Errorf("announcements = %s, want the FailedCreate detected and resolved only", summary(all))
	}
}
