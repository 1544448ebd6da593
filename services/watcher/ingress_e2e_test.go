package watcher

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Ingresses that route nowhere, on the sandbox's API server (no ingress
// controller runs there: what kaar reads is the Ingress's own spec against
// the Services and IngressClasses). Each test owns its namespace and its
// IngressClass, named after the namespace (IngressClasses are cluster-
// scoped).

// ingressHarness is a harness whose watcher may read IngressClasses (a
// ClusterRole: a namespaced Role cannot grant them) and whose namespace
// has IngressClass <ns> and Service web (port http=80, no selector),
// with a short grace.
func ingressHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	ctx := ctx30(t)
	// Named after the namespace, for the test's duration.
	name := "kaar-watcher-ingressclasses-" + h.ns
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingressclasses"}, Verbs: []string{"get", "list", "watch"}}}}
	if _, err := h.admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: "kaar-watcher"}}}
	if _, err := h.admin.RbacV1().ClusterRoleBindings().Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.admin.RbacV1().ClusterRoleBindings().Delete(ctx30(t), name, metav1.DeleteOptions{})
		_ = h.admin.RbacV1().ClusterRoles().Delete(ctx30(t), name, metav1.DeleteOptions{})
	})
	class := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: h.ns}, Spec: networkingv1.IngressClassSpec{Controller: "example.com/ingress"}}
	if _, err := h.admin.NetworkingV1().IngressClasses().Create(ctx, class, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.admin.NetworkingV1().IngressClasses().Delete(ctx30(t), class.Name, metav1.DeleteOptions{})
	})
	// Without a selector (its endpoints managed by hand): no pod needed,
	// and never a ServiceUnavailable incident of its own.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	if _, err := h.admin.CoreV1().Services(h.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.serviceGrace = 2 * time.Second
	return h
}

// createIngress creates Ingress shop of class class routing host
// shop.example.com / to service svc at port (a number or a name).
func (h *harness) createIngress(t *testing.T, class, svc string, port any) {
	t.Helper()
	ing := testIngress(class, backend(svc, port))
	ing.ObjectMeta = metav1.ObjectMeta{Name: "shop"}
	if _, err := h.admin.NetworkingV1().Ingresses(h.ns).Create(ctx30(t), ing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitIngressIncident waits for Ingress shop's incident of reason, and
// its plan from the planner of store: diagnostic by design.
func (h *harness) waitIngressIncident(t *testing.T, store *bus.PlanStore, reason, inMessage string) events.Incident {
	t.Helper()
	id := h.incidentID(kindIngress, "shop", events.IssueIngressUnavailable)
	r := h.waitIncident(t, time.Minute, id, reason, func(in events.Incident) bool { return in.Reason == reason })
	in := r.event.Incident
	if in.Owner.Kind != kindIngress || in.Owner.Name != "shop" || in.Owner.APIVersion != "networking.k8s.io/v1" ||
		in.Severity != events.SeverityHigh || !strings.Contains(in.Message, inMessage) {
		t.Errorf("incident = %+v\nwant owner Ingress shop, message with %q", in, inMessage)
	}
	wantPlan(t, store, id, events.IssueIngressUnavailable, kindIngress, "shop", diagnostic)
	return in
}

func TestIngressToAMissingServiceIsIngressUnavailableUntilTheServiceExists(t *testing.T) {
	t.Parallel()
	h := ingressHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.createIngress(t, h.ns, "api", 8080)
	h.waitIngressIncident(t, store, "service_not_found", "ingress shop: rule shop.example.com/ routes to service api, which does not exist")
	if resp, err := h.analyze(events.AnalyzeRequest{Type: events.IssueIngressUnavailable}); err != nil || len(resp.Incidents) != 1 {
		t.Errorf("analyze = %+v, %v; want the IngressUnavailable incident", resp, err)
	}

	// The Service is created: the Ingress routes again.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "api"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8080}}}}
	if _, err := h.admin.CoreV1().Services(h.ns).Create(ctx30(t), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	id := h.incidentID(kindIngress, "shop", events.IssueIngressUnavailable)
	h.waitEvent(t, time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

func TestIngressToAPortItsServiceDoesNotExposeIsIngressUnavailable(t *testing.T) {
	t.Parallel()
	h := ingressHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.createIngress(t, h.ns, "web", "https")
	h.waitIngressIncident(t, store, "service_port_not_found", "routes to port https of service web, which has no such port (its ports: http=80)")
}

func TestIngressNamingAMissingClassIsIngressUnavailable(t *testing.T) {
	t.Parallel()
	h := ingressHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.createIngress(t, "missing-"+h.ns, "web", 80)
	h.waitIngressIncident(t, store, "ingress_class_not_found", `ingressClassName "missing-`+h.ns+`" names no IngressClass`)
}

func TestHealthyIngressIsNoIncident(t *testing.T) {
	t.Parallel()
	h := ingressHarness(t)
	h.startWatcher(t)
	h.createIngress(t, h.ns, "web", "http")
	time.Sleep(h.serviceGrace)
	quiet()
	if all := h.events(t); len(all) != 0 {
		t.Errorf("announcements for a healthy Ingress: %s", summary(all))
	}
}

func TestIngressWithoutClassWhileNoClassIsTheDefaultIsIngressUnavailable(t *testing.T) {
	t.Parallel()
	h := ingressHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	// No IngressClass of the sandbox is the default (the tests' classes
	// are not): the API server's DefaultIngressClass admission leaves it
	// without one, and no controller is bound to serve it.
	h.createIngress(t, "", "web", 80)
	h.waitIngressIncident(t, store, "no_ingress_class", "it has no ingressClassName and no IngressClass is the default")

	// Given the test's class: served, the incident resolves.
	patch := fmt.Appendf(nil, `{"spec":{"ingressClassName":%q}}`, h.ns)
	if _, err := h.admin.NetworkingV1().Ingresses(h.ns).Patch(ctx30(t), "shop", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitEvent(t, time.Minute, h.incidentID(kindIngress, "shop", events.IssueIngressUnavailable), events.TransitionResolved)
}
