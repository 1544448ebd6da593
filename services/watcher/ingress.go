package watcher

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Reason classes of an Ingress that routes nowhere.
const (
	reasonIngressServiceNotFound = "service_not_found"
	reasonIngressPortNotFound    = "service_port_not_found"
	reasonIngressClassNotFound   = "ingress_class_not_found"
	reasonNoIngressClass         = "no_ingress_class"
)

// ingressTypes are the issue types ClassifyIngress reports.
var ingressTypes = map[events.IssueType]bool{events.IssueIngressUnavailable: true}

// Kubernetes names the Ingress classifier reads.
const (
	kindIngress = "Ingress"
	// annotationIngressClass is the class annotation of Ingresses older
	// than ingressClassName: the controllers that honour it choose, so an
	// Ingress that has it is never reported for its class.
	annotationIngressClass = "kubernetes.io/ingress.class"
	// annotationDefaultClass marks the IngressClass that serves the
	// Ingresses without a class.
	annotationDefaultClass = networkingv1.AnnotationIsDefaultIngressClass
	// indexIngressService is the index of Ingresses by the Services they
	// route to (namespace/service).
	indexIngressService = "kaar-ingress-service"
)

// IngressClasses is what ClassifyIngress knows of the cluster's
// IngressClasses: their names and which is the default. Known is false
// when the watcher may not read them (a namespaced Role cannot grant a
// cluster-scoped kind): the class is then not judged.
type IngressClasses struct {
	Known   bool
	Names   []string
	Default bool
	// DefaultName is the default class ("" for none); Controllers the
	// spec.controller of each class, by name (ingresscontroller.go).
	DefaultName string
	Controllers map[string]string
}

// ingressBackend is one Service an Ingress routes to, and where.
type ingressBackend struct {
	where   string // "rule shop.example.com/api", "default backend"
	service string
	port    networkingv1.ServiceBackendPort
}

// ingressBackends lists the Service backends of an Ingress (resource
// backends are not Services: not judged), the default backend first.
func ingressBackends(ing *networkingv1.Ingress) []ingressBackend {
	var out []ingressBackend
	if b := ing.Spec.DefaultBackend; b != nil && b.Service != nil {
		out = append(out, ingressBackend{where: "default backend", service: b.Service.Name, port: b.Service.Port})
	}
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		host := r.Host
		if host == "" {
			host = "*"
		}
		for _, p := range r.HTTP.Paths {
			if p.Backend.Service != nil {
				out = append(out, ingressBackend{where: "rule " + host + p.Path, service: p.Backend.Service.Name, port: p.Backend.Service.Port})
			}
		}
	}
	return out
}

func portString(p networkingv1.ServiceBackendPort) string {
	if p.Name != "" {
		return p.Name
	}
	return fmt.Sprint(p.Number)
}

// ClassifyIngress says whether an Ingress routes nowhere at time now: a
// backend Service that does not exist, a service port (number or name)
// the Service does not expose, an ingressClassName that names no
// IngressClass, or no class while no IngressClass is the default.
// services are the namespace's Services the Ingress names, by name
// (absent: not found). An Ingress younger than grace is not judged (its
// Service may be created in the same apply); the second result is when
// to look again. One issue, its reason the first problem's (the class
// first: without one nothing serves the Ingress at all), its message all
// of them. A pure function of its arguments.
func ClassifyIngress(ing *networkingv1.Ingress, services map[string]*corev1.Service, classes IngressClasses, now time.Time, grace time.Duration) ([]ControllerIssue, time.Time) {
	if ing == nil || ing.DeletionTimestamp != nil {
		return nil, time.Time{}
	}
	type problem struct{ reason, text string }
	var problems []problem
	have := "none"
	if len(classes.Names) > 0 {
		have = strings.Join(slices.Sorted(slices.Values(classes.Names)), ", ")
	}
	switch name := ingressClassName(ing); {
	case !classes.Known:
	case name != "":
		if !slices.Contains(classes.Names, name) {
			problems = append(problems, problem{reasonIngressClassNotFound,
				fmt.Sprintf("ingressClassName %q names no IngressClass (the cluster has: %s), so no ingress controller serves it", name, have)})
		}
	case ing.Annotations[annotationIngressClass] != "":
	case !classes.Default:
		problems = append(problems, problem{reasonNoIngressClass,
			fmt.Sprintf("it has no ingressClassName and no IngressClass is the default (the cluster has: %s), so no ingress controller is bound to serve it", have)})
	}
	seen := map[string]bool{}
	for _, b := range ingressBackends(ing) {
		key := b.service + ":" + portString(b.port)
		if seen[key] {
			continue
		}
		seen[key] = true
		svc := services[b.service]
		switch {
		case svc == nil:
			problems = append(problems, problem{reasonIngressServiceNotFound,
				fmt.Sprintf("%s routes to service %s, which does not exist", b.where, b.service)})
		case svc.Spec.Type == corev1.ServiceTypeExternalName:
			// Its ports are the external name's: not judged.
		case !servicePortExists(svc, b.port):
			problems = append(problems, problem{reasonIngressPortNotFound,
				fmt.Sprintf("%s routes to port %s of service %s, which has no such port (its ports: %s)", b.where, portString(b.port), b.service, servicePorts(svc))})
		}
	}
	if len(problems) == 0 {
		return nil, time.Time{}
	}
	if due := ing.CreationTimestamp.Add(grace); now.Before(due) {
		return nil, due
	}
	// The class first, then missing Services, then missing ports.
	rank := map[string]int{reasonIngressClassNotFound: 0, reasonNoIngressClass: 0, reasonIngressServiceNotFound: 1, reasonIngressPortNotFound: 2}
	slices.SortStableFunc(problems, func(a, b problem) int { return rank[a.reason] - rank[b.reason] })
	texts := make([]string, 0, len(problems))
	for i, p := range problems {
		if i == 5 {
			texts = append(texts, fmt.Sprintf("and %d more", len(problems)-5))
			break
		}
		texts = append(texts, p.text)
	}
	return []ControllerIssue{{Type: events.IssueIngressUnavailable, Reason: problems[0].reason,
		Message: "ingress " + ing.Name + ": " + strings.Join(texts, "; ")}}, time.Time{}
}

// ingressClassName is the Ingress's spec.ingressClassName, "" for none.
func ingressClassName(ing *networkingv1.Ingress) string {
	if ing.Spec.IngressClassName == nil {
		return ""
	}
	return *ing.Spec.IngressClassName
}

func servicePortExists(svc *corev1.Service, p networkingv1.ServiceBackendPort) bool {
	return slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
		return p.Name != "" && sp.Name == p.Name || p.Name == "" && sp.Port == p.Number
	})
}

// servicePorts spells a Service's ports "http=80, 443" ("none").
func servicePorts(svc *corev1.Service) string {
	var out []string
	for _, p := range svc.Spec.Ports {
		s := fmt.Sprint(p.Port)
		if p.Name != "" {
			s = p.Name + "=" + s
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// ingressWatch is the watcher's view of Ingresses and IngressClasses
// (networking.k8s.io/v1), trimmed by ingressTransform. Optional, like the
// storage informers: a watcher that may not read them detects everything
// else; without the IngressClasses (cluster-scoped) it judges backends
// only.
type ingressWatch struct {
	factory   informers.SharedInformerFactory
	ingresses cache.SharedIndexInformer
	classes   cache.SharedIndexInformer
}

func newIngressWatch(cs kubernetes.Interface, namespace string, resync time.Duration) *ingressWatch {
	opts := []informers.SharedInformerOption{informers.WithTransform(ingressTransform)}
	if namespace != "" {
		opts = append(opts, informers.WithNamespace(namespace))
	}
	f := informers.NewSharedInformerFactoryWithOptions(cs, resync, opts...)
	return &ingressWatch{factory: f, ingresses: f.Networking().V1().Ingresses().Informer(),
		classes: f.Networking().V1().IngressClasses().Informer()}
}

func (iw *ingressWatch) start(ctx context.Context) { iw.factory.StartWithContext(ctx) }

func (iw *ingressWatch) shutdown() { iw.factory.Shutdown() }

// synced are the informers' HasSynced, for a bounded wait at start-up.
func (iw *ingressWatch) synced() []cache.InformerSynced {
	return []cache.InformerSynced{iw.ingresses.HasSynced, iw.classes.HasSynced}
}

// classes is what the cache knows of the IngressClasses.
func (iw *ingressWatch) classInfo() IngressClasses {
	if !iw.classes.HasSynced() {
		return IngressClasses{}
	}
	out := IngressClasses{Known: true, Controllers: map[string]string{}}
	for _, o := range iw.classes.GetStore().List() {
		c, ok := o.(*networkingv1.IngressClass)
		if !ok {
			continue
		}
		out.Names = append(out.Names, c.Name)
		out.Controllers[c.Name] = c.Spec.Controller
		if c.Annotations[annotationDefaultClass] == "true" {
			out.Default = true
			out.DefaultName = c.Name
		}
	}
	return out
}

// ingressTransform trims Ingresses to their class, Service backends and
// first address, IngressClasses to their name, default annotation and
// controller.
func ingressTransform(obj any) (any, error) {
	switch o := obj.(type) {
	case *networkingv1.Ingress:
		return trimIngress(o), nil
	case *networkingv1.IngressClass:
		if o == nil {
			return obj, nil
		}
		out := &networkingv1.IngressClass{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta),
			Spec: networkingv1.IngressClassSpec{Controller: o.Spec.Controller}}
		if v, ok := o.Annotations[annotationDefaultClass]; ok {
			out.Annotations = map[string]string{annotationDefaultClass: v}
		}
		return out, nil
	}
	return transform(obj)
}

func trimIngress(o *networkingv1.Ingress) *networkingv1.Ingress {
	if o == nil {
		return nil
	}
	out := &networkingv1.Ingress{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta)}
	if v, ok := o.Annotations[annotationIngressClass]; ok {
		out.Annotations = map[string]string{annotationIngressClass: v}
	}
	out.Spec.IngressClassName = o.Spec.IngressClassName
	for _, a := range o.Status.LoadBalancer.Ingress {
		if a.IP != "" || a.Hostname != "" { // one is enough: served
			out.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: a.IP, Hostname: a.Hostname}}
			break
		}
	}
	if b := o.Spec.DefaultBackend; b != nil && b.Service != nil {
		out.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: b.Service}
	}
	for _, r := range o.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		rule := networkingv1.IngressRule{Host: r.Host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}
		for _, p := range r.HTTP.Paths {
			if p.Backend.Service != nil {
				rule.HTTP.Paths = append(rule.HTTP.Paths, networkingv1.HTTPIngressPath{Path: p.Path,
					Backend: networkingv1.IngressBackend{Service: p.Backend.Service}})
			}
		}
		out.Spec.Rules = append(out.Spec.Rules, rule)
	}
	return out
}

// watchIngresses indexes the Ingresses by Service and registers the
// handlers: an Ingress is evaluated when it changes, when a Service it
// names comes or goes, and when the IngressClasses change. New calls it
// before anything runs.
func (s *Service) watchIngresses(cs kubernetes.Interface) error {
	s.ingress = newIngressWatch(cs, s.cfg.Namespace, s.cfg.ResyncPeriod)
	iw := s.ingress
	if err := iw.ingresses.AddIndexers(cache.Indexers{indexIngressService: func(obj any) ([]string, error) {
		ing, ok := obj.(*networkingv1.Ingress)
		if !ok {
			return nil, nil
		}
		var keys []string
		for _, b := range ingressBackends(ing) {
			if k := ing.Namespace + "/" + b.service; !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		return keys, nil
	}, indexIngressClass: indexByIngressClass}); err != nil {
		return fmt.Errorf("watcher: add ingresses indexer: %w", err)
	}
	if _, err := iw.ingresses.AddEventHandler(s.ingressAddressHandler()); err != nil {
		return fmt.Errorf("watcher: ingress address handler: %w", err)
	}
	for _, h := range []struct {
		what string
		inf  cache.SharedIndexInformer
		fn   func(any)
	}{
		{"ingress", iw.ingresses, s.ingressChanged},
		{"ingressclass", iw.classes, func(any) { s.ingressClassChanged() }},
		{"ingress service", s.cl.svcs, s.ingressServiceChanged},
	} {
		if _, err := h.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: h.fn, UpdateFunc: func(_, obj any) { h.fn(obj) }, DeleteFunc: h.fn,
		}); err != nil {
			return fmt.Errorf("watcher: %s handler: %w", h.what, err)
		}
	}
	return nil
}

func (s *Service) ingressChanged(obj any) {
	m := objectOf(obj)
	if m == nil || !s.filter.watched(m.GetNamespace()) {
		return
	}
	s.queue.AddAfter(ownerKey{Namespace: m.GetNamespace(), Kind: kindIngress, Name: m.GetName()}, s.cfg.Debounce)
}

// ingressServiceChanged evaluates the Ingresses routing to a Service that
// appeared, changed (its ports) or went.
func (s *Service) ingressServiceChanged(obj any) {
	m := objectOf(obj)
	if m == nil || !s.filter.watched(m.GetNamespace()) {
		return
	}
	for _, ing := range byIndex[networkingv1.Ingress](s.ingress.ingresses, indexIngressService, m.GetNamespace()+"/"+m.GetName()) {
		s.ingressChanged(ing)
	}
}

// ingressClassChanged evaluates every Ingress: an IngressClass that comes,
// goes or becomes the default changes what serves them. Rare.
func (s *Service) ingressClassChanged() {
	for _, o := range s.ingress.ingresses.GetStore().List() {
		s.ingressChanged(o)
	}
}

// ingressObs classifies Ingress k from the caches; while its grace runs
// it queues k again for when it ends.
func (s *Service) ingressObs(k ownerKey, now time.Time) []ctrlObs {
	ing := get[networkingv1.Ingress](s.ingress.ingresses, k.Namespace, k.Name)
	if ing == nil {
		return nil
	}
	services := map[string]*corev1.Service{}
	for _, b := range ingressBackends(ing) {
		if svc := get[corev1.Service](s.cl.svcs, k.Namespace, b.service); svc != nil {
			services[b.service] = svc
		}
	}
	classes := s.ingress.classInfo()
	issues, recheck := ClassifyIngress(ing, services, classes, now, s.cfg.serviceGrace)
	if len(issues) == 0 {
		// Its spec is sound: is its class served at all?
		var due time.Time
		issues, due = ClassifyIngressController(ing, s.ingressClassState(ing, classes), now, s.cfg.Ingresses.AddressGrace)
		if recheck.IsZero() || !due.IsZero() && due.Before(recheck) {
			recheck = due
		}
	}
	if !recheck.IsZero() {
		s.queue.AddAfter(k, recheck.Sub(now)+10*time.Millisecond)
	}
	if len(issues) == 0 {
		return nil
	}
	ref := events.ObjectRef{Kind: kindIngress, APIVersion: "networking.k8s.io/v1", Namespace: ing.Namespace, Name: ing.Name, UID: string(ing.UID)}
	return []ctrlObs{{Chain: []events.ObjectRef{ref}, Issues: issues}}
}
