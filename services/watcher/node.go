package watcher

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/scheduling"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Node failures: a node NotReady or unreachable, under memory, disk or
// PID pressure, or cordoned, reported on the Node with the workloads
// whose pods it affects. Nodes are watched only by a watcher of the whole
// cluster (kubernetes.namespace empty): a namespaced watcher may not read
// them (nodeWatch, in hpa.go). The namespace filters (policy.include/exclude_namespaces) choose
// which pods are counted, not whether a node is reported.

// Reason classes of the node issue types.
const (
	reasonNodeNotReady     = "not_ready"
	reasonNodeUnreachable  = "node_unreachable"
	reasonMemoryPressure   = "memory_pressure"
	reasonDiskPressure     = "disk_pressure"
	reasonPIDPressure      = "pid_pressure"
	reasonCordoned         = "cordoned"
	reasonCordonedTooLong  = "cordoned_too_long"
	kindNode               = "Node"
	nodeRecheck            = 30 * time.Second
	maxNodeWorkloadsListed = 5
)

// Defaults of NodeOptions.
const (
	DefaultNodeGrace         = 2 * time.Minute
	DefaultNodeCordonedAfter = time.Hour
)

// nodeTypes are the issue types ClassifyNode reports.
var nodeTypes = map[events.IssueType]bool{
	events.IssueNodeNotReady: true, events.IssueNodePressure: true, events.IssueNodeCordoned: true,
}

// NodeOptions tune node detection.
type NodeOptions struct {
	// Grace is how long a node may be NotReady, Unknown or under pressure
	// before it is reported (watcher.node_grace): a kubelet restart or a
	// short network partition heals on its own.
	Grace time.Duration
	// CordonedAfter is how long a node may stay cordoned with pods still
	// on it, or pods Pending for want of a schedulable node, before the
	// low-severity "cordoned" becomes the medium "cordoned_too_long"
	// (watcher.node_cordoned_after): a drain takes minutes, a node
	// forgotten cordoned for hours while its workloads cannot reschedule
	// is an incident.
	CordonedAfter time.Duration
}

func (o NodeOptions) withDefaults() NodeOptions {
	o.Grace = cmp.Or(o.Grace, DefaultNodeGrace)
	o.CordonedAfter = cmp.Or(o.CordonedAfter, DefaultNodeCordonedAfter)
	return o
}

// NodeWorkload is a workload with pods on a node.
type NodeWorkload struct {
	Namespace, Kind, Name string
	Pods                  int
}

// String is "deployment shop/web (2 pods)".
func (w NodeWorkload) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", strings.ToLower(w.Kind), w.Namespace, w.Name, plural(w.Pods, "pod"))
}

// NodeImpact is what a node's failure does to the workloads of the
// watched namespaces.
type NodeImpact struct {
	// Workloads have pods on the node (neither finished nor deleted),
	// by namespace, kind and name.
	Workloads []NodeWorkload
	// Pending counts the pods the scheduler refused for the cause this
	// node presents: cordoned nodes for a cordoned node, the node's
	// condition taint (node.kubernetes.io/not-ready, unreachable,
	// memory-pressure, ...) where the scheduler names it (before
	// kube-scheduler 1.37). The message does not name nodes: with two
	// cordoned nodes, such a pod counts for both.
	Pending int
	// Evicted counts the pods the kubelet evicted from the node that are
	// still there to read.
	Evicted int
}

// pods is the number of pods on the node, and those not of a DaemonSet
// (what a drain moves).
func (im NodeImpact) pods() (all, movable int) {
	for _, w := range im.Workloads {
		all += w.Pods
		if w.Kind != "DaemonSet" {
			movable += w.Pods
		}
	}
	return all, movable
}

// describe is "; 3 pods on it: deployment shop/web (2 pods), ...; 1 pod
// Pending ...; 2 pods evicted".
func (im NodeImpact) describe(pendingWhy string) string {
	var parts []string
	all, _ := im.pods()
	if all > 0 {
		ws := make([]string, 0, maxNodeWorkloadsListed+1)
		for i, w := range im.Workloads {
			if i == maxNodeWorkloadsListed {
				ws = append(ws, fmt.Sprintf("and %d more", len(im.Workloads)-i))
				break
			}
			ws = append(ws, w.String())
		}
		parts = append(parts, fmt.Sprintf("%s on it: %s", plural(all, "pod"), strings.Join(ws, ", ")))
	} else {
		parts = append(parts, "no pod of a watched namespace on it")
	}
	if im.Pending > 0 {
		parts = append(parts, fmt.Sprintf("%s Pending %s", plural(im.Pending, "pod"), pendingWhy))
	}
	if im.Evicted > 0 {
		parts = append(parts, fmt.Sprintf("%s evicted from it", plural(im.Evicted, "pod")))
	}
	return "; " + strings.Join(parts, "; ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// nodeConditionTaint is the taint the node lifecycle controller puts on a
// node for each condition: what the scheduler refuses pods for.
var nodeConditionTaint = map[string]string{
	reasonNodeNotReady:    corev1.TaintNodeNotReady,
	reasonNodeUnreachable: corev1.TaintNodeUnreachable,
	reasonMemoryPressure:  corev1.TaintNodeMemoryPressure,
	reasonDiskPressure:    corev1.TaintNodeDiskPressure,
	reasonPIDPressure:     corev1.TaintNodePIDPressure,
}

// pressures are the kubelet's pressure conditions, worst first.
var pressures = []struct {
	cond   corev1.NodeConditionType
	reason string
	what   string
}{
	{corev1.NodeMemoryPressure, reasonMemoryPressure, "memory"},
	{corev1.NodeDiskPressure, reasonDiskPressure, "disk"},
	{corev1.NodePIDPressure, reasonPIDPressure, "PID"},
}

// ClassifyNode says what is wrong with a node at time now: NotReady or
// Unknown, under pressure (each for longer than o.Grace), cordoned
// (since its node.kubernetes.io/unschedulable taint was added, else since
// cordonedSince, when the watcher first saw it so). It returns
// when to look again while a grace runs (zero for never). It is a pure
// function of its arguments; im says which workloads the failure
// affects.
func ClassifyNode(node *corev1.Node, im NodeImpact, cordonedSince, now time.Time, o NodeOptions) ([]ControllerIssue, time.Time) {
	if node == nil || node.DeletionTimestamp != nil {
		return nil, time.Time{}
	}
	o = o.withDefaults()
	var out []ControllerIssue
	var recheck time.Time
	due := func(since time.Time, grace time.Duration) bool {
		if since.IsZero() {
			since = node.CreationTimestamp.Time
		}
		at := since.Add(grace)
		if now.Before(at) {
			recheck = earliest(recheck, at)
			return false
		}
		return true
	}
	all, movable := im.pods()
	ready := nodeCondition(node, corev1.NodeReady)
	unreachable := ready != nil && ready.Status == corev1.ConditionUnknown
	if ready != nil && ready.Status != corev1.ConditionTrue && due(ready.LastTransitionTime.Time, o.Grace) {
		reason, state := reasonNodeNotReady, "NotReady"
		if unreachable {
			reason, state = reasonNodeUnreachable, "unreachable (Ready Unknown)"
		}
		out = append(out, ControllerIssue{Type: events.IssueNodeNotReady, Reason: reason, PodCount: all,
			Message: fmt.Sprintf("node %s has been %s since %s: %s%s", node.Name, state, sinceText(ready.LastTransitionTime.Time),
				conditionText(ready), im.describe("for its taint "+nodeConditionTaint[reason]))})
	}
	if !unreachable {
		var under []string
		var worst *corev1.NodeCondition
		reason := ""
		for _, p := range pressures {
			c := nodeCondition(node, p.cond)
			if c == nil || c.Status != corev1.ConditionTrue || !due(c.LastTransitionTime.Time, o.Grace) {
				continue
			}
			under = append(under, fmt.Sprintf("%s since %s", p.what, sinceText(c.LastTransitionTime.Time)))
			if worst == nil {
				worst, reason = c, p.reason
			}
		}
		if worst != nil {
			out = append(out, ControllerIssue{Type: events.IssueNodePressure, Reason: reason, PodCount: all,
				Message: pressureMessage(node.Name, under, worst, im, reason)})
		}
	}
	if node.Spec.Unschedulable {
		cordonedSince = cmp.Or(unschedulableSince(node), cordonedSince, now)
		iss := ControllerIssue{Type: events.IssueNodeCordoned, Reason: reasonCordoned, PodCount: all, Severity: events.SeverityLow}
		stuck := movable > 0 || im.Pending > 0
		long := now.Sub(cordonedSince) >= o.CordonedAfter
		switch {
		case stuck && long:
			iss.Reason, iss.Severity = reasonCordonedTooLong, events.SeverityMedium
			iss.Message = fmt.Sprintf("node %s has been cordoned for %s (since %s) and its workloads have not moved",
				node.Name, now.Sub(cordonedSince).Round(time.Second), sinceText(cordonedSince))
		case stuck:
			recheck = earliest(recheck, cordonedSince.Add(o.CordonedAfter))
			iss.Message = fmt.Sprintf("node %s is cordoned (since %s): a drain in progress, or a node left cordoned", node.Name, sinceText(cordonedSince))
		default:
			iss.Message = fmt.Sprintf("node %s is cordoned (since %s) and drained", node.Name, sinceText(cordonedSince))
		}
		iss.Message += im.describe("for want of a schedulable node (the scheduler counts cordoned nodes)")
		out = append(out, iss)
	}
	if len(out) > 0 {
		// Pods come and go on a failing node, and Pending pods name no
		// node: look again while it fails.
		recheck = earliest(recheck, now.Add(nodeRecheck))
	}
	return out, recheck
}

func pressureMessage(node string, under []string, worst *corev1.NodeCondition, im NodeImpact, reason string) string {
	return fmt.Sprintf("node %s is under %s pressure: %s; the kubelet evicts pods and the scheduler avoids the node%s",
		node, strings.Join(under, ", "), conditionText(worst), im.describe("for its taint "+nodeConditionTaint[reason]))
}

// earliest is the earlier of two times, ignoring a zero one.
// unschedulableSince is when the node lifecycle controller tainted a
// cordoned node node.kubernetes.io/unschedulable (zero when unknown).
func unschedulableSince(n *corev1.Node) time.Time {
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeUnschedulable && t.TimeAdded != nil {
			return t.TimeAdded.Time
		}
	}
	return time.Time{}
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

func sinceText(t time.Time) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return t.UTC().Format(time.RFC3339)
}

// conditionText is "KubeletNotReady: container runtime network not
// ready" (the condition's reason and message, cluster text).
func conditionText(c *corev1.NodeCondition) string {
	switch {
	case c.Reason != "" && c.Message != "":
		return c.Reason + ": " + c.Message
	case c.Message != "":
		return c.Message
	case c.Reason != "":
		return c.Reason
	}
	return "no reason given"
}

func nodeCondition(n *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// nodeFailing reports a node that has, or may get by time alone, a node
// issue: not Ready, under pressure, or cordoned.
func nodeFailing(n *corev1.Node) bool {
	if n == nil {
		return false
	}
	if n.Spec.Unschedulable {
		return true
	}
	if c := nodeCondition(n, corev1.NodeReady); c != nil && c.Status != corev1.ConditionTrue {
		return true
	}
	for _, p := range pressures {
		if c := nodeCondition(n, p.cond); c != nil && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// nodeKey is the queue key of a node's incidents.
func nodeKey(name string) ownerKey {
	return ownerKey{Namespace: events.ClusterScopeNamespace, Kind: kindNode, Name: name}
}

// cordonMemory remembers since when each node is cordoned, for a node
// whose node.kubernetes.io/unschedulable taint has no time (not yet
// added by the node lifecycle controller). A restarted watcher counts
// again from its start.
// Safe for concurrent use.
type cordonMemory struct {
	mu    sync.Mutex
	since map[types.UID]time.Time
}

func newCordonMemory() *cordonMemory { return &cordonMemory{since: map[types.UID]time.Time{}} }

// observe records a node's cordon state at now and returns since when it
// is cordoned (zero when it is not).
func (m *cordonMemory) observe(n *corev1.Node, now time.Time) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !n.Spec.Unschedulable {
		delete(m.since, n.UID)
		return time.Time{}
	}
	s, ok := m.since[n.UID]
	if !ok {
		s = now
		m.since[n.UID] = s
	}
	return s
}

func (m *cordonMemory) forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.since, uid)
}

// nodeChanged evaluates a node that is failing, was, or has incidents.
func (s *Service) nodeChanged(oldObj, obj any) {
	n, _ := nodeOf(obj)
	if n == nil {
		return
	}
	s.cordons.observe(n, s.now())
	k := nodeKey(n.Name)
	old, _ := nodeOf(oldObj)
	switch {
	case nodeFailing(n):
		s.enqueueFailing(k)
	case old != nil && nodeFailing(old) || s.tracker.Has(k):
		s.queue.AddAfter(k, s.cfg.Debounce)
	}
}

// nodeDeleted resolves a deleted node's incidents.
func (s *Service) nodeDeleted(obj any) {
	n, _ := nodeOf(obj)
	if n == nil {
		return
	}
	s.cordons.forget(n.UID)
	if k := nodeKey(n.Name); s.tracker.Has(k) {
		s.queue.AddAfter(k, s.cfg.Debounce)
	}
}

func nodeOf(obj any) (*corev1.Node, bool) {
	m := objectOf(obj)
	n, ok := m.(*corev1.Node)
	return n, ok
}

// nodeObs classifies node k from the caches, with the pods of the
// watched namespaces it affects.
func (s *Service) nodeObs(k ownerKey, now time.Time) ([]ctrlObs, time.Time) {
	if s.nodes.nodes == nil {
		return nil, time.Time{}
	}
	obj, _, _ := s.nodes.nodes.GetIndexer().GetByKey(k.Name) // cluster-scoped: the key is the name
	n, _ := obj.(*corev1.Node)
	if n == nil || !nodeFailing(n) {
		return nil, time.Time{}
	}
	issues, recheck := ClassifyNode(n, s.nodeImpact(n), s.cordons.observe(n, now), now, s.cfg.Nodes)
	if len(issues) == 0 {
		return nil, recheck
	}
	ref := events.ObjectRef{Kind: kindNode, APIVersion: "v1", Name: n.Name, UID: string(n.UID)}
	return []ctrlObs{{Chain: []events.ObjectRef{ref}, Issues: issues}}, recheck
}

// nodeImpact reads from the pod cache which workloads of the watched
// namespaces have pods on node n, the pods it got evicted, and the
// Pending pods refused for what it presents.
func (s *Service) nodeImpact(n *corev1.Node) NodeImpact {
	var im NodeImpact
	byOwner := map[ownerKey]int{}
	causes := nodeCauses(n)
	for _, o := range s.cl.pods.GetStore().List() {
		p, ok := o.(*corev1.Pod)
		if !ok || !s.filter.watched(p.Namespace) {
			continue
		}
		if p.Spec.NodeName != n.Name {
			if p.Spec.NodeName == "" && refusedFor(p, causes) {
				im.Pending++
			}
			continue
		}
		switch {
		case p.Status.Phase == corev1.PodFailed && p.Status.Reason == "Evicted":
			im.Evicted++
		case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		default:
			owner, _ := resolveOwner(p, s.cl)
			byOwner[keyOf(owner)]++
		}
	}
	for k, c := range byOwner {
		im.Workloads = append(im.Workloads, NodeWorkload{Namespace: k.Namespace, Kind: k.Kind, Name: k.Name, Pods: c})
	}
	slices.SortFunc(im.Workloads, func(a, b NodeWorkload) int {
		return cmp.Or(cmp.Compare(b.Pods, a.Pods), strings.Compare(a.Namespace+"/"+a.Kind+"/"+a.Name, b.Namespace+"/"+b.Kind+"/"+b.Name))
	})
	return im
}

// nodeCause is a scheduler cause a node presents.
type nodeCause struct {
	kind  scheduling.Kind
	taint string
}

// nodeCauses are the scheduler causes node n presents: cordoned, and the
// taints of its failing conditions.
func nodeCauses(n *corev1.Node) []nodeCause {
	var out []nodeCause
	if n.Spec.Unschedulable {
		out = append(out, nodeCause{kind: scheduling.KindCordoned})
	}
	for _, t := range n.Spec.Taints {
		for _, ct := range nodeConditionTaint {
			if t.Key == ct {
				out = append(out, nodeCause{kind: scheduling.KindTaint, taint: t.Key})
			}
		}
	}
	return out
}

// refusedFor reports an unschedulable pod whose scheduler message gives
// one of causes.
func refusedFor(p *corev1.Pod, causes []nodeCause) bool {
	if len(causes) == 0 || p.Status.Phase != corev1.PodPending {
		return false
	}
	c := condition(p, corev1.PodScheduled)
	if c == nil || c.Status != corev1.ConditionFalse || c.Reason != corev1.PodReasonUnschedulable {
		return false
	}
	r, ok := scheduling.Parse(c.Message)
	if !ok {
		return false
	}
	for _, rc := range r.Causes {
		for _, nc := range causes {
			if rc.Kind == nc.kind && (nc.taint == "" || rc.Taint != nil && rc.Taint.Key == nc.taint) {
				return true
			}
		}
	}
	return false
}

// trimNode keeps what ClassifyNode reads: identity, whether the node is
// cordoned, its taints and its conditions; and what
// ClassifyNodeCapacity reads: its allocatable cpu, memory and pods.
func trimNode(o *corev1.Node) *corev1.Node {
	out := &corev1.Node{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta)}
	out.Spec = corev1.NodeSpec{Unschedulable: o.Spec.Unschedulable, Taints: o.Spec.Taints}
	out.Status.Conditions = o.Status.Conditions
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods} {
		if q, ok := o.Status.Allocatable[name]; ok {
			if out.Status.Allocatable == nil {
				out.Status.Allocatable = make(corev1.ResourceList, 3)
			}
			out.Status.Allocatable[name] = q
		}
	}
	return out
}
