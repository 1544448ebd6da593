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
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The Service steps (set_service_selector, set_service_target_port): a
// ServiceUnavailable Service whose fix is mechanical gets it as a typed,
// dry-run, reversible step; every other one keeps its diagnostic plan.
// "Mechanical" is a conservative rule, written out in selectorFix and
// targetPortFix: the correction must follow from what the namespace
// holds, with exactly one answer. A second candidate, a missing key or
// a port the pods do not all declare the same way is a person's call.
//
// The patch of either step starts with the guard (the Service's
// resourceVersion: Services have no generation) and tests the field it
// replaces, so it applies to the Service as planned or not at all. The
// undo patch tests the value the step wrote (the resourceVersion after
// the step is unknown when planning) and puts the old one back: it never
// overwrites a later change of that field.

// selectorChange is the one workload a Service whose selector matches
// nothing evidently targets, and the selector that matches its pods.
type selectorChange struct {
	Workload nearWorkload
	Selector map[string]string
}

// selectorFix applies the rule for selector_matches_nothing. The fix
// exists when:
//   - exactly one Deployment, StatefulSet or DaemonSet of the namespace
//     with replicas has pod template labels on every key of the selector
//     (only values differ: no key is added, removed or renamed);
//   - no workload's pod labels already match the selector (then the
//     selector is right and the workload is what is missing);
//   - the corrected selector selects no pod that the workload's own
//     selector does not (read by gather: ProposedPods), so the Service
//     routes to that workload and nothing else.
func selectorFix(svc *corev1.Service, t *trafficRead) (selectorChange, string) {
	if len(svc.Spec.Selector) == 0 {
		return selectorChange{}, "the Service has no selector"
	}
	var fits []nearWorkload
	for _, n := range t.Near {
		if len(n.Differs) == 0 {
			return selectorChange{}, fmt.Sprintf("%s already has pod labels matching the selector: the selector is right, its pods are what is missing", n.Ref)
		}
		if len(n.Labels) == len(svc.Spec.Selector) && n.Replicas > 0 {
			fits = append(fits, n)
		}
	}
	switch len(fits) {
	case 0:
		return selectorChange{}, "no workload with replicas has pod labels on every key of the selector (only values differing): which workload the Service targets is not evident"
	case 1:
	default:
		refs := make([]string, len(fits))
		for i, f := range fits {
			refs[i] = f.Ref
		}
		return selectorChange{}, fmt.Sprintf("%s have pod labels on every key of the selector: which one the Service targets is a person's call", strings.Join(refs, " and "))
	}
	fix := selectorChange{Workload: fits[0], Selector: maps.Clone(fits[0].Labels)}
	if t.ProposedErr != "" {
		return selectorChange{}, "the pods the corrected selector would select could not be read: " + t.ProposedErr
	}
	if len(t.ProposedForeign) > 0 {
		return selectorChange{}, fmt.Sprintf("the corrected selector %s would also select %s, which %s's selector does not", labelsString(fix.Selector),
			strings.Join(t.ProposedForeign, ", "), fix.Workload.Ref)
	}
	return fix, ""
}

// portFix is the one Service port whose targetPort is wrong, and the
// container port it should name.
type portFix struct {
	Index int
	Port  corev1.ServicePort
	From  intstr.IntOrString
	To    intstr.IntOrString
	// Declared is the container port ("http=8080").
	Declared string
}

// targetPortFix applies the rule for target_port_mismatch. The fix
// exists when:
//   - exactly one port of the Service targets a port no selected pod
//     declares;
//   - every selected pod declares exactly one container port of that
//     port's protocol, the same name and number on every pod;
//   - no other port of the Service already targets that container port.
//
// The new targetPort keeps the form of the old one: a name when the old
// one was a name and the container port has one, else the number.
func targetPortFix(svc *corev1.Service, pods []corev1.Pod) (portFix, string) {
	if len(pods) == 0 {
		return portFix{}, "the Service selects no pod to take the port from"
	}
	var bad []int
	for i, sp := range svc.Spec.Ports {
		if len(unmatchedPorts(&corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{sp}}}, pods)) > 0 {
			bad = append(bad, i)
		}
	}
	if len(bad) != 1 {
		return portFix{}, fmt.Sprintf("%d ports of the Service target a port its pods do not declare: only one wrong port is corrected", len(bad))
	}
	i := bad[0]
	sp := svc.Spec.Ports[i]
	proto := cmp.Or(sp.Protocol, corev1.ProtocolTCP)
	only, why := onlyDeclaredPort(pods, proto)
	if only == nil {
		return portFix{}, why
	}
	to := intstr.FromInt32(only.ContainerPort)
	if from := targetPort(sp); from.Type == intstr.String && only.Name != "" {
		to = intstr.FromString(only.Name)
	}
	for j, other := range svc.Spec.Ports {
		if j == i || cmp.Or(other.Protocol, corev1.ProtocolTCP) != proto {
			continue
		}
		if ot := targetPort(other); ot == intstr.FromString(only.Name) && only.Name != "" || ot == intstr.FromInt32(only.ContainerPort) {
			return portFix{}, fmt.Sprintf("port %s already targets the pods' only %s port %s: which port the application serves on port %d is not evident",
				servicePortString(other), proto, strings.Join(portNames([]corev1.ContainerPort{*only}), ""), sp.Port)
		}
	}
	return portFix{Index: i, Port: sp, From: targetPort(sp), To: to, Declared: strings.Join(portNames([]corev1.ContainerPort{*only}), "")}, ""
}

// onlyDeclaredPort is the one container port of protocol proto that
// every pod declares, the same on each, or nil and why there is none.
func onlyDeclaredPort(pods []corev1.Pod, proto corev1.Protocol) (*corev1.ContainerPort, string) {
	var only *corev1.ContainerPort
	for _, p := range pods {
		var declared []corev1.ContainerPort
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cmp.Or(cp.Protocol, corev1.ProtocolTCP) == proto {
					declared = append(declared, cp)
				}
			}
		}
		if len(declared) != 1 {
			return nil, fmt.Sprintf("pod %s declares %d %s container ports: the port the Service should target is not evident", p.Name, len(declared), proto)
		}
		if only != nil && (only.Name != declared[0].Name || only.ContainerPort != declared[0].ContainerPort) {
			return nil, fmt.Sprintf("the selected pods declare different %s ports (%s, %s): the port the Service should target is not evident",
				proto, strings.Join(portNames([]corev1.ContainerPort{*only}), ""), strings.Join(portNames(declared), ""))
		}
		only = &declared[0]
	}
	return only, ""
}

// service is the plan's Service, nil for another target.
func (b *builder) service() *corev1.Service {
	svc, _ := b.in.Owner.Object.(*corev1.Service)
	return svc
}

// serviceSkip is why a Service step does not apply to this incident: ""
// (dropped without a note) when the incident has another reason, which
// the other Service step handles.
func (b *builder) serviceSkip(reason string) (string, bool) {
	if b.service() == nil || b.in.Incident.Type != events.IssueServiceUnavailable {
		return fmt.Sprintf("%s is not a Service that routes to no ready pod", b.in.Owner.ref()), true
	}
	if b.in.Traffic == nil {
		return "the Service and what it routes to could not be read", true
	}
	switch b.in.Incident.Reason {
	case reason:
		return "", false
	case trafficNoReadyEndpoints:
		if reason == trafficSelectorMatchesNothing {
			return "the Service's selector and ports match its pods: the pods are not ready, and no change of the Service makes them ready", true
		}
	}
	return "", true
}

// setServiceSelector proposes the selector of the one workload the
// Service evidently targets (selectorFix).
func (b *builder) setServiceSelector(Strategy) (*candidate, string) {
	if why, skip := b.serviceSkip(trafficSelectorMatchesNothing); skip {
		return nil, why
	}
	svc := b.service()
	fix, why := selectorFix(svc, b.in.Traffic)
	if why != "" {
		return nil, why
	}
	w := b.in.Owner
	from, to := labelsString(svc.Spec.Selector), labelsString(fix.Selector)
	// The API server admits only label names and values; a selector that
	// is not one (a fake, a hostile writer) is never proposed.
	for _, sel := range []string{from, to} {
		if _, err := events.ParseSelector(sel); err != nil {
			return nil, quote("the selector is not one a step can carry: " + err.Error())
		}
	}
	op := patchOp{Op: "replace", Path: "/spec/selector", Value: fix.Selector}
	return b.serviceStep(ownerStep{
		action: events.ActionSetServiceSelector,
		title: quote(fmt.Sprintf("Set the selector of %s to %s, the pod labels of %s (now %s, which matches no pod)",
			w.ref(), to, fix.Workload.Ref, from)),
		risk:          events.RiskMedium,
		params:        map[string]string{events.ParamSelector: to, events.ParamFrom: from},
		ops:           []patchOp{{Op: "test", Path: "/spec/selector", Value: svc.Spec.Selector}, op},
		undoOps:       []patchOp{{Op: "test", Path: "/spec/selector", Value: fix.Selector}, {Op: "replace", Path: "/spec/selector", Value: svc.Spec.Selector}},
		undo:          fmt.Sprintf("restore the selector %s (the undo patch: it applies only while the selector is still %s)", quote(from), quote(to)),
		kubectl:       b.kubectl("patch", w.ref(), "--type=json", "-p", string(encodePatch(op))),
		preconditions: []string{fmt.Sprintf("the selector of %s is still %s (the patch tests it)", w.ref(), quote(from))},
		successCheck:  fmt.Sprintf("the EndpointSlices of %s list a ready endpoint (a pod of %s) and every port's targetPort is one its pods declare", w.ref(), fix.Workload.Ref),
	}, fmt.Sprintf("%s; set its selector to %s, the pod labels of %s, the only workload whose pod labels have every key of the selector.",
		problem(b.in), quote(to), fix.Workload.Ref),
		fmt.Sprintf("set_service_selector: %s is the only workload with replicas whose pod labels carry every key of the selector %s; only the values differ", fix.Workload.Ref, quote(from))), ""
}

// setServiceTargetPort proposes the targetPort of the one wrong port
// (targetPortFix).
func (b *builder) setServiceTargetPort(Strategy) (*candidate, string) {
	if why, skip := b.serviceSkip(trafficTargetPortMismatch); skip {
		return nil, why
	}
	svc := b.service()
	fix, why := targetPortFix(svc, b.in.Traffic.Pods)
	if why != "" {
		return nil, quote(why)
	}
	w := b.in.Owner
	for _, tp := range []intstr.IntOrString{fix.From, fix.To} {
		if err := events.ValidateTargetPort(tp.String()); err != nil {
			return nil, quote("the targetPort is not one a step can carry: " + err.Error())
		}
	}
	path := fmt.Sprintf("/spec/ports/%d", fix.Index)
	op := patchOp{Op: "replace", Path: path + "/targetPort", Value: fix.To}
	port := strconv.Itoa(int(fix.Port.Port))
	return b.serviceStep(ownerStep{
		action: events.ActionSetServiceTargetPort,
		title: quote(fmt.Sprintf("Set the targetPort of port %s of %s to %s, the one %s port its %s declare (now %s, which none declares)",
			servicePortName(fix.Port), w.ref(), fix.To.String(), cmp.Or(fix.Port.Protocol, corev1.ProtocolTCP), plural(len(b.in.Traffic.Pods), "pod"), fix.From.String())),
		risk:   events.RiskMedium,
		params: map[string]string{events.ParamPort: port, events.ParamTargetPort: fix.To.String(), events.ParamFrom: fix.From.String()},
		ops: []patchOp{{Op: "test", Path: path + "/port", Value: fix.Port.Port},
			{Op: "test", Path: path + "/targetPort", Value: fix.From}, op},
		undoOps: []patchOp{{Op: "test", Path: path + "/targetPort", Value: fix.To},
			{Op: "test", Path: path + "/port", Value: fix.Port.Port}, {Op: "replace", Path: path + "/targetPort", Value: fix.From}},
		undo:          fmt.Sprintf("restore targetPort %s (the undo patch: it applies only while the targetPort is still %s)", quote(fix.From.String()), quote(fix.To.String())),
		kubectl:       b.kubectl("patch", w.ref(), "--type=json", "-p", string(encodePatch(op))),
		preconditions: []string{fmt.Sprintf("port %d of %s still targets %s (the patch tests it)", fix.Port.Port, w.ref(), quote(fix.From.String()))},
		successCheck:  fmt.Sprintf("every port of %s targets a port its pods declare and its EndpointSlices list a ready endpoint", w.ref()),
	}, fmt.Sprintf("%s; set the targetPort of port %d to %s, the only %s port its pods declare (%s).",
		problem(b.in), fix.Port.Port, quote(fix.To.String()), cmp.Or(fix.Port.Protocol, corev1.ProtocolTCP), quote(fix.Declared)),
		fmt.Sprintf("set_service_target_port: port %d is the only port of %s whose target no selected pod declares, and every selected pod declares the one %s port %s",
			fix.Port.Port, w.ref(), cmp.Or(fix.Port.Protocol, corev1.ProtocolTCP), quote(fix.Declared))), ""
}

func servicePortName(p corev1.ServicePort) string {
	if p.Name != "" {
		return fmt.Sprintf("%s (%d)", p.Name, p.Port)
	}
	return strconv.Itoa(int(p.Port))
}

// serviceStep assembles a Service step: builder.step guards the patch
// with the Service's resourceVersion; the undo patch is guarded by its
// own first test (the value the step wrote), not by a resourceVersion
// nobody knows yet.
func (b *builder) serviceStep(o ownerStep, summary string, notes ...string) *candidate {
	undo := o.undoOps
	o.undoOps = nil
	st := b.step(o)
	st.UndoPatch = encodePatch(undo...)
	return &candidate{Steps: []events.Step{st}, Summary: summary, Notes: notes}
}

// proposedSelection reads the pods a corrected selector would select and
// names those the one fitting workload's own selector does not match:
// the Service would route to them too. Only read for
// selector_matches_nothing with exactly one fitting workload.
func (r reader) proposedSelection(ctx context.Context, svc *corev1.Service, t *trafficRead) {
	var fit *nearWorkload
	for i, n := range t.Near {
		if len(n.Differs) > 0 && len(n.Labels) == len(svc.Spec.Selector) && n.Replicas > 0 {
			if fit != nil {
				return // ambiguous: selectorFix says so
			}
			fit = &t.Near[i]
		}
	}
	if fit == nil || fit.Selector == nil {
		return
	}
	sel := labelsString(fit.Labels)
	pods, err := r.kube.CoreV1().Pods(svc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel, Limit: listLimit})
	if err != nil {
		t.ProposedErr = readErr("pods -l "+sel, err)
		return
	}
	want := labels.SelectorFromSet(fit.Labels)
	for _, p := range pods.Items {
		if !want.Matches(labels.Set(p.Labels)) { // the fake clientset ignores selectors
			continue
		}
		if !fit.Selector.Matches(labels.Set(p.Labels)) {
			t.ProposedForeign = append(t.ProposedForeign, "pod/"+p.Name)
		}
	}
	slices.Sort(t.ProposedForeign)
}

// servicePortStrings spells every port of a Service (servicePortString).
func servicePortStrings(ports []corev1.ServicePort) []string {
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = servicePortString(p)
	}
	return out
}
