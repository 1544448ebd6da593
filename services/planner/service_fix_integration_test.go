package planner

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// A Service whose selector has the wrong value, planned on the sandbox
// by the planner with its own least-privilege role: a typed
// set_service_selector step the API server accepted in a dry run (patch
// on services is in RBACRules for that), and the Service unchanged.
func TestServiceSelectorFixIsDryRunOnTheSandbox(t *testing.T) {
	h := newHarness(t, true)
	h.asLeastPrivilegedPlanner(t)
	h.startPlanner(nil)
	lbls := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.DeploymentSpec{Replicas: new(int32(1)),
		Selector: &metav1.LabelSelector{MatchLabels: lbls},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbls}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "nginx:1.27", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}}}}}
	if _, err := h.kube.AppsV1().Deployments(h.ns).Create(h.ctx(10*time.Second), dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "wbe"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}}}
	created, err := h.kube.CoreV1().Services(h.ns).Create(h.ctx(10*time.Second), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inc := h.noPodIncidentOn(KindService, "v1", created, events.IssueServiceUnavailable, trafficSelectorMatchesNothing,
		"service web selects app=wbe, which matches no pod and no workload in the namespace: no endpoint receives its traffic")
	h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, ""))
	p := h.proposed(inc.ID)
	if p.DiagnosticOnly || len(p.Steps) != 1 {
		t.Fatalf("plan is not one typed step: %s", mustJSON(p))
	}
	st := p.Steps[0]
	if st.Action != events.ActionSetServiceSelector || st.Params[events.ParamSelector] != "app=web" || st.DryRun == nil || !st.DryRun.OK ||
		!strings.Contains(st.DryRun.Message, "would have selector app=web") || p.TargetResourceVersion != created.ResourceVersion {
		t.Errorf("step %s", mustJSON(st))
	}
	now, err := h.kube.CoreV1().Services(h.ns).Get(h.ctx(10*time.Second), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if now.Spec.Selector["app"] != "wbe" || now.ResourceVersion != created.ResourceVersion {
		t.Errorf("the dry run changed the Service: selector %v, resourceVersion %s (was %s)", now.Spec.Selector, now.ResourceVersion, created.ResourceVersion)
	}
}
