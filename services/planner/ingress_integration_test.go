package planner

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// noPodIncidentOn is the incident the watcher announces on an object of
// the harness's namespace with no failing pod.
func (h *harness) noPodIncidentOn(kind, apiVersion string, m metav1.Object, typ events.IssueType, reason, msg string) events.Incident {
	h.t.Helper()
	owner := events.ObjectRef{Kind: kind, Namespace: h.ns, Name: m.GetName(), UID: string(m.GetUID()), APIVersion: apiVersion}
	now := time.Now().UTC().Truncate(time.Second)
	inc := events.Incident{ID: events.IncidentID(testCluster, h.ns, kind, m.GetName(), "", typ), Cluster: testCluster, Namespace: h.ns,
		Owner: owner, Type: typ, Reason: reason, Message: msg, FirstSeen: now.Add(-time.Minute), LastSeen: now, Count: 1, Severity: typ.DefaultSeverity()}
	if err := inc.Validate(); err != nil {
		h.t.Fatalf("incident: %v", err)
	}
	return inc
}

// planFor publishes inc and returns the plan proposed for it, failing on
// evidence that says a read was forbidden.
func (h *harness) planFor(t *testing.T, inc events.Incident) events.Plan {
	t.Helper()
	h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, ""))
	p := h.proposed(inc.ID)
	for _, e := range p.Evidence {
		for _, l := range e.Lines {
			if strings.Contains(strings.ToLower(l), "forbidden") {
				t.Errorf("evidence %s: %s", e.Kind, l)
			}
		}
	}
	if !p.DiagnosticOnly || len(p.Steps) == 0 {
		t.Errorf("plan is not diagnostic: %s", mustJSON(p))
	}
	return p
}

// The plans of an Ingress to a missing Service, a CronJob whose run
// blocks its schedule, and a StatefulSet whose rollout stalled, gathered
// from the sandbox by the planner with its own least-privilege role.
func TestIngressCronJobAndStalledRolloutPlansOnTheSandbox(t *testing.T) {
	h := newHarness(t, true)
	h.asLeastPrivilegedPlanner(t)
	h.startPlanner(nil)

	t.Run("ingress to a missing service", func(t *testing.T) {
		prefix := networkingv1.PathTypePrefix
		ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "shop"}, Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{
			Host: "shop.example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
					Name: "api", Port: networkingv1.ServiceBackendPort{Number: 8080}}}}}}}}}}}
		created, err := h.kube.NetworkingV1().Ingresses(h.ns).Create(h.ctx(10*time.Second), ing, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p := h.planFor(t, h.noPodIncidentOn(KindIngress, "networking.k8s.io/v1", created, events.IssueIngressUnavailable, ingressServiceNotFound,
			"ingress shop: rule shop.example.com/ routes to service api, which does not exist"))
		want := "The rule shop.example.com/ of ingress/shop routes to service api, which does not exist in namespace " + h.ns
		if p.Target.Kind != KindIngress || p.Steps[0].Title != want || p.Steps[0].Target.Kind != KindIngress {
			t.Errorf("plan %s\nwant first step %q", mustJSON(p), want)
		}
		if len(p.Evidence) == 0 || !strings.Contains(strings.Join(p.Evidence[len(p.Evidence)-1].Lines, "\n"), "-> service api port 8080: service not found") {
			t.Errorf("evidence %s", mustJSON(p.Evidence))
		}
	})

	t.Run("cronjob blocked by its active run", func(t *testing.T) {
		suspend := true
		cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "report"}, Spec: batchv1.CronJobSpec{Schedule: "*/10 * * * *",
			Suspend: &suspend, ConcurrencyPolicy: batchv1.ForbidConcurrent, JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "app", Image: "report:1"}}}}}}}}
		created, err := h.kube.BatchV1().CronJobs(h.ns).Create(h.ctx(10*time.Second), cj, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// A run that never ends (its pod's readiness fails, so kwok keeps
		// it Running), owned by the CronJob as the controller's are.
		run := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "report-29412000", OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1",
			Kind: KindCronJob, Name: "report", UID: created.UID, Controller: new(true)}}},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{sandbox.AnnotationReadiness: "fail"}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "app", Image: "report:1"}}}}}}
		if _, err := h.kube.BatchV1().Jobs(h.ns).Create(h.ctx(10*time.Second), run, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := h.planFor(t, h.noPodIncidentOn(KindCronJob, "batch/v1", created, events.IssueCronJobNotScheduling, cronPreviousRunActive,
			"cronjob report has not started 2 scheduled runs; concurrencyPolicy Forbid skips every run while job report-29412000 is still running"))
		if !strings.Contains(p.Steps[0].Title, "its run job/report-29412000 is still active") ||
			p.Steps[1].Kubectl != "kubectl -n "+h.ns+" delete job report-29412000" {
			t.Errorf("plan %s", mustJSON(p))
		}
	})

	t.Run("statefulset rollout stalled", func(t *testing.T) {
		replicas, labels := int32(2), map[string]string{"app": "db"}
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: appsv1.StatefulSetSpec{Replicas: &replicas, ServiceName: "db",
			Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres:17"}}}}}}
		if _, err := h.kube.AppsV1().StatefulSets(h.ns).Create(h.ctx(10*time.Second), sts, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		get := func() *appsv1.StatefulSet {
			s, err := h.kube.AppsV1().StatefulSets(h.ns).Get(h.ctx(10*time.Second), "db", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		eventually(t, 2*time.Minute, "statefulset db to be ready", func() (bool, string) {
			s := get()
			return s.Status.ReadyReplicas == 2, fmt.Sprintf("%+v", s.Status)
		})
		patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{%q:"1"}}}}}`, sandbox.AnnotationCrashExitCode)
		if _, err := h.kube.AppsV1().StatefulSets(h.ns).Patch(h.ctx(10*time.Second), "db", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Minute, "db-1 of the new revision to crash", func() (bool, string) {
			p, err := h.kube.CoreV1().Pods(h.ns).Get(h.ctx(10*time.Second), "db-1", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			cs := containerStatus(p, "db")
			return p.Labels[appsv1.ControllerRevisionHashLabelKey] == get().Status.UpdateRevision && cs != nil && cs.State.Waiting != nil &&
				cs.State.Waiting.Reason == "CrashLoopBackOff", fmt.Sprintf("%+v", p.Status)
		})
		s := get()
		p := h.planFor(t, h.noPodIncidentOn(KindStatefulSet, "apps/v1", s, events.IssueRolloutStuck, "statefulset_rollout_stalled",
			"rollout of statefulset db to revision "+s.Status.UpdateRevision+" stopped"))
		if !strings.Contains(p.Steps[0].Title, "to revision "+s.Status.UpdateRevision+" stopped") ||
			!strings.Contains(p.Steps[0].Title, "container db of pod/db-1 is waiting: CrashLoopBackOff") ||
			p.Steps[2].Kubectl != "kubectl -n "+h.ns+" rollout undo statefulset/db" ||
			p.Steps[3].Kubectl != "kubectl -n "+h.ns+" delete pod db-1" {
			t.Errorf("plan %s", mustJSON(p))
		}
	})
}
