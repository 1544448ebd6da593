package planner

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// An Ingress that routes nowhere (IngressUnavailable): a backend Service
// or service port that does not exist, an ingressClassName naming no
// IngressClass, no class and no default one, or a class whose controller
// does not seem to run (ingresscontroller.go). The plans are
// diagnostic: the executor's catalogue has no step that changes an
// Ingress or a Service, and which of the two is wrong is a person's call.

// KindIngress is the owner kind of IngressUnavailable incidents.
const KindIngress = "Ingress"

// Reasons of an IngressUnavailable incident, as the watcher classifies it.
const (
	ingressServiceNotFound = "service_not_found"
	ingressPortNotFound    = "service_port_not_found"
	ingressClassNotFound   = "ingress_class_not_found"
	ingressNoClass         = "no_ingress_class"
)

// annotationDefaultIngressClass marks the default IngressClass.
const annotationDefaultIngressClass = networkingv1.AnnotationIsDefaultIngressClass

// ingressRead is what the planner read about an Ingress's Services and
// the cluster's IngressClasses.
type ingressRead struct {
	Ingress *networkingv1.Ingress
	// Services are the Services its backends name that exist, by name;
	// Missing the names that do not.
	Services map[string]*corev1.Service
	Missing  []string
	// Classes are the cluster's IngressClasses, by name (nil when they
	// could not be read: see Errs).
	Classes []networkingv1.IngressClass
	Errs    []string
}

// ingressBackend is one Service backend of an Ingress.
type ingressBackend struct {
	Where   string // "rule shop.example.com/api", "default backend"
	Service string
	Port    networkingv1.ServiceBackendPort
}

func ingressBackends(ing *networkingv1.Ingress) []ingressBackend {
	var out []ingressBackend
	if b := ing.Spec.DefaultBackend; b != nil && b.Service != nil {
		out = append(out, ingressBackend{Where: "default backend", Service: b.Service.Name, Port: b.Service.Port})
	}
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		host := cmp.Or(r.Host, "*")
		for _, p := range r.HTTP.Paths {
			if p.Backend.Service != nil {
				out = append(out, ingressBackend{Where: "rule " + host + p.Path, Service: p.Backend.Service.Name, Port: p.Backend.Service.Port})
			}
		}
	}
	return out
}

func backendPort(p networkingv1.ServiceBackendPort) string {
	if p.Name != "" {
		return p.Name
	}
	return fmt.Sprint(p.Number)
}

// ingress reads the Services an Ingress's backends name and the
// IngressClasses. Read failures are evidence, never an error.
func (r reader) ingress(ctx context.Context, in planInput) *ingressRead {
	ing, _ := in.Owner.Object.(*networkingv1.Ingress)
	if ing == nil {
		return nil
	}
	t := &ingressRead{Ingress: ing, Services: map[string]*corev1.Service{}}
	for _, b := range ingressBackends(ing) {
		if _, done := t.Services[b.Service]; done || slices.Contains(t.Missing, b.Service) {
			continue
		}
		svc, err := r.kube.CoreV1().Services(ing.Namespace).Get(ctx, b.Service, metav1.GetOptions{})
		switch {
		case err == nil:
			t.Services[b.Service] = svc
		case apierrors.IsNotFound(err):
			t.Missing = append(t.Missing, b.Service)
		default:
			t.Errs = append(t.Errs, readErr("service/"+b.Service, err))
		}
	}
	classes, err := r.kube.NetworkingV1().IngressClasses().List(ctx, metav1.ListOptions{Limit: listLimit})
	if err != nil {
		t.Errs = append(t.Errs, readErr("ingressclasses", err))
	} else {
		t.Classes = classes.Items
		slices.SortFunc(t.Classes, func(a, b networkingv1.IngressClass) int { return cmp.Compare(a.Name, b.Name) })
	}
	return t
}

// classNames lists the IngressClasses, the default marked:
// "nginx (default), traefik"; "none".
func (t *ingressRead) classNames() string {
	var out []string
	for _, c := range t.Classes {
		s := c.Name
		if c.Annotations[annotationDefaultIngressClass] == "true" {
			s += " (default)"
		}
		out = append(out, s)
	}
	return orNone(out)
}

// ingressSteps say which backend or class is wrong and what a person
// changes; kaar changes nothing.
func ingressSteps(in planInput, b *builder, step stepFunc) []events.Step {
	name := in.Owner.Ref.Name
	ref := in.Owner.ref()
	describe := b.onOwner(step(fmt.Sprintf("Read %s: its class, rules, backends and events", ref), "describe", "ingress", name))
	t := in.Ingress
	if t == nil || t.Ingress == nil {
		return []events.Step{describe}
	}
	ing := t.Ingress
	var out []events.Step
	switch in.Incident.Reason {
	case ingressClassNotFound, ingressNoClass:
		what := fmt.Sprintf("%s names IngressClass %s, which does not exist", ref, quote(derefOr(ing.Spec.IngressClassName, "")))
		if in.Incident.Reason == ingressNoClass {
			what = ref + " has no ingressClassName and no IngressClass is the default"
		}
		out = append(out, b.onOwner(step(fmt.Sprintf("%s: no ingress controller serves it. The cluster's IngressClasses: %s", what, t.classNames()),
			"get", "ingressclasses")))
		out = append(out, b.onOwner(step(fmt.Sprintf("Set spec.ingressClassName of %s to the class of the controller that should serve it (one of the above), or install that controller: by hand, kaar does not change Ingresses", ref),
			"edit", "ingress", name)))
	case ingressNoController:
		out = append(out, ingressControllerSteps(in, b, t)...)
	case ingressServiceNotFound, ingressPortNotFound:
		for _, bk := range ingressBackends(ing) {
			svc := t.Services[bk.Service]
			switch {
			case slices.Contains(t.Missing, bk.Service):
				out = append(out, b.onOwner(step(fmt.Sprintf("The %s of %s routes to service %s, which does not exist in namespace %s", bk.Where, ref, quote(bk.Service), in.Incident.Namespace),
					"get", "services")))
			case svc != nil && svc.Spec.Type != corev1.ServiceTypeExternalName && !hasServicePort(svc, bk.Port):
				out = append(out, b.onOwner(step(fmt.Sprintf("The %s of %s routes to port %s of service/%s, which exposes %s", bk.Where, ref, quote(backendPort(bk.Port)), bk.Service, servicePortList(svc)),
					"get", "service", bk.Service, "-o", "custom-columns=NAME:.metadata.name,PORT_NAMES:.spec.ports[*].name,PORTS:.spec.ports[*].port")))
			}
		}
		out = append(out, b.onOwner(step(fmt.Sprintf("Point the backends of %s at an existing Service and one of its ports, or create the Service it names: by hand, kaar does not change Ingresses or Services", ref),
			"edit", "ingress", name)))
	}
	return append(out, describe)
}

func hasServicePort(svc *corev1.Service, p networkingv1.ServiceBackendPort) bool {
	return slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
		return p.Name != "" && sp.Name == p.Name || p.Name == "" && sp.Port == p.Number
	})
}

// servicePortList is "http=80, 443" ("no port").
func servicePortList(svc *corev1.Service) string {
	var out []string
	for _, p := range svc.Spec.Ports {
		s := fmt.Sprint(p.Port)
		if p.Name != "" {
			s = p.Name + "=" + s
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return "no port"
	}
	return strings.Join(out, ", ")
}

// ingressEvidence quotes the Ingress's class and backends against the
// Services and IngressClasses read.
func ingressEvidence(in planInput) events.Evidence {
	t := in.Ingress
	ing := t.Ingress
	class := derefOr(ing.Spec.IngressClassName, "")
	lines := []string{quote(fmt.Sprintf("ingress/%s ingressClassName %s", ing.Name, cmp.Or(class, "(none)")))}
	if t.Classes != nil {
		lines = append(lines, quote("ingressclasses: "+t.classNames()))
	}
	if in.Incident.Reason == ingressNoController {
		lines = append(lines, ingressControllerEvidence(t)...)
	}
	for _, bk := range ingressBackends(ing) {
		state := "service not found"
		if svc := t.Services[bk.Service]; svc != nil {
			state = fmt.Sprintf("service %s ports %s", cmp.Or(svc.Spec.Type, corev1.ServiceTypeClusterIP), servicePortList(svc))
		} else if !slices.Contains(t.Missing, bk.Service) {
			state = "service not read"
		}
		lines = append(lines, quote(fmt.Sprintf("%s -> service %s port %s: %s", bk.Where, bk.Service, backendPort(bk.Port), state)))
	}
	for _, e := range t.Errs {
		lines = append(lines, quote(e))
	}
	data := map[string]string{"ingress": ing.Name, "ingress_class": class, "missing_services": strings.Join(t.Missing, ",")}
	if in.Incident.Reason != "" {
		data["reason"] = in.Incident.Reason
	}
	return events.Evidence{Kind: events.EvidenceTraffic, Title: fmt.Sprintf("What ingress/%s routes to: %d backends, %d missing services", ing.Name,
		len(ingressBackends(ing)), len(t.Missing)), Source: "ingress, the services it names, ingressclasses", Lines: lines, Data: data}
}
