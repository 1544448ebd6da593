package watcher

import (
	"cmp"
	"fmt"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/tools/cache"
)

// An IngressClass whose controller does not run. The API shows no sign of
// a controller (an IngressClass is only a name and spec.controller), but
// every controller that serves an Ingress writes the address it serves
// it at into status.loadBalancer.ingress, within seconds (a cloud load
// balancer within minutes). So: an Ingress of a class that exists, with
// no address for longer than watcher.ingress_grace, while no other
// Ingress of its class has one either. The last condition keeps a
// controller that runs, and has served the class's other Ingresses, from
// being blamed for one Ingress it has not got to (or refuses: its own
// events say why). A controller that runs but never publishes addresses
// (ingress-nginx with --update-status=false) looks the same: the message
// and the plan say so.

// reasonIngressNoController: the Ingress's class exists and nothing
// serves it.
const reasonIngressNoController = "no_controller"

// DefaultIngressGrace is IngressOptions.AddressGrace's default
// (watcher.ingress_grace).
const DefaultIngressGrace = 15 * time.Minute

// indexIngressClass indexes Ingresses by their ingressClassName ("" for
// none, unless the legacy class annotation chooses for them).
const indexIngressClass = "kaar-ingress-class"

// IngressOptions tunes Ingress detection.
type IngressOptions struct {
	// AddressGrace is how long an Ingress of an existing IngressClass may
	// have no address, while no Ingress of its class has one, before its
	// class is reported as having no running controller
	// (watcher.ingress_grace).
	AddressGrace time.Duration
}

func (o IngressOptions) withDefaults() IngressOptions {
	o.AddressGrace = cmp.Or(o.AddressGrace, DefaultIngressGrace)
	return o
}

// IngressClassState is what ClassifyIngressController knows of the class
// that serves an Ingress.
type IngressClassState struct {
	// Name is the IngressClass, which exists ("" when the Ingress has no
	// class that exists, or one the watcher cannot know: not judged).
	Name string
	// Controller is its spec.controller ("example.com/ingress-nginx").
	Controller string
	// Addressed: some Ingress of the class has an address.
	Addressed bool
}

// ClassifyIngressController reports an Ingress whose IngressClass exists
// but whose controller does not seem to run: it has had no address since
// its creation for longer than grace, and no Ingress of its class has
// one. Within the grace it returns when to look again. A pure function
// of its arguments.
func ClassifyIngressController(ing *networkingv1.Ingress, class IngressClassState, now time.Time, grace time.Duration) ([]ControllerIssue, time.Time) {
	if ing == nil || ing.DeletionTimestamp != nil || class.Name == "" || class.Addressed || ingressAddressed(ing) {
		return nil, time.Time{}
	}
	if due := ing.CreationTimestamp.Add(grace); now.Before(due) {
		return nil, due
	}
	controller := cmp.Or(class.Controller, "none")
	msg := fmt.Sprintf("ingress %s: IngressClass %q (spec.controller %s) exists, but no Ingress of that class has an address "+
		"(status.loadBalancer) and this one has had none for %s, so its controller does not seem to run (or it does not publish addresses)",
		ing.Name, class.Name, controller, now.Sub(ing.CreationTimestamp.Time).Round(time.Second))
	return []ControllerIssue{{Type: events.IssueIngressUnavailable, Reason: reasonIngressNoController, Message: msg}}, time.Time{}
}

// ingressAddressed reports an Ingress a controller published an address
// for.
func ingressAddressed(ing *networkingv1.Ingress) bool {
	for _, a := range ing.Status.LoadBalancer.Ingress {
		if a.IP != "" || a.Hostname != "" {
			return true
		}
	}
	return false
}

// ingressClassKey is the class index key of an Ingress; ok is false for
// one whose legacy class annotation chooses (not indexed).
func ingressClassKey(ing *networkingv1.Ingress) (string, bool) {
	if name := ingressClassName(ing); name != "" {
		return name, true
	}
	if ing.Annotations[annotationIngressClass] != "" {
		return "", false
	}
	return "", true
}

// indexByIngressClass is the indexIngressClass index function.
func indexByIngressClass(obj any) ([]string, error) {
	ing, ok := obj.(*networkingv1.Ingress)
	if !ok {
		return nil, nil
	}
	if k, ok := ingressClassKey(ing); ok {
		return []string{k}, nil
	}
	return nil, nil
}

// ingressClassState resolves the class that serves ing (its
// ingressClassName, else the default class) against the cache, and
// whether any Ingress of it has an address.
func (s *Service) ingressClassState(ing *networkingv1.Ingress, classes IngressClasses) IngressClassState {
	key, ok := ingressClassKey(ing)
	if !ok || !classes.Known {
		return IngressClassState{}
	}
	name := cmp.Or(key, classes.DefaultName)
	controller, exists := classes.Controllers[name]
	if name == "" || !exists {
		return IngressClassState{}
	}
	st := IngressClassState{Name: name, Controller: controller}
	keys := []string{name}
	if name == classes.DefaultName {
		keys = append(keys, "") // the Ingresses without class it serves
	}
	for _, k := range keys {
		for _, o := range byIndex[networkingv1.Ingress](s.ingress.ingresses, indexIngressClass, k) {
			if ingressAddressed(o) {
				st.Addressed = true
				return st
			}
		}
	}
	return st
}

// ingressAddressHandler re-evaluates the Ingresses of a class when one of
// them gains or loses its address (a controller that starts, or stops):
// only then, so that a resync costs nothing more.
func (s *Service) ingressAddressHandler() cache.ResourceEventHandler {
	siblings := func(obj any) {
		ing, ok := obj.(*networkingv1.Ingress)
		if !ok {
			if d, isTomb := obj.(cache.DeletedFinalStateUnknown); isTomb {
				ing, ok = d.Obj.(*networkingv1.Ingress)
			}
			if !ok {
				return
			}
		}
		key, ok := ingressClassKey(ing)
		if !ok {
			return
		}
		keys := []string{key}
		if def := s.ingress.classInfo().DefaultName; def != "" && (key == "" || key == def) {
			keys = []string{def, ""}
		}
		for _, k := range keys {
			for _, o := range byIndex[networkingv1.Ingress](s.ingress.ingresses, indexIngressClass, k) {
				s.ingressChanged(o)
			}
		}
	}
	addressed := func(obj any) bool {
		ing, ok := obj.(*networkingv1.Ingress)
		return ok && ingressAddressed(ing)
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if addressed(obj) {
				siblings(obj)
			}
		},
		UpdateFunc: func(old, obj any) {
			if addressed(old) != addressed(obj) {
				siblings(obj)
			}
		},
		DeleteFunc: siblings,
	}
}
