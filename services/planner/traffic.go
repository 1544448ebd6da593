package planner

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// A Service that routes to no ready pod (ServiceUnavailable): its
// selector matches no pod, its targetPort no port of its pods, or none of
// its pods is ready. The plans are diagnostic unless the fix is
// mechanical: a selector or targetPort corrected to the one workload or
// port it evidently targets (actions_service.go).

// Reasons of a ServiceUnavailable incident, as the watcher classifies it.
const (
	trafficSelectorMatchesNothing = "selector_matches_nothing"
	trafficTargetPortMismatch     = "target_port_mismatch"
	trafficNoReadyEndpoints       = "no_ready_endpoints"
)

// trafficRead is what the planner read about a Service and what it
// routes to.
type trafficRead struct {
	Service *corev1.Service
	// Pods are the pods the selector matches, by name.
	Pods []corev1.Pod
	// Slices are the Service's EndpointSlices, by name.
	Slices []discoveryv1.EndpointSlice
	// Near are the namespace's workloads whose pod template labels share
	// a key with the selector, by kind and name.
	Near []nearWorkload
	// Errs say what could not be read: evidence too.
	Errs []string
	// ProposedForeign are the pods a corrected selector would select
	// that the one fitting workload's selector does not, and ProposedErr
	// why they could not be read (selector_matches_nothing only; see
	// selectorFix).
	ProposedForeign []string
	ProposedErr     string
}

// nearWorkload is a workload whose pod labels nearly (or fully) match a
// Service's selector.
type nearWorkload struct {
	Ref string // "deployment/web"
	// Labels are its pod template's labels on the selector's keys.
	Labels map[string]string
	// Differs are the selector's keys whose value it lacks or differs.
	Differs  []string
	Replicas int32
	Ports    []string
	// Selector is the workload's own pod selector (nil when invalid).
	Selector labels.Selector
}

// traffic reads the Service's pods, EndpointSlices and the workloads
// whose pod labels nearly match its selector. Read failures are evidence,
// never an error.
func (r reader) traffic(ctx context.Context, in planInput) *trafficRead {
	svc, _ := in.Owner.Object.(*corev1.Service)
	if svc == nil {
		return nil
	}
	t := &trafficRead{Service: svc}
	ns := svc.Namespace
	if len(svc.Spec.Selector) > 0 {
		sel := labelsString(svc.Spec.Selector)
		pods, err := r.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel, Limit: listLimit})
		if err != nil {
			t.Errs = append(t.Errs, readErr("pods -l "+sel, err))
		} else {
			for _, p := range pods.Items {
				if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
					t.Pods = append(t.Pods, p)
				}
			}
			slices.SortFunc(t.Pods, func(a, b corev1.Pod) int { return cmp.Compare(a.Name, b.Name) })
		}
	}
	es, err := r.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name, Limit: listLimit})
	if err != nil {
		t.Errs = append(t.Errs, readErr("endpointslices of service/"+svc.Name, err))
	} else {
		for _, s := range es.Items {
			if s.Labels[discoveryv1.LabelServiceName] == svc.Name { // the fake clientset ignores selectors
				t.Slices = append(t.Slices, s)
			}
		}
		slices.SortFunc(t.Slices, func(a, b discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	}
	t.Near = r.nearWorkloads(ctx, svc, &t.Errs)
	if in.Incident.Reason == trafficSelectorMatchesNothing {
		r.proposedSelection(ctx, svc, t)
	}
	return t
}

// nearWorkloads lists the Deployments, StatefulSets and DaemonSets whose
// pod template labels share a key with the selector.
func (r reader) nearWorkloads(ctx context.Context, svc *corev1.Service, errs *[]string) []nearWorkload {
	var out []nearWorkload
	add := func(kind, name string, tmpl corev1.PodTemplateSpec, replicas int32, ls *metav1.LabelSelector) {
		if n, ok := nearMatch(svc.Spec.Selector, tmpl); ok {
			n.Ref, n.Replicas = strings.ToLower(kind)+"/"+name, replicas
			if sel, err := metav1.LabelSelectorAsSelector(ls); err == nil && ls != nil {
				n.Selector = sel
			}
			out = append(out, n)
		}
	}
	ns, opts := svc.Namespace, metav1.ListOptions{Limit: listLimit}
	if l, err := r.kube.AppsV1().Deployments(ns).List(ctx, opts); err != nil {
		*errs = append(*errs, readErr("deployments", err))
	} else {
		for _, o := range l.Items {
			add(KindDeployment, o.Name, o.Spec.Template, derefOr(o.Spec.Replicas, 1), o.Spec.Selector)
		}
	}
	if l, err := r.kube.AppsV1().StatefulSets(ns).List(ctx, opts); err != nil {
		*errs = append(*errs, readErr("statefulsets", err))
	} else {
		for _, o := range l.Items {
			add(KindStatefulSet, o.Name, o.Spec.Template, derefOr(o.Spec.Replicas, 1), o.Spec.Selector)
		}
	}
	if l, err := r.kube.AppsV1().DaemonSets(ns).List(ctx, opts); err != nil {
		*errs = append(*errs, readErr("daemonsets", err))
	} else {
		for _, o := range l.Items {
			add(KindDaemonSet, o.Name, o.Spec.Template, daemonSetDesired(&o), o.Spec.Selector)
		}
	}
	slices.SortFunc(out, func(a, b nearWorkload) int { return cmp.Compare(a.Ref, b.Ref) })
	return out
}

func daemonSetDesired(o *appsv1.DaemonSet) int32 { return o.Status.DesiredNumberScheduled }

// nearMatch compares a pod template's labels with a selector: ok when
// they share at least one key.
func nearMatch(selector map[string]string, tmpl corev1.PodTemplateSpec) (nearWorkload, bool) {
	n := nearWorkload{Labels: map[string]string{}}
	shared := false
	for _, k := range slices.Sorted(maps.Keys(selector)) {
		v, ok := tmpl.Labels[k]
		if ok {
			shared = true
			n.Labels[k] = v
		}
		if !ok || v != selector[k] {
			n.Differs = append(n.Differs, k)
		}
	}
	n.Ports = specPorts(tmpl.Spec)
	return n, shared
}

// portNames spells container ports "http=8080" (named) or "8080", with
// the protocol when it is not TCP.
func portNames(ports []corev1.ContainerPort) []string {
	var out []string
	for _, p := range ports {
		s := strconv.Itoa(int(p.ContainerPort))
		if p.Name != "" {
			s = p.Name + "=" + s
		}
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			s += "/" + string(p.Protocol)
		}
		out = append(out, s)
	}
	return out
}

// specPorts are the container ports of a pod spec, container by
// container.
func specPorts(spec corev1.PodSpec) []string {
	var out []string
	for _, c := range spec.Containers {
		out = append(out, portNames(c.Ports)...)
	}
	return out
}

// podPorts are the distinct container ports of pods, sorted.
func podPorts(pods []corev1.Pod) []string {
	seen := map[string]bool{}
	for _, p := range pods {
		for _, s := range specPorts(p.Spec) {
			seen[s] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// labelsString is "app=web,tier=front", sorted.
func labelsString(sel map[string]string) string { return labels.SelectorFromSet(sel).String() }

// servicePortString is "http 80/TCP -> web".
func servicePortString(p corev1.ServicePort) string {
	name := ""
	if p.Name != "" {
		name = p.Name + " "
	}
	target := targetPort(p)
	return fmt.Sprintf("%s%d/%s -> targetPort %s", name, p.Port, cmp.Or(p.Protocol, corev1.ProtocolTCP), target.String())
}

// targetPort is the port's targetPort, which defaults to its port.
func targetPort(p corev1.ServicePort) intstr.IntOrString {
	if p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal == 0 {
		return intstr.FromInt32(p.Port)
	}
	return p.TargetPort
}

// unmatchedPorts are the Service ports whose targetPort no selected pod
// declares.
func unmatchedPorts(svc *corev1.Service, pods []corev1.Pod) []string {
	var out []string
	for _, sp := range svc.Spec.Ports {
		target := targetPort(sp)
		proto := cmp.Or(sp.Protocol, corev1.ProtocolTCP)
		found := slices.ContainsFunc(pods, func(p corev1.Pod) bool {
			for _, c := range p.Spec.Containers {
				for _, cp := range c.Ports {
					if cmp.Or(cp.Protocol, corev1.ProtocolTCP) == proto &&
						(target.Type == intstr.String && cp.Name == target.StrVal || target.Type == intstr.Int && cp.ContainerPort == target.IntVal) {
						return true
					}
				}
			}
			return false
		})
		if !found {
			out = append(out, servicePortString(sp))
		}
	}
	return out
}

// readyCount counts a Service's endpoints and the ready ones (an unknown
// ready condition counts as ready, as the API says).
func readyCount(slices []discoveryv1.EndpointSlice) (total, ready int) {
	for _, s := range slices {
		for _, e := range s.Endpoints {
			total++
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ready++
			}
		}
	}
	return total, ready
}

// trafficSteps say why the Service routes to no ready pod and what a
// person changes; kaar changes nothing.
func trafficSteps(in planInput, b *builder, step stepFunc) []events.Step {
	svcRef := in.Owner.ref()
	name := in.Owner.Ref.Name
	t := in.Traffic
	svc, _ := in.Owner.Object.(*corev1.Service) // what in.Traffic.Service is, when read
	if svc == nil {
		return []events.Step{b.onOwner(step(fmt.Sprintf("Inspect %s", svcRef), "describe", "service", name))}
	}
	sel := labelsString(svc.Spec.Selector)
	var pods []corev1.Pod
	var near []nearWorkload
	if t != nil {
		pods, near = t.Pods, t.Near
	}
	slicesStep := b.onOwner(step(fmt.Sprintf("Read the endpoints of %s: its EndpointSlices list the pods it routes to and whether each is ready", svcRef),
		"get", "endpointslices", "-l", discoveryv1.LabelServiceName+"="+name, "-o", "wide"))
	describe := b.onOwner(step(fmt.Sprintf("Read %s: its selector, ports and events", svcRef), "describe", "service", name))
	var out []events.Step
	switch in.Incident.Reason {
	case trafficSelectorMatchesNothing:
		// Selectors, labels and port names are cluster text: quoted.
		out = append(out, b.onOwner(step(quote(fmt.Sprintf("The selector of %s (%s) matches no pod of namespace %s", svcRef, sel, in.Incident.Namespace)),
			"get", "pods", "-l", sel, "--show-labels")))
		var cands []string
		for _, n := range near {
			cands = append(cands, fmt.Sprintf("%s has pod labels %s (differs on %s)", n.Ref, labelsString(n.Labels), orNone(n.Differs)))
		}
		if len(cands) > 0 {
			out = append(out, b.onOwner(step(quote(fmt.Sprintf("Workloads whose pods nearly match: %s. Fix the selector of %s (or the workload's pod labels) so that they match: by hand, unless exactly one workload fits (see the plan's notes)",
				strings.Join(cands, "; "), svcRef)), "get", "deployments,statefulsets,daemonsets", "-o", "custom-columns=NAME:.metadata.name,POD_LABELS:.spec.template.metadata.labels")))
		} else {
			out = append(out, b.onOwner(step(fmt.Sprintf("No workload of the namespace has pods labelled like that: fix the selector of %s, or deploy the workload it should route to", svcRef),
				"get", "pods", "--show-labels")))
		}
		out = append(out, describe, slicesStep)
	case trafficTargetPortMismatch:
		bad := unmatchedPorts(svc, pods)
		out = append(out, b.onOwner(step(quote(fmt.Sprintf("%s: %s, which no container port of its %s declares (their ports: %s)", svcRef,
			orNone(bad), plural(len(pods), "pod"), orNone(podPorts(pods)))), "describe", "service", name)))
		out = append(out, b.onOwner(step("Compare with the container ports of the pods it selects",
			"get", "pods", "-l", sel, "-o", "custom-columns=NAME:.metadata.name,PORT_NAMES:.spec.containers[*].ports[*].name,PORTS:.spec.containers[*].ports[*].containerPort")))
		out = append(out, b.onOwner(step(fmt.Sprintf("Set the targetPort of %s to the port the application listens on (one of the names or numbers above), or declare that port in the pod template: by hand, unless the port is evident (see the plan's notes)", svcRef),
			"edit", "service", name)))
	default: // no_ready_endpoints
		total, ready := 0, 0
		if t != nil {
			total, ready = readyCount(t.Slices)
		}
		out = append(out, b.onOwner(step(fmt.Sprintf("%s has %d of %d endpoints ready: no pod receives its traffic", svcRef, ready, total),
			"get", "endpointslices", "-l", discoveryv1.LabelServiceName+"="+name, "-o", "wide")))
		if len(pods) > 0 {
			out = append(out, b.onOwner(step(quote(fmt.Sprintf("Its %s (%s) are not ready: their own incidents (CrashLoopBackOff, NotReady, ...) and events say why; fix them and the Service recovers",
				plural(len(pods), "pod"), sel)), "get", "pods", "-l", sel, "-o", "wide")))
		} else {
			var wanting []string
			for _, n := range near {
				if len(n.Differs) == 0 && n.Replicas > 0 {
					wanting = append(wanting, n.Ref)
				}
			}
			what := "the workload it selects"
			if len(wanting) > 0 {
				what = strings.Join(wanting, ", ")
			}
			out = append(out, b.onOwner(step(fmt.Sprintf("No pod exists for it: %s cannot create its pods (see its FailedCreate or RolloutStuck incident)", what),
				"get", "pods", "-l", sel, "-o", "wide")))
		}
		out = append(out, describe)
	}
	return out
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// trafficEvidence quotes the Service, its endpoints, the pods it selects
// and the workloads whose pod labels nearly match.
func trafficEvidence(in planInput) events.Evidence {
	t := in.Traffic
	svc := t.Service
	sel := labelsString(svc.Spec.Selector)
	lines := []string{fmt.Sprintf("service/%s type %s, selector %s", svc.Name, cmp.Or(svc.Spec.Type, corev1.ServiceTypeClusterIP), sel)}
	for _, p := range svc.Spec.Ports {
		lines = append(lines, "port "+servicePortString(p))
	}
	total, ready := readyCount(t.Slices)
	if len(t.Slices) == 0 {
		lines = append(lines, "endpointslices: none")
	}
	for _, s := range t.Slices {
		var eps []string
		for _, e := range s.Endpoints {
			who := strings.Join(e.Addresses, ",")
			if e.TargetRef != nil {
				who = strings.ToLower(e.TargetRef.Kind) + "/" + e.TargetRef.Name
			}
			state := "ready"
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				state = "not ready"
			}
			eps = append(eps, who+" "+state)
		}
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s=%d", derefOr(p.Name, ""), derefOr(p.Port, 0)))
		}
		// An endpoint's targetRef and a slice's length are whatever its
		// writer put there: quoted like the other evidence.
		lines = append(lines, quote(fmt.Sprintf("endpointslice/%s: %s; ports %s", s.Name, orNone(eps), orNone(ports))))
	}
	lines = append(lines, fmt.Sprintf("pods selected: %d", len(t.Pods)))
	for i, p := range t.Pods {
		if i == 10 {
			lines = append(lines, fmt.Sprintf("... and %d more", len(t.Pods)-10))
			break
		}
		lines = append(lines, fmt.Sprintf("pod/%s phase %s, ready %t, container ports %s", p.Name, p.Status.Phase, podIsReady(&p), orNone(specPorts(p.Spec))))
	}
	for _, n := range t.Near {
		match := "matches"
		if len(n.Differs) > 0 {
			match = "differs on " + strings.Join(n.Differs, ",")
		}
		lines = append(lines, fmt.Sprintf("%s pod labels %s (%s), replicas %d, container ports %s", n.Ref, labelsString(n.Labels), match, n.Replicas, orNone(n.Ports)))
	}
	for _, e := range t.Errs {
		lines = append(lines, quote(e))
	}
	data := map[string]string{"service": svc.Name, "selector": sel, "selected_pods": strconv.Itoa(len(t.Pods)),
		"endpoints": strconv.Itoa(total), "ready_endpoints": strconv.Itoa(ready)}
	if in.Incident.Reason != "" {
		data["reason"] = in.Incident.Reason
	}
	return events.Evidence{Kind: events.EvidenceTraffic, Title: fmt.Sprintf("What service/%s routes to: %s, %d of %d endpoints ready", svc.Name, plural(len(t.Pods), "pod"), ready, total),
		Source: "service, its EndpointSlices, pods -l " + sel + ", workloads of the namespace", Lines: lines, Data: data}
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
