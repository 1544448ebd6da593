package watcher

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The node fixtures are sandbox nodes recorded with kubectl get -o json
// (managedFields dropped): the conditions and taints the sandbox's
// sandbox.kaar.dev/node-ready and node-pressure annotations produce,
// and the node lifecycle controller's taints, set at 09:52:5x.
var nodeNow = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

func loadJSON[T any](t testing.TB, path string) *T {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var o T
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &o
}

func loadNode(t testing.TB, name string) *corev1.Node {
	return loadJSON[corev1.Node](t, filepath.Join("testdata", "nodes", name+".json"))
}

var webOnNode = NodeImpact{Workloads: []NodeWorkload{{Namespace: "shop", Kind: "Deployment", Name: "web", Pods: 2},
	{Namespace: "kube-system", Kind: "DaemonSet", Name: "proxy", Pods: 1}}}

func TestClassifyNode(t *testing.T) {
	grace := NodeOptions{Grace: 2 * time.Minute, CordonedAfter: time.Hour}
	cases := []struct {
		name, fixture string
		im            NodeImpact
		now           time.Time
		typ           events.IssueType
		reason        string
		severity      events.Severity
		pods          int
		msg           []string
	}{
		{name: "not ready", fixture: "notready", im: webOnNode, now: nodeNow, typ: events.IssueNodeNotReady, reason: "not_ready", pods: 3,
			msg: []string{"node fixture-notready has been NotReady since 2026-12-06T09:52:52Z", "KubeletNotReady: container runtime network not ready",
				"3 pods on it: deployment shop/web (2 pods), daemonset kube-system/proxy (1 pod)"}},
		{name: "unknown", fixture: "unknown", im: NodeImpact{Pending: 2}, now: nodeNow, typ: events.IssueNodeNotReady, reason: "node_unreachable",
			msg: []string{"unreachable (Ready Unknown)", "NodeStatusUnknown: Kubelet stopped posting node status.", "no pod of a watched namespace on it",
				"2 pods Pending for its taint node.kubernetes.io/unreachable"}},
		{name: "memory and disk pressure", fixture: "pressure", im: NodeImpact{Evicted: 4}, now: nodeNow, typ: events.IssueNodePressure, reason: "memory_pressure",
			msg: []string{"under memory since 2026-12-06T09:52:52Z, disk since 2026-12-06T09:52:52Z pressure", "KubeletHasInsufficientMemory", "4 pods evicted from it"}},
		{name: "cordoned and drained", fixture: "cordoned", im: NodeImpact{Workloads: webOnNode.Workloads[1:]}, now: nodeNow.Add(5 * time.Hour),
			typ: events.IssueNodeCordoned, reason: "cordoned", severity: events.SeverityLow, pods: 1,
			msg: []string{"node fixture-cordoned is cordoned (since 2026-12-06T09:52:51Z) and drained", "daemonset kube-system/proxy"}},
		{name: "cordoned, drain in progress", fixture: "cordoned", im: webOnNode, now: nodeNow,
			typ: events.IssueNodeCordoned, reason: "cordoned", severity: events.SeverityLow, pods: 3,
			msg: []string{"a drain in progress, or a node left cordoned"}},
		{name: "cordoned for long with pods", fixture: "cordoned", im: webOnNode, now: nodeNow.Add(2 * time.Hour),
			typ: events.IssueNodeCordoned, reason: "cordoned_too_long", severity: events.SeverityMedium, pods: 3,
			msg: []string{"has been cordoned for 2h7m9s (since 2026-12-06T09:52:51Z) and its workloads have not moved"}},
		{name: "cordoned for long, pods Pending", fixture: "cordoned", im: NodeImpact{Pending: 1}, now: nodeNow.Add(2 * time.Hour),
			typ: events.IssueNodeCordoned, reason: "cordoned_too_long", severity: events.SeverityMedium,
			msg: []string{"1 pod Pending for want of a schedulable node"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := loadNode(t, c.fixture)
			for _, node := range []*corev1.Node{n, trimNode(n)} {
				got, recheck := ClassifyNode(node, c.im, time.Time{}, c.now, grace)
				if len(got) != 1 {
					t.Fatalf("issues = %+v, want one %s", got, c.typ)
				}
				g := got[0]
				if g.Type != c.typ || g.Reason != c.reason || g.Severity != c.severity || g.PodCount != c.pods {
					t.Errorf("issue = %+v, want %s/%s severity %q pods %d", g, c.typ, c.reason, c.severity, c.pods)
				}
				for _, m := range c.msg {
					if !strings.Contains(g.Message, m) {
						t.Errorf("message %q lacks %q", g.Message, m)
					}
				}
				if recheck.IsZero() || recheck.After(c.now.Add(nodeRecheck)) {
					t.Errorf("recheck = %s, want within %s of now (a failing node is looked at again)", recheck, nodeRecheck)
				}
			}
		})
	}
}

func TestClassifyNodeQuiet(t *testing.T) {
	grace := NodeOptions{Grace: 2 * time.Minute, CordonedAfter: time.Hour}
	if got, recheck := ClassifyNode(loadNode(t, "ready"), webOnNode, time.Time{}, nodeNow, grace); len(got) > 0 || !recheck.IsZero() {
		t.Errorf("Ready node: %+v, recheck %s; want nothing", got, recheck)
	}
	// Within the grace: nothing yet, a look again when it ends.
	early := time.Date(2026, 12, 6, 9, 53, 30, 0, time.UTC)
	for _, f := range []string{"notready", "unknown", "pressure"} {
		got, recheck := ClassifyNode(loadNode(t, f), webOnNode, time.Time{}, early, grace)
		if len(got) > 0 || recheck.IsZero() || recheck.Before(early.Add(time.Minute)) || recheck.After(early.Add(2*time.Minute)) {
			t.Errorf("%s within the grace: %+v, recheck %s; want nothing, recheck when the grace ends", f, got, recheck)
		}
	}
	// A node that recovered: Ready again, its pressure gone.
	healed := loadNode(t, "notready")
	for i := range healed.Status.Conditions {
		healed.Status.Conditions[i].Status = corev1.ConditionFalse
		if healed.Status.Conditions[i].Type == corev1.NodeReady {
			healed.Status.Conditions[i].Status = corev1.ConditionTrue
		}
	}
	if got, _ := ClassifyNode(healed, webOnNode, time.Time{}, nodeNow, grace); len(got) > 0 || nodeFailing(healed) {
		t.Errorf("recovered node: %+v", got)
	}
	// A cordoned node without the controller's taint yet: since the
	// watcher saw it.
	n := loadNode(t, "cordoned")
	n.Spec.Taints = nil
	seen := nodeNow.Add(-30 * time.Minute)
	got, recheck := ClassifyNode(n, webOnNode, seen, nodeNow, grace)
	if len(got) != 1 || got[0].Reason != "cordoned" || !recheck.Equal(nodeNow.Add(nodeRecheck)) {
		t.Errorf("cordoned 30m ago: %+v, recheck %s", got, recheck)
	}
	if got, _ := ClassifyNode(n, webOnNode, seen, seen.Add(time.Hour), grace); len(got) != 1 || got[0].Reason != "cordoned_too_long" {
		t.Errorf("cordoned 1h ago: %+v", got)
	}
}

func TestRefusedForNodeCauses(t *testing.T) {
	pending := func(msg string) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
			Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: msg}}}}
	}
	cordoned, notReady := nodeCauses(loadNode(t, "cordoned")), nodeCauses(loadNode(t, "notready"))
	for _, c := range []struct {
		msg    string
		causes []nodeCause
		want   bool
	}{
		{"0/4 nodes are available: 1 node(s) were unschedulable, 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.", cordoned, true},
		{"0/4 nodes are available: 1 node(s) were unschedulable, 3 node(s) didn't match Pod's node affinity/selector.", notReady, false},
		{"0/4 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 3 Insufficient cpu.", notReady, true},
		// kube-scheduler 1.37 no longer names the taint: not attributed.
		{"0/4 nodes are available: 1 node(s) had untolerated taint(s), 3 Insufficient cpu.", notReady, false},
		{"0/4 nodes are available: 4 Insufficient cpu.", cordoned, false},
	} {
		if got := refusedFor(pending(c.msg), c.causes); got != c.want {
			t.Errorf("refusedFor(%q) = %t, want %t", c.msg, got, c.want)
		}
	}
	running := pending("0/4 nodes are available: 1 node(s) were unschedulable.")
	running.Status.Phase = corev1.PodRunning
	if refusedFor(running, cordoned) {
		t.Error("a running pod counted as Pending")
	}
}

func TestTrimNodeKeepsWhatClassifyReads(t *testing.T) {
	n := loadNode(t, "cordoned")
	n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "x"}}
	tr := trimNode(n)
	if tr.ManagedFields != nil || tr.Status.Capacity != nil || len(tr.Status.Addresses) > 0 || tr.Labels != nil {
		t.Errorf("trimmed node keeps %+v", tr)
	}
	if !tr.Spec.Unschedulable || len(tr.Spec.Taints) != 2 || len(tr.Status.Conditions) != len(n.Status.Conditions) || tr.UID != n.UID {
		t.Errorf("trimmed node lost what ClassifyNode reads: %+v", tr)
	}
	if again, _ := nodeTransform(n); again.(*corev1.Node).Status.Capacity != nil || !again.(*corev1.Node).Spec.Unschedulable {
		t.Error("nodeTransform does not trim nodes")
	}
}

func TestCordonMemory(t *testing.T) {
	m := newCordonMemory()
	n := loadNode(t, "cordoned")
	t0 := nodeNow
	if s := m.observe(n, t0); !s.Equal(t0) {
		t.Errorf("first sight: %s", s)
	}
	if s := m.observe(n, t0.Add(time.Hour)); !s.Equal(t0) {
		t.Errorf("second sight: %s, want the first", s)
	}
	n.Spec.Unschedulable = false
	if s := m.observe(n, t0.Add(2*time.Hour)); !s.IsZero() {
		t.Errorf("uncordoned: %s", s)
	}
	n.Spec.Unschedulable = true
	if s := m.observe(n, t0.Add(3*time.Hour)); !s.Equal(t0.Add(3 * time.Hour)) {
		t.Errorf("cordoned again: %s, want a new start", s)
	}
}

func TestNodeKeyIsClusterScoped(t *testing.T) {
	ref := events.ObjectRef{Kind: kindNode, Name: "n1"}
	if keyOf(ref) != nodeKey("n1") {
		t.Errorf("keyOf(%v) = %v, want %v", ref, keyOf(ref), nodeKey("n1"))
	}
	tr := newTracker("c1", Timing{GroupInterval: time.Second, ResolveWait: time.Second}, func(string) bool { return false })
	iss := []ControllerIssue{{Type: events.IssueNodeCordoned, Reason: "cordoned", Message: "m", Severity: events.SeverityLow}}
	due, _ := tr.ObserveOwner(ref, nil, []ctrlObs{{Chain: []events.ObjectRef{ref}, Issues: iss}}, nodeNow)
	if len(due) != 1 {
		t.Fatalf("announcements = %+v", due)
	}
	in := due[0].Incident
	if err := in.Validate(); err != nil || in.Namespace != events.ClusterScopeNamespace || in.Owner.Namespace != "" || in.Severity != events.SeverityLow {
		t.Errorf("incident = %+v (%v)", in, err)
	}
	if in.ID != events.IncidentID("c1", events.ClusterScopeNamespace, kindNode, "n1", "", events.IssueNodeCordoned) {
		t.Errorf("id %s", in.ID)
	}
	tr.Commit(due[0])
	if !tr.Has(nodeKey("n1")) {
		t.Error("tracker does not find the node's incident by its key")
	}
}

// The node and HPA settings come from the watcher section of kaar's
// configuration; zero (unset in code) takes the defaults.
func TestNodeAndHPAConfig(t *testing.T) {
	c := config.Default()
	c.Kubernetes.ClusterName = "c1"
	c.Watcher.NodeGrace.Duration, c.Watcher.NodeCordonedAfter.Duration = 3*time.Minute, 4*time.Hour
	c.Watcher.HPAGrace.Duration, c.Watcher.HPAAtMaxAfter.Duration = 10*time.Minute, time.Hour
	got := ConfigFrom(c)
	if got.Nodes != (NodeOptions{Grace: 3 * time.Minute, CordonedAfter: 4 * time.Hour}) || got.HPAs != (HPAOptions{Grace: 10 * time.Minute, AtMaxAfter: time.Hour}) {
		t.Errorf("ConfigFrom: nodes %+v, hpas %+v", got.Nodes, got.HPAs)
	}
	def, err := Config{Cluster: "c1"}.withDefaults()
	if err != nil || def.Nodes != (NodeOptions{Grace: DefaultNodeGrace, CordonedAfter: DefaultNodeCordonedAfter}) ||
		def.HPAs != (HPAOptions{Grace: DefaultHPAGrace, AtMaxAfter: DefaultHPAAtMaxAfter}) {
		t.Errorf("defaults: %+v %+v (%v)", def.Nodes, def.HPAs, err)
	}
	d := config.Default().Watcher
	if d.NodeGrace.Duration != DefaultNodeGrace || d.NodeCordonedAfter.Duration != DefaultNodeCordonedAfter ||
		d.HPAGrace.Duration != DefaultHPAGrace || d.HPAAtMaxAfter.Duration != DefaultHPAAtMaxAfter {
		t.Errorf("config.Default's watcher section and the watcher's defaults differ: %+v", d)
	}
}
