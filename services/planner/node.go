package planner

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// Node incidents (NodeNotReady, NodePressure, NodeCordoned): the plans
// are diagnostic by design. kaar never cordons, drains, uncordons or
// deletes a node: whether a node is fit to run pods again, and when its
// workloads should move, is not something the cluster's state proves;
// the executor's catalogue acts only on namespaced workloads, and a Node's
// resourceVersion changes with every status heartbeat, so no guard could
// hold between approval and execution.

// KindNode is the owner kind of node incidents.
const KindNode = "Node"

// Reasons of the node issue types, as the watcher classifies them.
const (
	nodeReasonUnreachable     = "node_unreachable"
	nodeReasonMemoryPressure  = "memory_pressure"
	nodeReasonDiskPressure    = "disk_pressure"
	nodeReasonPIDPressure     = "pid_pressure"
	nodeReasonCordonedTooLong = "cordoned_too_long"
	maxNodePodLines           = 15
)

// nodeRead is what the planner read about a node: the pods on it (every
// namespace) and its events.
type nodeRead struct {
	Node   *corev1.Node
	Pods   []corev1.Pod
	Events []corev1.Event
	// Errs say what could not be read: evidence too.
	Errs []string
}

// node reads the pods on the incident's node and the node's events. Read
// failures are evidence, never an error.
func (r reader) node(ctx context.Context, in planInput) *nodeRead {
	n, _ := in.Owner.Object.(*corev1.Node)
	if n == nil {
		return nil
	}
	nr := &nodeRead{Node: n}
	pods, err := r.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name, Limit: listLimit})
	if err != nil {
		nr.Errs = append(nr.Errs, readErr("pods on node "+n.Name, err))
	} else {
		for _, p := range pods.Items {
			if p.Spec.NodeName == n.Name { // the fake clientset ignores field selectors
				nr.Pods = append(nr.Pods, p)
			}
		}
		slices.SortFunc(nr.Pods, func(a, b corev1.Pod) int { return cmp.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name) })
	}
	sel := fields.Set{"involvedObject.kind": KindNode, "involvedObject.name": n.Name}.AsSelector().String()
	evs, err := r.kube.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: sel, Limit: listLimit})
	if err != nil {
		nr.Errs = append(nr.Errs, readErr("events of node "+n.Name, err))
	} else {
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind == KindNode && e.InvolvedObject.Name == n.Name {
				nr.Events = append(nr.Events, e)
			}
		}
	}
	return nr
}

// nodeWorkloads groups the pods on a node by their controller: "shop
// replicaset/web-7d9c (2 pods, 1 evicted)", running ones first.
func nodeWorkloads(pods []corev1.Pod) (lines []string, active, evicted, daemon int) {
	type group struct{ active, evicted, done int }
	groups := map[string]*group{}
	for _, p := range pods {
		owner := "pod/" + p.Name
		if c := metav1.GetControllerOf(&p); c != nil {
			owner = strings.ToLower(c.Kind) + "/" + c.Name
			if c.Kind == KindDaemonSet && p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded {
				daemon++
			}
		}
		key := p.Namespace + " " + owner
		g := groups[key]
		if g == nil {
			g = &group{}
			groups[key] = g
		}
		switch {
		case isEvicted(&p):
			g.evicted++
			evicted++
		case p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded:
			g.done++
		default:
			g.active++
			active++
		}
	}
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		g := groups[k]
		l := fmt.Sprintf("%s: %s", k, plural(g.active, "pod"))
		if g.evicted > 0 {
			l += fmt.Sprintf(", %d evicted", g.evicted)
		}
		if g.done > 0 {
			l += fmt.Sprintf(", %d finished", g.done)
		}
		lines = append(lines, quote(l))
	}
	return lines, active, evicted, daemon
}

// clusterCommand is a kubectl command about cluster-scoped objects
// (nodes, APIServices) or every namespace: no namespace flag.
func clusterCommand(args ...string) string {
	return text.ShellQuote(append([]string{"kubectl"}, args...)...)
}

// nodeSteps say what is wrong with the node, which workloads it affects
// and what a person does; kaar changes nothing.
func nodeSteps(in planInput) []events.Step {
	name := in.Owner.Ref.Name
	n, _ := in.Owner.Object.(*corev1.Node)
	step := func(title string, kubectl ...string) events.Step {
		s := events.Step{Action: events.ActionDiagnostic, Title: title, Risk: events.RiskNone, Target: in.Owner.Ref}
		if len(kubectl) > 0 {
			s.Kubectl = clusterCommand(kubectl...)
		}
		return s
	}
	describe := step(fmt.Sprintf("Read node %s: its conditions with their reasons and since when, its taints, and the pods it runs", name),
		"describe", "node", name)
	podsOn := []string{"get", "pods", "--all-namespaces", "--field-selector", "spec.nodeName=" + name, "-o", "wide"}
	var active, evicted, daemon int
	if in.Node != nil {
		_, active, evicted, daemon = nodeWorkloads(in.Node.Pods)
	}
	what := fmt.Sprintf("%s on it (%d of DaemonSets)", plural(active, "pod"), daemon)
	if evicted > 0 {
		what += fmt.Sprintf(", %d evicted from it", evicted)
	}
	if n == nil {
		return []events.Step{describe, step("List the pods on it", podsOn...)}
	}
	var out []events.Step
	switch in.Incident.Type {
	case events.IssueNodeNotReady:
		c := nodeConditionOf(n, corev1.NodeReady)
		out = append(out, step(quote(fmt.Sprintf("Node %s is %s since %s: %s", name, readyState(c), fmtTime(condSince(c)), condText(c))), "describe", "node", name))
		if in.Incident.Reason == nodeReasonUnreachable {
			out = append(out, step(fmt.Sprintf("The kubelet of %s stopped posting its status: check the machine (is it running? its network, the kubelet service: journalctl -u kubelet) from the cloud console or over SSH; kaar cannot reach it", name),
				"get", "lease", "-n", "kube-node-lease", name, "-o", "jsonpath={.spec.renewTime}"))
		} else {
			out = append(out, step(fmt.Sprintf("The kubelet of %s reports itself not ready: its runtime, network plugin (CNI) or disk, in the condition's message above; check it on the machine (journalctl -u kubelet)", name),
				"get", "node", name, "-o", "jsonpath={range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{\"\\n\"}{end}"))
		}
		out = append(out, step(fmt.Sprintf("Affected: %s. The node lifecycle controller evicts them once their not-ready/unreachable toleration (300 s by default) ends; StatefulSet pods are not replaced while the node may still run them", what), podsOn...))
		out = append(out, step(fmt.Sprintf("By a person, while repairing it: cordon and drain %s (kubectl cordon, then kubectl drain --ignore-daemonsets); if the machine is gone for good, delete the Node object so that its StatefulSet pods are recreated elsewhere (kubectl delete node %s). kaar never cordons, drains or deletes nodes", name, name),
			"cordon", name))
	case events.IssueNodePressure:
		out = append(out, nodePressureSteps(n, in, step, podsOn, what)...)
	case events.IssueNodeCordoned:
		since := unschedulableSince(n)
		out = append(out, step(fmt.Sprintf("Node %s is cordoned (spec.unschedulable) since %s: the scheduler puts no new pod there", name, fmtTime(since.Time)),
			"get", "node", name, "-o", "jsonpath={.spec.unschedulable} {.spec.taints}"))
		switch {
		case active-daemon > 0:
			out = append(out, step(fmt.Sprintf("%s: a drain did not finish or never started. A PodDisruptionBudget may refuse the evictions (kubectl get pdb -A), or pods without a controller, or with local storage, need kubectl drain's flags", what),
				podsOn...))
		default:
			out = append(out, step(fmt.Sprintf("%s: the node is drained", what), podsOn...))
		}
		if in.Incident.Reason == nodeReasonCordonedTooLong {
			out = append(out, step("Pods Pending for want of a schedulable node say so in their events (\"node(s) were unschedulable\"): without this node the cluster may lack capacity",
				"get", "pods", "--all-namespaces", "--field-selector", "status.phase=Pending"))
		}
		out = append(out, step(fmt.Sprintf("When its maintenance is over and the node is fit again, a person uncordons it (kubectl uncordon %s); if it is to go, drain and remove it. kaar never uncordons: that the node is fit is not something the cluster's state proves", name),
			"uncordon", name))
	}
	return append(out, describe)
}

// nodePressureSteps explain a node under memory, disk or PID pressure.
func nodePressureSteps(n *corev1.Node, in planInput, step stepFunc, podsOn []string, what string) []events.Step {
	name := n.Name
	var out []events.Step
	for _, p := range []struct {
		cond corev1.NodeConditionType
		what string
	}{{corev1.NodeMemoryPressure, "memory"}, {corev1.NodeDiskPressure, "disk"}, {corev1.NodePIDPressure, "PID"}} {
		if c := nodeConditionOf(n, p.cond); c != nil && c.Status == corev1.ConditionTrue {
			out = append(out, step(quote(fmt.Sprintf("Node %s is under %s pressure since %s: %s", name, p.what, fmtTime(condSince(c)), condText(c))), "describe", "node", name))
		}
	}
	out = append(out, step(fmt.Sprintf("Affected: %s. The kubelet evicts pods (lowest priority and most over their requests first) and the scheduler sends no new pod there while it lasts", what), podsOn...))
	switch in.Incident.Reason {
	case nodeReasonMemoryPressure:
		out = append(out, step("Find what uses the memory (kubectl top pods --all-namespaces --sort-by=memory with a metrics server); set memory requests near real usage so the scheduler does not overcommit the node, and limits on the pods that grow",
			"top", "pods", "--all-namespaces", "--sort-by=memory"))
	case nodeReasonDiskPressure:
		out = append(out, step("Free the node's disk: unused images and container logs (the kubelet's image garbage collection, crictl rmi --prune), emptyDir volumes; give pods that write to local disk ephemeral-storage requests and limits",
			"get", "node", name, "-o", "jsonpath={.status.allocatable.ephemeral-storage}"))
	case nodeReasonPIDPressure:
		out = append(out, step("A process on the node is creating processes or threads without bound: find it on the machine (ps), and bound pods with the kubelet's podPidsLimit", podsOn...))
	}
	return out
}

func nodeConditionOf(n *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func readyState(c *corev1.NodeCondition) string {
	if c != nil && c.Status == corev1.ConditionUnknown {
		return "unreachable (Ready Unknown)"
	}
	return "NotReady"
}

func condSince(c *corev1.NodeCondition) time.Time {
	if c == nil {
		return time.Time{}
	}
	return c.LastTransitionTime.Time
}

func condText(c *corev1.NodeCondition) string {
	if c == nil {
		return "no condition reported"
	}
	return strings.TrimPrefix(strings.Join(slices.DeleteFunc([]string{c.Reason, c.Message}, func(s string) bool { return s == "" }), ": "), ": ")
}

// unschedulableSince is when the node lifecycle controller tainted the
// cordoned node (zero when it did not say).
func unschedulableSince(n *corev1.Node) metav1.Time {
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeUnschedulable && t.TimeAdded != nil {
			return *t.TimeAdded
		}
	}
	return metav1.Time{}
}

// nodeEvidence quotes the node's conditions, taints, the pods on it by
// workload and its events.
func nodeEvidence(in planInput) events.Evidence {
	nr := in.Node
	n := nr.Node
	lines := []string{fmt.Sprintf("node/%s unschedulable %t", n.Name, n.Spec.Unschedulable)}
	data := map[string]string{"node": n.Name, "unschedulable": strconv.FormatBool(n.Spec.Unschedulable)}
	for _, c := range n.Status.Conditions {
		lines = append(lines, conditionLine("", string(c.Type), string(c.Status), c.Reason, c.Message, c.LastTransitionTime))
		if c.Type == corev1.NodeReady {
			data["ready"] = string(c.Status)
		}
	}
	for _, t := range n.Spec.Taints {
		l := fmt.Sprintf("taint %s", t.ToString())
		if t.TimeAdded != nil {
			l += " (since " + fmtTime(t.TimeAdded.Time) + ")"
		}
		lines = append(lines, quote(l))
	}
	wl, active, evicted, daemon := nodeWorkloads(nr.Pods)
	data["pods"], data["evicted_pods"], data["daemonset_pods"] = strconv.Itoa(active), strconv.Itoa(evicted), strconv.Itoa(daemon)
	lines = append(lines, fmt.Sprintf("pods on the node: %d active (%d of DaemonSets), %d evicted", active, daemon, evicted))
	if len(wl) > maxNodePodLines {
		wl = append(wl[:maxNodePodLines], fmt.Sprintf("... and %d more", len(wl)-maxNodePodLines))
	}
	lines = append(lines, wl...)
	for _, e := range sortEvents(nr.Events) {
		if len(lines) >= events.MaxEvidenceLines-len(nr.Errs) {
			break
		}
		lines = append(lines, quote(fmt.Sprintf("event %s %s (last %s): %s", e.Type, e.Reason, fmtTime(eventTime(e)), e.Message)))
	}
	for _, e := range nr.Errs {
		lines = append(lines, quote(e))
	}
	return events.Evidence{Kind: events.EvidenceConditions, Title: fmt.Sprintf("Conditions, taints and pods of node/%s", n.Name),
		Source: "node " + n.Name + ", pods --field-selector spec.nodeName=" + n.Name + ", its events", Lines: lines, Data: data}
}
