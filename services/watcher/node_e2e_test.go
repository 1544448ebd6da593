package watcher

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/kaar-dev/kaar/services/planner"
	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Nodes and HorizontalPodAutoscalers on the sandbox: each test owns its
// namespace and an extra kwok node named after it (sandbox.AddNode,
// tainted so that only the test's pods run there), made NotReady,
// unreachable, pressured or cordoned through the sandbox's node
// annotations; the HPAs run under the sandbox's real
// kube-controller-manager (the HPA scenarios on metrics are in
// hpa_e2e_test.go). A real planner on the same bus plans each incident,
// so the tests check the plan kind too.

const (
	e2eNodeGrace = 5 * time.Second
	e2eHPAGrace  = 5 * time.Second
)

// startNodeWatcher runs a watcher of the whole cluster (nodes are
// watched only then) that analyses the pods of the test's namespace only
// (policy.include_namespaces), with short node graces. It runs as a user
// of its own, "kaar-watcher-<namespace>" (the admin impersonates it), with
// cluster-wide read access to what it watches for the test's duration (a
// ClusterRole named after the namespace): granting the shared kaar-watcher
// user cluster-wide rights would change what every other test running
// beside it sees that user may do.
func (h *harness) startNodeWatcher(t *testing.T, grace, cordonedAfter time.Duration) {
	t.Helper()
	ctx := ctx30(t)
	name := "kaar-watcher-" + h.ns
	rc := rest.CopyConfig(sandbox.ForTest(t).RESTConfig())
	rc.Impersonate = rest.ImpersonationConfig{UserName: name}
	watcher, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	h.watcher, h.watcherRC = watcher, rc
	read := []string{"get", "list", "watch"}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "events", "services", "nodes"}, Verbs: read},
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets", "deployments", "statefulsets", "daemonsets"}, Verbs: read},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
		{APIGroups: []string{"autoscaling"}, Resources: []string{"horizontalpodautoscalers"}, Verbs: read},
	}}
	if _, err := h.admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}}}
	if _, err := h.admin.RbacV1().ClusterRoleBindings().Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = h.admin.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{})
		_ = h.admin.RbacV1().ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{})
	})
	// The authorizer sees new bindings through its informers.
	waitFor(t, time.Minute, "the watcher's user to list nodes and pods cluster-wide", func() (bool, string) {
		_, err := h.watcher.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			_, err = h.watcher.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1})
		}
		return err == nil, fmt.Sprint(err)
	})
	more := h.configure // a test's own settings (warnings) apply too
	h.configure = func(c *Config) {
		c.Namespace, c.IncludeNamespaces = "", []string{h.ns}
		c.Nodes = NodeOptions{Grace: grace, CordonedAfter: cordonedAfter}
		if more != nil {
			more(c)
		}
	}
	h.startWatcher(t)
}

// addNode adds the test's own kwok node and waits until it is Ready; at
// cleanup its pods are removed and it is deleted.
func (h *harness) addNode(t *testing.T) string {
	t.Helper()
	name := h.ns + "-node"
	if _, err := sandbox.AddNode(ctx30(t), h.admin, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = h.admin.AppsV1().Deployments(h.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = h.admin.CoreV1().Pods(h.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}, metav1.ListOptions{})
		_ = h.admin.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	})
	waitFor(t, time.Minute, "node "+name+" Ready", func() (bool, string) {
		n, err := h.admin.CoreV1().Nodes().Get(ctx30(t), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		c := nodeCondition(n, corev1.NodeReady)
		return c != nil && c.Status == corev1.ConditionTrue, fmt.Sprintf("%+v", n.Status.Conditions)
	})
	return name
}

// pinned is testDeployment with its pods on node (selected by hostname,
// tolerating the extra node's taint).
func pinned(name string, replicas int32, node string) *appsv1.Deployment {
	d := testDeployment(name, replicas, nil, corev1.Container{Name: "app", Image: "nginx:1.27"})
	d.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
	d.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: sandbox.TaintExtraNode, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	return d
}

// annotateNode sets (or, with value "", removes) a node annotation.
func (h *harness) annotateNode(t *testing.T, node, key, value string) {
	t.Helper()
	v := "null"
	if value != "" {
		v = fmt.Sprintf("%q", value)
	}
	h.patchNode(t, node, fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, key, v))
}

func (h *harness) patchNode(t *testing.T, node, patch string) {
	t.Helper()
	if _, err := h.admin.CoreV1().Nodes().Patch(ctx30(t), node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// startPlanner runs a real planner on the harness's bus (as the sandbox
// admin: the planner's own RBAC is tested in its package) and returns the
// plans bucket.
func (h *harness) startPlanner(t *testing.T) *bus.PlanStore {
	t.Helper()
	c := config.Default()
	c.Kubernetes.ClusterName = testCluster
	signer, err := events.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := planner.New(planner.ConfigFrom(c), planner.Deps{NATS: h.nc, Kube: h.admin, Logger: log, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("planner did not stop within 30s")
		}
	})
	select {
	case <-p.Ready():
	case err := <-done:
		t.Fatalf("planner stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("planner not ready after 30s")
	}
	js, err := jetstream.New(h.nc)
	if err != nil {
		t.Fatal(err)
	}
	store, err := bus.OpenPlanStore(ctx30(t), js)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// waitPlan waits for a plan of incident id whose type is typ.
func waitPlan(t *testing.T, store *bus.PlanStore, id string, typ events.IssueType) events.Plan {
	t.Helper()
	var found events.Plan
	waitFor(t, time.Minute, "a plan of incident "+id, func() (bool, string) {
		plans, err := store.List(ctx30(t))
		if err != nil {
			return false, err.Error()
		}
		for _, p := range plans {
			if p.Plan.IncidentID == id && p.Plan.Type == typ {
				found = p.Plan
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d plans", len(plans))
	})
	return found
}

func nodeIncidentID(node string, typ events.IssueType) string {
	return events.IncidentID(testCluster, events.ClusterScopeNamespace, kindNode, node, "", typ)
}

// checkNodePlan: a diagnostic plan on the Node that describes it and
// lists its pods.
func checkNodePlan(t *testing.T, p events.Plan, node string) {
	t.Helper()
	var cmds []string
	for _, s := range p.Steps {
		cmds = append(cmds, s.Kubectl)
	}
	if !p.DiagnosticOnly || p.Target.Kind != kindNode || p.Target.Name != node || p.Namespace != events.ClusterScopeNamespace ||
		!slices.Contains(cmds, "kubectl describe node "+node) ||
		!slices.Contains(cmds, "kubectl get pods --all-namespaces --field-selector spec.nodeName="+node+" -o wide") {
		t.Errorf("plan: diagnostic %t, target %+v, namespace %s, commands %q", p.DiagnosticOnly, p.Target, p.Namespace, cmds)
	}
}

func TestNodeNotReadyIsAnIncidentNamingItsWorkloadsUntilItRecovers(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	node := h.addNode(t)
	h.create(t, pinned("web", 2, node))
	h.waitRolledOut(t, "web", 2)
	h.startNodeWatcher(t, e2eNodeGrace, time.Hour)
	store := h.startPlanner(t)

	h.annotateNode(t, node, sandbox.AnnotationNodeReady, "False")
	id := nodeIncidentID(node, events.IssueNodeNotReady)
	in := h.waitEvent(t, 2*time.Minute, id, events.TransitionDetected).event.Incident
	if in.Owner.Kind != kindNode || in.Owner.Name != node || in.Owner.Namespace != "" || in.Namespace != events.ClusterScopeNamespace ||
		in.Reason != "not_ready" || in.PodCount != 2 || in.Severity != events.SeverityHigh ||
		!strings.Contains(in.Message, "has been NotReady since") || !strings.Contains(in.Message, "KubeletNotReady: container runtime network not ready") ||
		!strings.Contains(in.Message, "2 pods on it: deployment "+h.ns+"/web (2 pods)") {
		t.Errorf("incident = %+v", in)
	}
	checkNodePlan(t, waitPlan(t, store, id, events.IssueNodeNotReady), node)

	h.annotateNode(t, node, sandbox.AnnotationNodeReady, "")
	h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

func TestUnreachableNodeIsNodeNotReady(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	node := h.addNode(t)
	h.create(t, pinned("api", 1, node))
	h.waitRolledOut(t, "api", 1)
	h.startNodeWatcher(t, e2eNodeGrace, time.Hour)
	store := h.startPlanner(t)

	h.annotateNode(t, node, sandbox.AnnotationNodeReady, "Unknown")
	id := nodeIncidentID(node, events.IssueNodeNotReady)
	in := h.waitEvent(t, 2*time.Minute, id, events.TransitionDetected).event.Incident
	if in.Reason != "node_unreachable" || in.Owner.Name != node || in.PodCount != 1 ||
		!strings.Contains(in.Message, "unreachable (Ready Unknown)") || !strings.Contains(in.Message, "Kubelet stopped posting node status.") ||
		!strings.Contains(in.Message, "deployment "+h.ns+"/api (1 pod)") {
		t.Errorf("incident = %+v", in)
	}
	checkNodePlan(t, waitPlan(t, store, id, events.IssueNodeNotReady), node)
	// Unknown pressure conditions of an unreachable node are no pressure.
	pressure := nodeIncidentID(node, events.IssueNodePressure)
	h.annotateNode(t, node, sandbox.AnnotationNodeReady, "")
	h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
	if n := count(h.events(t), pressure, events.TransitionDetected); n != 0 {
		t.Errorf("NodePressure detected %d times on an unreachable node", n)
	}
}

func TestNodeUnderMemoryPressureIsNodePressure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	node := h.addNode(t)
	h.create(t, pinned("cache", 1, node))
	h.waitRolledOut(t, "cache", 1)
	h.startNodeWatcher(t, e2eNodeGrace, time.Hour)
	store := h.startPlanner(t)

	h.annotateNode(t, node, sandbox.AnnotationNodePressure, "memory")
	id := nodeIncidentID(node, events.IssueNodePressure)
	in := h.waitEvent(t, 2*time.Minute, id, events.TransitionDetected).event.Incident
	if in.Reason != "memory_pressure" || in.Owner.Name != node || in.Severity != events.SeverityMedium ||
		!strings.Contains(in.Message, "under memory since") || !strings.Contains(in.Message, "KubeletHasInsufficientMemory") ||
		!strings.Contains(in.Message, "deployment "+h.ns+"/cache (1 pod)") {
		t.Errorf("incident = %+v", in)
	}
	p := waitPlan(t, store, id, events.IssueNodePressure)
	checkNodePlan(t, p, node)
	if !slices.ContainsFunc(p.Steps, func(s events.Step) bool { return strings.Contains(s.Title, "is under memory pressure since") }) {
		t.Errorf("no step quotes the pressure: %+v", p.Steps)
	}
	h.annotateNode(t, node, sandbox.AnnotationNodePressure, "")
	h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
}

// A cordoned node is a low-severity incident while it may be drained on
// purpose; left cordoned past node_cordoned_after with a pod that cannot
// be placed anywhere else, it becomes cordoned_too_long (medium).
func TestCordonedNodeWhoseWorkloadCannotMoveBecomesMedium(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	node := h.addNode(t)
	h.create(t, pinned("batch", 1, node))
	h.waitRolledOut(t, "batch", 1)
	h.startNodeWatcher(t, e2eNodeGrace, 20*time.Second)
	store := h.startPlanner(t)

	h.patchNode(t, node, `{"spec":{"unschedulable":true}}`)
	id := nodeIncidentID(node, events.IssueNodeCordoned)
	in := h.waitEvent(t, 2*time.Minute, id, events.TransitionDetected).event.Incident
	if in.Reason != "cordoned" || in.Severity != events.SeverityLow || in.PodCount != 1 ||
		!strings.Contains(in.Message, "is cordoned (since") || !strings.Contains(in.Message, "deployment "+h.ns+"/batch (1 pod)") {
		t.Errorf("incident = %+v", in)
	}
	// Its pod goes (a drain): the replacement can run nowhere else.
	for _, p := range h.podsOn(t, node) {
		if err := h.admin.CoreV1().Pods(h.ns).Delete(ctx30(t), p, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
			t.Fatal(err)
		}
	}
	in = h.waitIncident(t, 2*time.Minute, id, "cordoned_too_long", func(in events.Incident) bool {
		return in.Reason == "cordoned_too_long"
	}).event.Incident
	if in.Severity != events.SeverityMedium || in.PodCount != 0 || !strings.Contains(in.Message, "and its workloads have not moved") ||
		!strings.Contains(in.Message, "1 pod Pending for want of a schedulable node") {
		t.Errorf("incident = %+v", in)
	}
	p := waitPlan(t, store, id, events.IssueNodeCordoned)
	checkNodePlan(t, p, node)
	if !slices.ContainsFunc(p.Steps, func(s events.Step) bool { return s.Kubectl == "kubectl uncordon "+node && !s.Mutating }) {
		t.Errorf("no uncordon step for a person: %+v", p.Steps)
	}
	h.patchNode(t, node, `{"spec":{"unschedulable":false}}`)
	h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
	h.waitRolledOut(t, "batch", 1) // the Pending pod found its node
}

func (h *harness) podsOn(t *testing.T, node string) []string {
	t.Helper()
	pods, err := h.admin.CoreV1().Pods(h.ns).List(ctx30(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pods.Items {
		if p.Spec.NodeName == node {
			out = append(out, p.Name)
		}
	}
	return out
}

// Controls: a healthy extra node running pods, and a node whose NotReady
// spell ends within the grace, are no incident.
func TestHealthyAndBrieflyNotReadyNodesAreNoIncident(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	node := h.addNode(t)
	h.create(t, pinned("steady", 2, node))
	h.waitRolledOut(t, "steady", 2)
	// A grace longer than the blip below.
	h.startNodeWatcher(t, 2*time.Minute, time.Hour)
	quiet()
	h.annotateNode(t, node, sandbox.AnnotationNodeReady, "False")
	waitFor(t, time.Minute, "node "+node+" NotReady", func() (bool, string) {
		n, err := h.admin.CoreV1().Nodes().Get(ctx30(t), node, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		c := nodeCondition(n, corev1.NodeReady)
		return c != nil && c.Status == corev1.ConditionFalse, ""
	})
	h.annotateNode(t, node, sandbox.AnnotationNodeReady, "")
	waitFor(t, time.Minute, "node "+node+" Ready again", func() (bool, string) {
		n, err := h.admin.CoreV1().Nodes().Get(ctx30(t), node, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		c := nodeCondition(n, corev1.NodeReady)
		return c != nil && c.Status == corev1.ConditionTrue, ""
	})
	quiet()
	for _, r := range h.events(t) {
		if r.event.Incident.Owner.Kind == kindNode && r.event.Incident.Owner.Name == node {
			t.Errorf("incident on the control node: %+v", r.event)
		}
	}
}

// Control: an HPA whose target is scaled to zero on purpose (the
// controller disables scaling) is no incident.
func TestHPAOfATargetScaledToZeroIsNoIncident(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.configure = func(c *Config) { c.HPAs = HPAOptions{Grace: e2eHPAGrace} }
	h.startWatcher(t)
	h.create(t, testDeployment("idle", 0, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}))
	h.createHPA(t, "idle", "idle", 1, 3)
	waitFor(t, 2*time.Minute, "the HPA controller to disable scaling", func() (bool, string) {
		o, err := h.admin.AutoscalingV2().HorizontalPodAutoscalers(h.ns).Get(ctx30(t), "idle", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		c := hpaCondition(o, autoscalingv2.ScalingActive)
		return c != nil && c.Reason == hpaReasonScalingDisabled, fmt.Sprintf("%+v", o.Status.Conditions)
	})
	time.Sleep(e2eHPAGrace)
	quiet()
	if all := h.events(t); len(all) > 0 {
		t.Errorf("incidents of a scaled-to-zero HPA: %s", summary(all))
	}
}

// createHPA scales Deployment target between min and max on 50% cpu.
func (h *harness) createHPA(t *testing.T, name, target string, minReplicas, maxReplicas int32) {
	t.Helper()
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: target},
			MinReplicas:    &minReplicas, MaxReplicas: maxReplicas,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: new(int32(50))}}}}}}
	if _, err := h.admin.AutoscalingV2().HorizontalPodAutoscalers(h.ns).Create(ctx30(t), hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
