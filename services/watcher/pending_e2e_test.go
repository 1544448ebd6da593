package watcher

import (
	"hash/fnv"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/scheduling"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The sandbox's real kube-scheduler refuses these pods; the incident says
// why in a compact line with how many nodes refused each. The sandbox is
// shared: nodes other tests add (sandbox.AddNode) carry a taint and show
// up as "untolerated taint(s)", so the counts are checked against the
// total the scheduler gave, not against 3.

// waitPending waits for the Pending incident of Deployment name whose
// reason is reason, and returns its message taken apart. When other
// tests' extra nodes (tainted or cordoned) outnumber the nodes refused
// for reason, the reason is theirs, as the rule says (the cause that
// refused the most nodes): such an incident is accepted when its message
// also has a cause of reason.
func (h *harness) waitPending(t *testing.T, name, reason string) (events.Incident, scheduling.Report) {
	t.Helper()
	id := h.incidentID("Deployment", name, events.IssuePending)
	r := h.waitIncident(t, 3*time.Minute, id, reason, func(in events.Incident) bool {
		if in.Reason == reason {
			return true
		}
		rep, ok := scheduling.Parse(in.Message)
		d, dok := rep.Dominant()
		if !ok || !dok || (d.Kind != scheduling.KindTaint && d.Kind != scheduling.KindCordoned) || in.Reason != pendingClass(d) {
			return false
		}
		return slices.ContainsFunc(rep.Causes, func(c scheduling.Cause) bool { return pendingClass(c) == reason })
	})
	in := r.event.Incident
	rep, ok := scheduling.Parse(in.Message)
	if !ok || !strings.HasPrefix(in.Message, "0/") || rep.String() != in.Message {
		t.Fatalf("incident message %q is not the compact form of a scheduler message (parsed: %+v)", in.Message, rep)
	}
	sum := 0
	for _, c := range rep.Causes {
		sum += c.Nodes
		if c.Kind == scheduling.KindTaint && c.Taint != nil {
			t.Errorf("cause %+v: the sandbox's scheduler (1.37) does not name taints", c)
		}
	}
	if rep.Total < 3 || sum != rep.Total {
		t.Errorf("incident message %q: the causes count %d nodes of %d, want every node of at least 3", in.Message, sum, rep.Total)
	}
	return in, rep
}

// nodesFor is how many nodes refused the pod for causes of kind k.
func nodesFor(rep scheduling.Report, k scheduling.Kind) int {
	n := 0
	for _, c := range rep.Causes {
		if c.Kind == k {
			n += c.Nodes
		}
	}
	return n
}

// othersAreExtraNodes fails unless every cause but want is another
// test's extra node: tainted (sandbox.AddNode), or cordoned by a node
// test running at the same time.
func othersAreExtraNodes(t *testing.T, rep scheduling.Report, want ...scheduling.Kind) {
	t.Helper()
	for _, c := range rep.Causes {
		if c.Kind != scheduling.KindTaint && c.Kind != scheduling.KindCordoned && !slices.Contains(want, c.Kind) {
			t.Errorf("unexpected cause %+v in %q", c, rep.String())
		}
	}
}

func TestPendingForCPUCountsEveryNode(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	h.create(t, testDeployment("huge", 1, nil, corev1.Container{Name: "app", Image: "nginx:1.27",
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64")}}}))

	in, rep := h.waitPending(t, "huge", "insufficient_cpu")
	if n := nodesFor(rep, scheduling.KindInsufficient); n < 3 || !rep.Has(scheduling.KindInsufficient, "cpu") {
		t.Errorf("incident message %q: %d nodes short of cpu, want the 3 default nodes at least", in.Message, n)
	}
	othersAreExtraNodes(t, rep, scheduling.KindInsufficient)
	// 64 cpu exceed every node: lowered to half the largest allocatable.
	wantPlan(t, store, in.ID, events.IssuePending, "Deployment", "huge", events.ActionSetResourceRequests)
}

func TestPendingForANodeSelectorNoNodeMatches(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	d := testDeployment("pinned", 1, nil, corev1.Container{Name: "app", Image: "nginx:1.27"})
	d.Spec.Template.Spec.NodeSelector = map[string]string{"disk": "nvme-" + h.ns}
	h.create(t, d)

	in, rep := h.waitPending(t, "pinned", "node_selector")
	if n := nodesFor(rep, scheduling.KindNodeAffinity); n < 3 || !strings.Contains(in.Message, " node selector/affinity mismatch") {
		t.Errorf("incident message %q: %d nodes refused for the selector, want the 3 default nodes at least", in.Message, n)
	}
	othersAreExtraNodes(t, rep, scheduling.KindNodeAffinity)
	// One revision: no selector that ran to go back to.
	wantPlan(t, store, in.ID, events.IssuePending, "Deployment", "pinned", diagnostic)
}

// Two replicas pinned to one node with the same hostPort: the second
// cannot share the port, and the other nodes are not the pinned one.
func TestPendingForAHostPortTakenOnThePinnedNode(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startWatcher(t)
	store := h.startPlanner(t)
	f := fnv.New32a()
	f.Write([]byte(h.ns))
	port := int32(20000 + f.Sum32()%10000) // apart from other tests' ports
	d := testDeployment("proxy", 2, nil, corev1.Container{Name: "app", Image: "nginx:1.27",
		Ports: []corev1.ContainerPort{{ContainerPort: 80, HostPort: port}}})
	d.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "kwok-node-0"}
	h.create(t, d)

	in, rep := h.waitPending(t, "proxy", "node_selector")
	if n := nodesFor(rep, scheduling.KindHostPort); n != 1 || !strings.Contains(in.Message, " 1 host port in use") {
		t.Errorf("incident message %q: %d nodes with the port taken, want 1", in.Message, n)
	}
	if n := nodesFor(rep, scheduling.KindNodeAffinity); n < 2 {
		t.Errorf("incident message %q: %d nodes refused for the selector, want the 2 other default nodes at least", in.Message, n)
	}
	if in.PodCount != 1 {
		t.Errorf("incident %+v: %d pods, want the one that waits", in, in.PodCount)
	}
	othersAreExtraNodes(t, rep, scheduling.KindHostPort, scheduling.KindNodeAffinity)
	wantPlan(t, store, in.ID, events.IssuePending, "Deployment", "proxy", diagnostic)
}
