package watcher

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Reason classes of a Service that routes to no ready pod.
const (
	reasonSelectorMatchesNothing = "selector_matches_nothing"
	reasonTargetPortMismatch     = "target_port_mismatch"
	reasonNoReadyEndpoints       = "no_ready_endpoints"
)

// serviceTypes are the issue types ClassifyService reports.
var serviceTypes = map[events.IssueType]bool{events.IssueServiceUnavailable: true}

// ServiceGrace is how long a Service, and the pods it selects, may exist
// before a Service without ready pods is reported: pods that are being
// created, scheduled or started are not an incident. Not configurable:
// two minutes covers a pod's pull and start on a healthy cluster, and a
// longer outage is reported by the pods' own incidents too.
const ServiceGrace = 2 * time.Minute

// labelServiceName is the EndpointSlice label naming its Service.
const labelServiceName = discoveryv1.LabelServiceName

// SelectedWorkload is a workload whose pod template labels a Service's
// selector matches: it explains a Service without pods (scaled to zero on
// purpose, or failing to create its pods).
type SelectedWorkload struct {
	Kind, Name string
	// Replicas is the pods it wants (a DaemonSet's desired pods).
	Replicas int32
	Created  time.Time
}

// ServiceBackends is what ClassifyService reads besides the Service.
type ServiceBackends struct {
	// Pods are the namespace's pods the selector matches, neither
	// finished nor being deleted.
	Pods []*corev1.Pod
	// Slices are the Service's EndpointSlices (label
	// kubernetes.io/service-name).
	Slices []*discoveryv1.EndpointSlice
	// Workloads are the namespace's workloads whose pod template the
	// selector matches.
	Workloads []SelectedWorkload
}

// ClassifyService says whether a Service routes to no ready pod at time
// now, and when to look again while a grace period runs (zero for
// never). It is a pure function of its arguments. A Service of type
// ExternalName or without a selector (its endpoints managed by hand) is
// never an issue, nor one whose selected workloads are all scaled to zero
// on purpose, nor one that publishes not-ready addresses (its pods'
// readiness is not what routes traffic).
func ClassifyService(svc *corev1.Service, b ServiceBackends, now time.Time, grace time.Duration) ([]ControllerIssue, time.Time) {
	if svc == nil || svc.DeletionTimestamp != nil || svc.Spec.Type == corev1.ServiceTypeExternalName || len(svc.Spec.Selector) == 0 {
		return nil, time.Time{}
	}
	sel := labels.Set(svc.Spec.Selector).String()
	due := svc.CreationTimestamp.Add(grace)
	if len(b.Pods) == 0 {
		var wanting []string
		for _, w := range b.Workloads {
			if w.Replicas > 0 {
				wanting = append(wanting, fmt.Sprintf("%s %s (%d replicas)", strings.ToLower(w.Kind), w.Name, w.Replicas))
				due = later(due, w.Created.Add(grace))
			}
		}
		if len(b.Workloads) > 0 && len(wanting) == 0 {
			return nil, time.Time{} // every workload it selects is scaled to zero
		}
		if now.Before(due) {
			return nil, due
		}
		if len(wanting) > 0 {
			return []ControllerIssue{{Type: events.IssueServiceUnavailable, Reason: reasonNoReadyEndpoints,
				Message: fmt.Sprintf("service %s selects the pods of %s, but none exists: no endpoint receives its traffic",
					svc.Name, strings.Join(wanting, ", "))}}, time.Time{}
		}
		return []ControllerIssue{{Type: events.IssueServiceUnavailable, Reason: reasonSelectorMatchesNothing,
			Message: fmt.Sprintf("service %s selects %s, which matches no pod and no workload in the namespace: no endpoint receives its traffic",
				svc.Name, sel)}}, time.Time{}
	}
	if msg := targetPortMismatch(svc, b.Pods); msg != "" {
		return []ControllerIssue{{Type: events.IssueServiceUnavailable, Reason: reasonTargetPortMismatch,
			Message: msg, PodCount: len(b.Pods)}}, time.Time{}
	}
	if svc.Spec.PublishNotReadyAddresses || readyEndpoints(b) > 0 {
		return nil, time.Time{}
	}
	oldest := b.Pods[0].CreationTimestamp.Time
	for _, p := range b.Pods[1:] {
		if p.CreationTimestamp.Time.Before(oldest) {
			oldest = p.CreationTimestamp.Time
		}
	}
	due = later(due, oldest.Add(grace))
	if now.Before(due) {
		return nil, due
	}
	names := make([]string, 0, len(b.Pods))
	for _, p := range b.Pods {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	if len(names) > 5 {
		names = append(names[:5], fmt.Sprintf("and %d more", len(b.Pods)-5))
	}
	return []ControllerIssue{{Type: events.IssueServiceUnavailable, Reason: reasonNoReadyEndpoints, PodCount: len(b.Pods),
		Message: fmt.Sprintf("service %s selects %d pods (%s), none of them ready: no endpoint receives its traffic",
			svc.Name, len(b.Pods), strings.Join(names, ", "))}}, time.Time{}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// readyEndpoints counts the ready endpoints of a Service's EndpointSlices
// (an endpoint whose ready condition is unknown counts as ready, as the
// API says). Without any slice (no EndpointSlice controller) it counts the
// selected pods whose Ready condition is True.
func readyEndpoints(b ServiceBackends) int {
	if len(b.Slices) == 0 {
		n := 0
		for _, p := range b.Pods {
			if podReady(p) {
				n++
			}
		}
		return n
	}
	n := 0
	for _, s := range b.Slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				n++
			}
		}
	}
	return n
}

func podReady(p *corev1.Pod) bool {
	c := condition(p, corev1.PodReady)
	return c != nil && c.Status == corev1.ConditionTrue
}

// targetPortMismatch describes the Service ports whose target no selected
// pod has: a named targetPort that no container port of any selected pod
// is named, or a numeric one that none declares while the pods declare
// ports (pods that declare none may listen anywhere: not reported).
func targetPortMismatch(svc *corev1.Service, pods []*corev1.Pod) string {
	var declared []string
	seen := map[string]bool{}
	for _, p := range pods {
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				d := fmt.Sprint(cp.ContainerPort)
				if cp.Name != "" {
					d = cp.Name + "=" + d
				}
				if !seen[d] {
					seen[d] = true
					declared = append(declared, d)
				}
			}
		}
	}
	var bad []string
	for _, sp := range svc.Spec.Ports {
		tp := sp.TargetPort
		if tp.Type == intstr.Int && tp.IntVal == 0 {
			tp = intstr.FromInt32(sp.Port)
		}
		if slices.ContainsFunc(pods, func(p *corev1.Pod) bool { return podHasPort(p, tp, sp.Protocol) }) {
			continue
		}
		if tp.Type == intstr.Int && len(declared) == 0 {
			continue
		}
		name := fmt.Sprint(sp.Port)
		if sp.Name != "" {
			name = sp.Name + " (" + name + ")"
		}
		bad = append(bad, fmt.Sprintf("port %s targets %s", name, tp.String()))
	}
	if len(bad) == 0 {
		return ""
	}
	ports := "none"
	if len(declared) > 0 {
		slices.Sort(declared)
		ports = strings.Join(declared, ", ")
	}
	return fmt.Sprintf("service %s: %s, which none of its %d pods has (their container ports: %s)",
		svc.Name, strings.Join(bad, "; "), len(pods), ports)
}

// podHasPort reports whether one of pod's containers has port tp (a name
// or a number) with protocol proto (TCP when empty).
func podHasPort(p *corev1.Pod, tp intstr.IntOrString, proto corev1.Protocol) bool {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			cpProto := cp.Protocol
			if cpProto == "" {
				cpProto = corev1.ProtocolTCP
			}
			if cpProto != proto {
				continue
			}
			if tp.Type == intstr.String && cp.Name == tp.StrVal || tp.Type == intstr.Int && cp.ContainerPort == tp.IntVal {
				return true
			}
		}
	}
	return false
}

// selectsPod reports whether a Service's selector (a non-empty one) matches
// a pod that can serve (neither finished nor being deleted).
func selectsPod(sel labels.Selector, p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	return sel.Matches(labels.Set(p.Labels))
}

// kindService is the owner kind of traffic incidents.
const kindService = "Service"

// serviceChanged evaluates a Service that appeared, changed or went.
func (s *Service) serviceChanged(obj any) {
	m := objectOf(obj)
	if m == nil || !s.filter.watched(m.GetNamespace()) {
		return
	}
	s.queue.AddAfter(ownerKey{Namespace: m.GetNamespace(), Kind: kindService, Name: m.GetName()}, s.cfg.Debounce)
}

// sliceChanged evaluates the Service of an EndpointSlice that changed:
// its endpoints' readiness is the Service's.
func (s *Service) sliceChanged(obj any) {
	m := objectOf(obj)
	if m == nil || !s.filter.watched(m.GetNamespace()) || m.GetLabels()[labelServiceName] == "" {
		return
	}
	s.queue.AddAfter(ownerKey{Namespace: m.GetNamespace(), Kind: kindService, Name: m.GetLabels()[labelServiceName]}, s.cfg.Debounce)
}

// podServicesChanged evaluates the Services selecting a pod that appeared
// or went (a Service's first pod gets no endpoint until it has an IP).
func (s *Service) podServicesChanged(pod *corev1.Pod) {
	for _, svc := range inNamespace[corev1.Service](s.cl.svcs, pod.Namespace) {
		if len(svc.Spec.Selector) > 0 && labels.SelectorFromValidatedSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
			s.queue.AddAfter(ownerKey{Namespace: svc.Namespace, Kind: kindService, Name: svc.Name}, s.cfg.Debounce)
		}
	}
}

// serviceObs classifies Service k from the caches: the pods its selector
// matches, its EndpointSlices, and the workloads whose pod template it
// selects. It returns when to look again while a grace period runs.
func (s *Service) serviceObs(k ownerKey, now time.Time) ([]ctrlObs, time.Time) {
	svc := get[corev1.Service](s.cl.svcs, k.Namespace, k.Name)
	if svc == nil || len(svc.Spec.Selector) == 0 {
		return nil, time.Time{}
	}
	var b ServiceBackends
	sel := labels.SelectorFromValidatedSet(svc.Spec.Selector)
	for _, p := range inNamespace[corev1.Pod](s.cl.pods, k.Namespace) {
		if selectsPod(sel, p) {
			b.Pods = append(b.Pods, p)
		}
	}
	b.Slices = s.cl.serviceSlices(k.Namespace, k.Name)
	if len(b.Pods) == 0 {
		b.Workloads = s.selectedWorkloads(svc)
	}
	issues, recheck := ClassifyService(svc, b, now, s.cfg.serviceGrace)
	if len(issues) == 0 {
		return nil, recheck
	}
	ref := events.ObjectRef{Kind: kindService, APIVersion: "v1", Namespace: svc.Namespace, Name: svc.Name, UID: string(svc.UID)}
	return []ctrlObs{{Chain: []events.ObjectRef{ref}, Issues: issues}}, recheck
}

// selectedWorkloads are the Deployments, StatefulSets and DaemonSets of
// the Service's namespace whose pod template labels its selector matches.
func (s *Service) selectedWorkloads(svc *corev1.Service) []SelectedWorkload {
	sel := labels.SelectorFromValidatedSet(svc.Spec.Selector)
	var out []SelectedWorkload
	for _, d := range inNamespace[appsv1.Deployment](s.cl.deploys, svc.Namespace) {
		if d.DeletionTimestamp == nil && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, SelectedWorkload{Kind: "Deployment", Name: d.Name, Replicas: replicasOf(d.Spec.Replicas), Created: d.CreationTimestamp.Time})
		}
	}
	for _, o := range inNamespace[appsv1.StatefulSet](s.cl.sts, svc.Namespace) {
		if o.DeletionTimestamp == nil && sel.Matches(labels.Set(o.Spec.Template.Labels)) {
			out = append(out, SelectedWorkload{Kind: "StatefulSet", Name: o.Name, Replicas: replicasOf(o.Spec.Replicas), Created: o.CreationTimestamp.Time})
		}
	}
	for _, o := range inNamespace[appsv1.DaemonSet](s.cl.ds, svc.Namespace) {
		if o.DeletionTimestamp == nil && sel.Matches(labels.Set(o.Spec.Template.Labels)) {
			out = append(out, SelectedWorkload{Kind: "DaemonSet", Name: o.Name, Replicas: o.Status.DesiredNumberScheduled, Created: o.CreationTimestamp.Time})
		}
	}
	slices.SortFunc(out, func(a, b SelectedWorkload) int { return strings.Compare(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name) })
	return out
}
