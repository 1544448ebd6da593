package watcher

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Services that route to no ready pod, on the sandbox's real
// EndpointSlice controller: each test owns its namespace. The grace
// period is shortened so that the tests do not wait two minutes.

const e2eServiceGrace = 10 * time.Second

var (
	httpPort = corev1.ContainerPort{Name: "http", ContainerPort: 8080}
	// httpContainer serves on httpPort.
	httpContainer = corev1.Container{Name: "app", Image: "nginx:1.27", Ports: []corev1.ContainerPort{httpPort}}
)

func (h *harness) createService(t *testing.T, name string, selector map[string]string, target intstr.IntOrString) {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Selector: selector,
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: target}}}}
	if _, err := h.admin.CoreV1().Services(h.ns).Create(ctx30(t), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) patchService(t *testing.T, name, patch string) {
	t.Helper()
	if _, err := h.admin.CoreV1().Services(h.ns).Patch(ctx30(t), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// startServiceWatcher starts the watcher with the grace shortened to
// e2eServiceGrace.
func (h *harness) startServiceWatcher(t *testing.T) {
	t.Helper()
	h.serviceGrace = e2eServiceGrace
	h.startWatcher(t)
}

func TestServiceSelectingNoPodIsServiceUnavailableUntilFixed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startServiceWatcher(t)
	store := h.startPlanner(t)
	h.create(t, testDeployment("web", 2, nil, httpContainer))
	h.createService(t, "web", map[string]string{"app": "wbe"}, intstr.FromString("http"))

	id := h.incidentID("Service", "web", events.IssueServiceUnavailable)
	in := h.waitEvent(t, 2*time.Minute, id, events.TransitionDetected).event.Incident
	if in.Reason != "selector_matches_nothing" || in.Owner.Kind != "Service" || in.Owner.Name != "web" ||
		!strings.Contains(in.Message, "selects app=wbe, which matches no pod") || in.Severity != events.SeverityHigh {
		t.Errorf("incident = %+v", in)
	}
	// One Deployment fits: the typed selector fix (no executor runs it here).
	wantPlan(t, store, id, events.IssueServiceUnavailable, "Service", "web", events.ActionSetServiceSelector)
	h.patchService(t, "web", `{"spec":{"selector":{"app":"web"}}}`)
	h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

func TestServiceTargetPortMatchingNoPodPortIsServiceUnavailable(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startServiceWatcher(t)
	store := h.startPlanner(t)
	h.create(t, testDeployment("api", 2, nil, httpContainer))
	sel := map[string]string{"app": "api"}
	h.createService(t, "api-named", sel, intstr.FromString("web"))
	h.createService(t, "api-numeric", sel, intstr.FromInt32(9090))

	for _, c := range []struct{ svc, target string }{{"api-named", "targets web"}, {"api-numeric", "targets 9090"}} {
		id := h.incidentID("Service", c.svc, events.IssueServiceUnavailable)
		in := h.waitIncident(t, 2*time.Minute, id, "target_port_mismatch of 2 pods", func(in events.Incident) bool {
			return in.Reason == "target_port_mismatch" && in.PodCount == 2
		}).event.Incident
		if !strings.Contains(in.Message, c.target) || !strings.Contains(in.Message, "http=8080") {
			t.Errorf("%s: incident = %+v", c.svc, in)
		}
		// One declared port: the typed targetPort fix.
		wantPlan(t, store, id, events.IssueServiceUnavailable, "Service", c.svc, events.ActionSetServiceTargetPort)
	}
	h.patchService(t, "api-named", `{"spec":{"ports":[{"name":"http","port":80,"targetPort":"http"}]}}`)
	h.patchService(t, "api-numeric", `{"spec":{"ports":[{"name":"http","port":80,"targetPort":8080}]}}`)
	for _, name := range []string{"api-named", "api-numeric"} {
		h.waitEvent(t, 2*time.Minute, h.incidentID("Service", name, events.IssueServiceUnavailable), events.TransitionResolved)
	}
}

func TestServiceOfCrashingPodsHasNoReadyEndpoints(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startServiceWatcher(t)
	store := h.startPlanner(t)
	h.create(t, testDeployment("checkout", 2, map[string]string{sandbox.AnnotationCrashExitCode: "1"}, httpContainer))
	h.createService(t, "checkout", map[string]string{"app": "checkout"}, intstr.FromString("http"))

	id := h.incidentID("Service", "checkout", events.IssueServiceUnavailable)
	in := h.waitIncident(t, 3*time.Minute, id, "no_ready_endpoints of 2 pods", func(in events.Incident) bool {
		return in.Reason == "no_ready_endpoints" && in.PodCount == 2
	}).event.Incident
	if !strings.Contains(in.Message, "none of them ready") {
		t.Errorf("incident = %+v", in)
	}
	// The pods' own incident says why: diagnostic.
	wantPlan(t, store, id, events.IssueServiceUnavailable, "Service", "checkout", diagnostic)
	// The pods' own incident is there too, on their Deployment.
	crash := events.IncidentID(testCluster, h.ns, "Deployment", "checkout", "app", events.IssueCrashLoopBackOff)
	h.waitEvent(t, 2*time.Minute, crash, events.TransitionDetected)
	resp, err := h.analyze(events.AnalyzeRequest{Namespace: h.ns})
	if err != nil || resp.ByType[events.IssueServiceUnavailable] != 1 || resp.ByType[events.IssueCrashLoopBackOff] != 1 {
		t.Errorf("analyze = %+v, %v; want the Service's and the pods' incidents", resp, err)
	}
	h.fixCrash(t, "checkout")
	h.waitEvent(t, 3*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

// No false alarms: an ExternalName Service, one without selector, a
// healthy one, and one whose Deployment is scaled to zero on purpose.
func TestServicesThatAreFineAreNoIncident(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startServiceWatcher(t)
	h.create(t, testDeployment("web", 2, nil, httpContainer))
	h.create(t, testDeployment("idle", 0, nil, httpContainer))
	h.createService(t, "web", map[string]string{"app": "web"}, intstr.FromString("http"))
	h.createService(t, "idle", map[string]string{"app": "idle"}, intstr.FromString("http"))
	h.createService(t, "manual", nil, intstr.FromInt32(8080))
	ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "upstream"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "api.example.com"}}
	if _, err := h.admin.CoreV1().Services(h.ns).Create(ctx30(t), ext, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitRolledOut(t, "web", 2)
	waitFor(t, time.Minute, "the web Service's ready endpoints", func() (bool, string) {
		l, err := h.admin.DiscoveryV1().EndpointSlices(h.ns).List(ctx30(t), metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=web"})
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, s := range l.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					n++
				}
			}
		}
		return n == 2, fmt.Sprintf("%d ready endpoints", n)
	})
	// Past the grace period, and some evaluations later.
	time.Sleep(e2eServiceGrace + 5*time.Second)
	if all := h.events(t); len(all) != 0 {
		t.Errorf("announcements for healthy Services: %s", summary(all))
	}
	if resp, err := h.analyze(events.AnalyzeRequest{}); err != nil || len(resp.Incidents) != 0 {
		t.Errorf("analyze = %+v, %v; want no incident", resp, err)
	}
}
