package planner

import (
	"context"
	"strings"
	"testing"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// gather of an IngressUnavailable incident reads the Ingress, the
// Services its backends name (a missing one noted as missing) and the
// IngressClasses; a class list RBAC refuses is evidence, not an error.
func TestGatherIngressReadsItsServicesAndClasses(t *testing.T) {
	class := "nginx"
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "apps", UID: "ing-uid"},
		Spec: networkingv1.IngressSpec{IngressClassName: &class, DefaultBackend: &networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: "api", Port: networkingv1.ServiceBackendPort{Number: 8080}}},
			Rules: []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: "/", Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
					Name: "web", Port: networkingv1.ServiceBackendPort{Name: "http"}}}}}}}}}}}
	web := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	nginx := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}}
	for _, forbidden := range []bool{false, true} {
		cs := fake.NewClientset(ing, web, nginx)
		if forbidden {
			cs.PrependReactor("list", "ingressclasses", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "networking.k8s.io", Resource: "ingressclasses"}, "", nil)
			})
		}
		inc := noPodIncident(events.ObjectRef{Kind: KindIngress, Namespace: "apps", Name: "shop", UID: "ing-uid", APIVersion: "networking.k8s.io/v1"},
			events.IssueIngressUnavailable, ingressServiceNotFound, "ingress shop: default backend routes to service api, which does not exist")
		in, err := reader{kube: cs, cfg: testConfig(t)}.gather(context.Background(), inc)
		if err != nil {
			t.Fatal(err)
		}
		r := in.Ingress
		if r == nil || r.Ingress == nil || r.Services["web"] == nil || len(r.Missing) != 1 || r.Missing[0] != "api" {
			t.Fatalf("read = %+v", r)
		}
		if forbidden != (r.Classes == nil) || forbidden && (len(r.Errs) != 1 || !strings.Contains(r.Errs[0], "not readable with the planner's role")) {
			t.Errorf("forbidden %t: classes %v, errs %v", forbidden, r.Classes, r.Errs)
		}
		ev := ingressEvidence(in)
		if !strings.Contains(strings.Join(ev.Lines, "\n"), "default backend -> service api port 8080: service not found") {
			t.Errorf("evidence = %v", ev.Lines)
		}
	}
}

// gather of a StatefulSet's RolloutStuck incident (no pod named) reads
// its pods and picks the one of the update revision that is not ready.
func TestGatherStalledStatefulSetPicksTheNotReadyPodOfItsUpdateRevision(t *testing.T) {
	labels := map[string]string{"app": "db"}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "apps", UID: "sts-uid"},
		Spec:   appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}},
		Status: appsv1.StatefulSetStatus{CurrentRevision: "db-old", UpdateRevision: "db-new"}}
	owned := []metav1.OwnerReference{{Kind: KindStatefulSet, Name: "db", UID: "sts-uid", Controller: new(true)}}
	pod := func(name, rev string, ready corev1.ConditionStatus) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", OwnerReferences: owned,
			Labels: map[string]string{"app": "db", appsv1.ControllerRevisionHashLabelKey: rev}},
			Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}}}
	}
	cs := fake.NewClientset(sts, pod("db-0", "db-old", corev1.ConditionFalse), pod("db-1", "db-old", corev1.ConditionTrue),
		pod("db-2", "db-new", corev1.ConditionFalse))
	inc := noPodIncident(kindRef(KindStatefulSet, "apps/v1", sts.ObjectMeta), events.IssueRolloutStuck, "statefulset_rollout_stalled", "rollout stalled")
	in, err := reader{kube: cs, cfg: testConfig(t)}.gather(context.Background(), inc)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Pods) != 3 || in.Pod == nil || in.Pod.Name != "db-2" {
		t.Errorf("pods %d, pod %+v; want db-2, the new revision's", len(in.Pods), in.Pod)
	}
}

// gather of a CronJobNotScheduling incident reads its runs.
func TestGatherCronJobNotSchedulingReadsItsRuns(t *testing.T) {
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: "apps", UID: "cj-uid"}, Spec: batchv1.CronJobSpec{Schedule: "* * * * *"}}
	run := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "report-1", Namespace: "apps",
		OwnerReferences: []metav1.OwnerReference{{Kind: KindCronJob, Name: "report", UID: "cj-uid", Controller: new(true)}}}}
	other := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "apps"}}
	inc := noPodIncident(kindRef(KindCronJob, "batch/v1", cj.ObjectMeta), events.IssueCronJobNotScheduling, cronPreviousRunActive, "late")
	in, err := reader{kube: fake.NewClientset(cj, run, other), cfg: testConfig(t)}.gather(context.Background(), inc)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Jobs) != 1 || in.Jobs[0].Name != "report-1" {
		t.Errorf("jobs = %+v", in.Jobs)
	}
	if runs := activeRuns(cj, in.Jobs); len(runs) != 1 || runs[0] != "report-1" {
		t.Errorf("active runs = %v", runs)
	}
}
