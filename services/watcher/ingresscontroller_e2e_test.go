package watcher

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// An IngressClass whose controller does not run. The sandbox runs no
// ingress controller: nothing writes an Ingress's address unless the test
// does, as a controller would (status.loadBalancer.ingress).

// withIngressGrace sets the watcher's watcher.ingress_grace.
func (h *harness) withIngressGrace(d time.Duration) {
	h.configure = func(c *Config) { c.Ingresses.AddressGrace = d }
}

// publishAddress writes an address into Ingress name's status, as its
// controller does once it serves it.
func (h *harness) publishAddress(t *testing.T, name string) {
	t.Helper()
	ing, err := h.admin.NetworkingV1().Ingresses(h.ns).Get(ctx30(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "203.0.113.10"}}
	if _, err := h.admin.NetworkingV1().Ingresses(h.ns).UpdateStatus(ctx30(t), ing, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestIngressOfAClassWithoutARunningControllerIsIngressUnavailableUntilServed(t *testing.T) {
	t.Parallel()
	h := ingressHarness(t)
	h.withIngressGrace(3 * time.Second)
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.createIngress(t, h.ns, "web", "http") // a sound spec
	in := h.waitIngressIncident(t, store, "no_controller",
		`ingress shop: IngressClass "`+h.ns+`" (spec.controller example.com/ingress) exists, but no Ingress of that class has an address`)
	if !strings.Contains(in.Message, "its controller does not seem to run") {
		t.Errorf("message %q does not say the controller does not seem to run", in.Message)
	}
	id := h.incidentID(kindIngress, "shop", events.IssueIngressUnavailable)
	p := waitPlan(t, store, id, events.IssueIngressUnavailable)
	if titles := stepTitles(p); !strings.Contains(titles, "example.com/ingress") || !strings.Contains(titles, "address") {
		t.Errorf("plan does not name the class's controller and the missing address:\n%s", titles)
	}

	// A controller serves it: the incident resolves.
	h.publishAddress(t, "shop")
	h.waitEvent(t, time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

func TestIngressOfAClassWhoseControllerServesOthersIsNoIncident(t *testing.T) {
	t.Parallel()
	h := ingressHarness(t)
	h.withIngressGrace(3 * time.Second)
	h.startWatcher(t)
	// The class's controller has served another Ingress: the one it has
	// not served yet is not its class's failure.
	served := testIngress(h.ns, backend("web", 80))
	served.ObjectMeta = metav1.ObjectMeta{Name: "served"}
	if _, err := h.admin.NetworkingV1().Ingresses(h.ns).Create(ctx30(t), served, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.publishAddress(t, "served")
	h.createIngress(t, h.ns, "web", "http")
	time.Sleep(3 * time.Second)
	quiet()
	if all := h.events(t); len(all) != 0 {
		t.Errorf("announcements while the class's controller serves an Ingress: %s", summary(all))
	}
}

func TestNewIngressWithinTheIngressGraceIsNoIncident(t *testing.T) {
	t.Parallel()
	h := ingressHarness(t)
	const grace = 20 * time.Second
	h.withIngressGrace(grace)
	h.startWatcher(t)
	h.createIngress(t, h.ns, "web", "http")
	ing, err := h.admin.NetworkingV1().Ingresses(h.ns).Get(ctx30(t), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The grace runs from the Ingress's creationTimestamp, which the API
	// server writes in whole seconds (up to a second before the create
	// call, and more before it returns on a loaded machine).
	created := ing.CreationTimestamp.Time
	quiet()
	if all := h.events(t); len(all) != 0 || time.Since(created) >= grace {
		t.Fatalf("announcements within the grace (%s after the Ingress's creationTimestamp): %s", time.Since(created), summary(all))
	}
	// Past the grace, still without address: now it is one.
	id := h.incidentID(kindIngress, "shop", events.IssueIngressUnavailable)
	r := h.waitEvent(t, time.Minute, id, events.TransitionDetected)
	if r.event.Incident.Reason != "no_controller" || r.event.ObservedAt.Before(created.Add(grace)) {
		t.Errorf("detected %+v at %s, want no_controller once %s have passed since the creationTimestamp %s", r.event.Incident, r.event.ObservedAt, grace, created)
	}
}
