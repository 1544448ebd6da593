package watcher

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Configuration risks on the sandbox: real Deployments, StatefulSets,
// LimitRanges and PodDisruptionBudgets (the disruption controller computes
// the budgets' status), a watcher with warnings on, as the kaar-watcher
// user with the chart's rights on PodDisruptionBudgets and LimitRanges.

// startRiskWatcher grants the watcher what the chart grants for the
// configuration risks, waits until the grant is in force (the watcher
// lists them once at start to know which warnings it can give), and
// starts a watcher with warnings on.
func (h *harness) startRiskWatcher(t *testing.T) {
	t.Helper()
	ctx := ctx30(t)
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "kaar-watcher-risks"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"policy"}, Resources: []string{"poddisruptionbudgets"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"limitranges"}, Verbs: []string{"list", "watch"}}}}
	if _, err := h.admin.RbacV1().Roles(h.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.RbacV1().RoleBindings(h.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kaar-watcher-risks"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "kaar-watcher-risks"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "kaar-watcher"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the watcher's rights on PodDisruptionBudgets and LimitRanges", func() (bool, string) {
		_, err1 := h.watcher.PolicyV1().PodDisruptionBudgets(h.ns).List(ctx30(t), metav1.ListOptions{Limit: 1})
		_, err2 := h.watcher.CoreV1().LimitRanges(h.ns).List(ctx30(t), metav1.ListOptions{Limit: 1})
		return err1 == nil && err2 == nil, fmt.Sprint(err1, err2)
	})
	h.configure = func(c *Config) { c.Warnings.Enabled = true }
	h.startWatcher(t)
}

func (h *harness) warningID(kind, name, container string, typ events.IssueType) string {
	return events.IncidentID(testCluster, h.ns, kind, name, container, typ)
}

// waitWarning waits for the warning id and checks what every warning
// says: its type, owner, container, reason, severity and message.
func (h *harness) waitWarning(t *testing.T, kind, name, container string, typ events.IssueType, reason, message string) events.Incident {
	t.Helper()
	id := h.warningID(kind, name, container, typ)
	in := h.waitIncident(t, 2*time.Minute, id, reason, func(in events.Incident) bool { return in.Reason == reason }).event.Incident
	if in.Type != typ || in.Owner.Kind != kind || in.Owner.Name != name || in.Container != container || in.Severity != events.SeverityWarning {
		t.Errorf("warning = %s %s/%s container %q severity %s, want %s %s/%s container %q severity warning",
			in.Type, in.Owner.Kind, in.Owner.Name, in.Container, in.Severity, typ, kind, name, container)
	}
	if in.Message != message {
		t.Errorf("%s message\n got %q\nwant %q", id, in.Message, message)
	}
	return in
}

// noWarningsOn fails if any incident of these types was announced on
// owner kind/name.
func (h *harness) noWarningsOn(t *testing.T, kind, name string, types ...events.IssueType) {
	t.Helper()
	for _, r := range h.events(t) {
		if in := r.event.Incident; in.Owner.Kind == kind && in.Owner.Name == name && slices.Contains(types, in.Type) {
			t.Errorf("%s %s was announced on %s %s: %s (%s)", r.event.Transition, in.Type, kind, name, in.Message, in.Reason)
		}
	}
}

// safeE2EContainer is a container with everything the rules look for.
func safeE2EContainer(name string) corev1.Container {
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(80)}}}
	return corev1.Container{Name: name, Image: "nginx:1.27", Ports: []corev1.ContainerPort{{ContainerPort: 80}},
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
			Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi"), corev1.ResourceCPU: resource.MustParse("50m")}},
		ReadinessProbe: probe, LivenessProbe: probe}
}

func hostnameSpread(app string, when corev1.UnsatisfiableConstraintAction) []corev1.TopologySpreadConstraint {
	return []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: when,
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}}}
}

func TestTemplateRisksAreWarnedPerContainerUntilTheTemplateIsFixed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startRiskWatcher(t)
	d := testDeployment("web", 1, nil, corev1.Container{Name: "app", Image: "nginx", Ports: []corev1.ContainerPort{{ContainerPort: 80}}})
	d.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "busybox:latest", Resources: corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}}}}
	h.create(t, d)
	h.createStatefulSet(t, "db", 1) // container db, postgres:17, no resources, no port, no probe
	agent := safeE2EContainer("agent")
	agent.Image = "fluent/fluent-bit"
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "logs"}, Spec: appsv1.DaemonSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "logs"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "logs"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{agent}}}}}
	if _, err := h.admin.AppsV1().DaemonSets(h.ns).Create(ctx30(t), ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	in := h.waitWarning(t, "Deployment", "web", "app", events.IssueMissingResources, "no_memory_limit",
		"deployment web: container app has no memory limit (it may use all of its node's memory), nor a memory request nor a cpu request")
	if in.Warning != nil {
		t.Errorf("evidence %+v for a container without any number", in.Warning)
	}
	h.waitWarning(t, "Deployment", "web", "app", events.IssueMissingProbes, "no_probes",
		"deployment web: container app has neither a readiness nor a liveness probe (Services send it traffic as soon as it starts, ready or not, and a process that hangs is never restarted)")
	h.waitWarning(t, "Deployment", "web", "app", events.IssueMutableImageTag, "no_tag",
		"deployment web: container app runs image nginx with no tag, which pulls latest: a restart or a new node may run a different image than the one running now (pin a version or a digest)")
	h.waitWarning(t, "Deployment", "web", "migrate", events.IssueMutableImageTag, "latest_tag",
		"deployment web: init container migrate runs image busybox:latest, a tag that moves: a restart or a new node may run a different image than the one running now (pin a version or a digest)")
	h.waitWarning(t, "StatefulSet", "db", "db", events.IssueMissingResources, "no_memory_limit",
		"statefulset db: container db has no memory limit (it may use all of its node's memory), nor a memory request nor a cpu request")
	h.waitWarning(t, "StatefulSet", "db", "db", events.IssueMissingProbes, "no_liveness_probe",
		"statefulset db: container db has no liveness probe (a process that hangs without exiting is never restarted; it declares no port, so no readiness probe is expected)")
	h.waitWarning(t, "DaemonSet", "logs", "agent", events.IssueMutableImageTag, "no_tag",
		"daemonset logs: container agent runs image fluent/fluent-bit with no tag, which pulls latest: a restart or a new node may run a different image than the one running now (pin a version or a digest)")
	h.noWarningsOn(t, "DaemonSet", "logs", events.IssueMissingResources, events.IssueMissingProbes, events.IssueSingleNodeRisk)
	// The init container has its limit and request: no MissingResources,
	// and init containers are not asked for probes.
	h.noWarningsOn(t, "Deployment", "web", events.IssueSingleNodeRisk, events.IssuePDBBlocksDrain)
	for _, r := range h.events(t) {
		if in := r.event.Incident; in.Container == "migrate" && in.Type != events.IssueMutableImageTag {
			t.Errorf("init container warned of %s: %s", in.Type, in.Message)
		}
	}

	// The template declares what was missing: every warning resolves.
	patch := `{"spec":{"template":{"spec":{"initContainers":[{"name":"migrate","image":"busybox:1.36"}],"containers":[{"name":"app","image":"nginx:1.27",
		"resources":{"limits":{"memory":"128Mi"},"requests":{"memory":"64Mi","cpu":"50m"}},
		"readinessProbe":{"httpGet":{"path":"/healthz","port":80}},"livenessProbe":{"httpGet":{"path":"/healthz","port":80}}}]}}}}`
	if _, err := h.admin.AppsV1().Deployments(h.ns).Patch(ctx30(t), "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		container string
		typ       events.IssueType
	}{{"app", events.IssueMissingResources}, {"app", events.IssueMissingProbes}, {"app", events.IssueMutableImageTag}, {"migrate", events.IssueMutableImageTag}} {
		id := h.warningID("Deployment", "web", w.container, w.typ)
		h.waitEvent(t, time.Minute, id, events.TransitionResolved)
		detectedOnce(t, h.events(t), id)
	}
}

// A template with limits, requests, probes, a pinned image and a
// hostname spread, and a budget that allows a disruption, have none of
// the configuration risks; a neighbour with a latest tag shows the
// watcher evaluates the namespace.
func TestASafeTemplateAndARelaxedBudgetHaveNoConfigurationWarnings(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startRiskWatcher(t)
	safe := testDeployment("safe", 2, nil, safeE2EContainer("app"))
	safe.Spec.Template.Spec.TopologySpreadConstraints = hostnameSpread("safe", corev1.DoNotSchedule)
	h.create(t, safe)
	single := testDeployment("single", 1, nil, safeE2EContainer("app"))
	h.create(t, single)
	h.createPDB(t, "single", &policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr(intstr.FromInt32(1))})
	h.waitRolledOut(t, "safe", 2)
	h.waitRolledOut(t, "single", 1)
	h.waitPDB(t, "single", func(st policyv1.PodDisruptionBudgetStatus) bool {
		return st.CurrentHealthy == 1 && st.DisruptionsAllowed == 1
	})

	canary := testDeployment("canary", 1, nil, safeE2EContainer("app"))
	canary.Spec.Template.Spec.Containers[0].Image = "nginx:latest"
	h.create(t, canary)
	h.waitWarning(t, "Deployment", "canary", "app", events.IssueMutableImageTag, "latest_tag",
		"deployment canary: container app runs image nginx:latest, a tag that moves: a restart or a new node may run a different image than the one running now (pin a version or a digest)")
	quiet()
	all := []events.IssueType{events.IssueMissingResources, events.IssueMissingProbes, events.IssueMutableImageTag, events.IssueSingleNodeRisk}
	h.noWarningsOn(t, "Deployment", "safe", all...)
	h.noWarningsOn(t, "Deployment", "single", all...)
	h.noWarningsOn(t, "PodDisruptionBudget", "single", events.IssuePDBBlocksDrain)
	h.noWarningsOn(t, "Deployment", "canary", events.IssueMissingResources, events.IssueMissingProbes, events.IssueSingleNodeRisk)
}

// A container without a memory limit or requests in a namespace whose
// LimitRange fills them in is not missing them.
func TestLimitRangeDefaultsAreNotMissingResources(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "defaults"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type:           corev1.LimitTypeContainer,
		Default:        corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}}
	if _, err := h.admin.CoreV1().LimitRanges(h.ns).Create(ctx30(t), lr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.startRiskWatcher(t)
	c := safeE2EContainer("app")
	c.Resources = corev1.ResourceRequirements{}
	c.LivenessProbe = nil // shows the Deployment is evaluated
	h.create(t, testDeployment("defaulted", 1, nil, c))
	h.waitWarning(t, "Deployment", "defaulted", "app", events.IssueMissingProbes, "no_liveness_probe",
		"deployment defaulted: container app has no liveness probe (a process that hangs without exiting is never restarted)")
	// The pods have what the LimitRange filled in.
	waitFor(t, time.Minute, "a pod of defaulted", func() (bool, string) {
		pods, err := h.admin.CoreV1().Pods(h.ns).List(ctx30(t), metav1.ListOptions{LabelSelector: "app=defaulted"})
		if err != nil || len(pods.Items) == 0 {
			return false, fmt.Sprint(err)
		}
		r := pods.Items[0].Spec.Containers[0].Resources
		if r.Limits.Memory().String() != "256Mi" || r.Requests.Memory().String() != "256Mi" || r.Requests.Cpu().String() != "100m" {
			t.Fatalf("LimitRange admission set %+v, want limit and request 256Mi, cpu request 100m", r)
		}
		return true, ""
	})
	quiet()
	h.noWarningsOn(t, "Deployment", "defaulted", events.IssueMissingResources)

	// Without the LimitRange, the next evaluation finds the limit missing.
	if err := h.admin.CoreV1().LimitRanges(h.ns).Delete(ctx30(t), "defaults", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitWarning(t, "Deployment", "defaulted", "app", events.IssueMissingResources, "no_memory_limit",
		"deployment defaulted: container app has no memory limit (it may use all of its node's memory), nor a memory request nor a cpu request")
}

func TestMultiReplicaDeploymentsThatCanLandOnOneNodeAreSingleNodeRisks(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startRiskWatcher(t)
	node := h.schedulableNode(t)
	h.create(t, testDeployment("spreadless", 2, nil, safeE2EContainer("app")))
	pinned := testDeployment("pinned", 2, nil, safeE2EContainer("app"))
	pinned.Spec.Template.Spec.TopologySpreadConstraints = hostnameSpread("pinned", corev1.ScheduleAnyway)
	pinned.Spec.Template.Spec.NodeSelector = map[string]string{corev1.LabelHostname: node}
	h.create(t, pinned)
	spread := testDeployment("spread", 2, nil, safeE2EContainer("app"))
	spread.Spec.Template.Spec.TopologySpreadConstraints = hostnameSpread("spread", corev1.DoNotSchedule)
	h.create(t, spread)

	in := h.waitWarning(t, "Deployment", "spreadless", "", events.IssueSingleNodeRisk, "no_spread",
		"deployment spreadless: its 2 replicas may all land on one node: its pod template has no topology spread constraint and no pod anti-affinity on kubernetes.io/hostname (one node failure or drain could take them all down)")
	if in.Warning == nil || len(in.Warning.Measurements) != 1 || in.Warning.Measurements[0] != (events.Measurement{Name: "replicas", Value: 2, Unit: events.UnitCount}) {
		t.Errorf("evidence = %+v, want replicas 2", in.Warning)
	}
	in = h.waitWarning(t, "Deployment", "pinned", "", events.IssueSingleNodeRisk, "all_on_one_node",
		fmt.Sprintf("deployment pinned: all 2 of its ready pods run on node %s (of 2 replicas): one node failure or drain takes them all down", node))
	if in.PodCount != 2 || in.Warning == nil || len(in.Warning.Measurements) != 3 ||
		in.Warning.Measurements[2] != (events.Measurement{Name: "nodes", Value: 1, Unit: events.UnitCount}) {
		t.Errorf("pod count %d, evidence %+v: want 2 pods on 1 node", in.PodCount, in.Warning)
	}
	h.waitRolledOut(t, "spread", 2)
	if nodes := h.nodesOf(t, "spread"); len(nodes) != 2 {
		t.Fatalf("spread's pods are on %v, want two nodes", nodes)
	}
	quiet()
	h.noWarningsOn(t, "Deployment", "spread", events.IssueSingleNodeRisk)

	// Unpinned and spread for real: the pods move apart, the warning
	// resolves.
	patch := `{"spec":{"template":{"spec":{"nodeSelector":null,"topologySpreadConstraints":[{"maxSkew":1,"topologyKey":"kubernetes.io/hostname",
		"whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"app":"pinned"}}}]}}}}`
	if _, err := h.admin.AppsV1().Deployments(h.ns).Patch(ctx30(t), "pinned", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	id := h.warningID("Deployment", "pinned", "", events.IssueSingleNodeRisk)
	h.waitEvent(t, 2*time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

func TestPDBAllowingNoDisruptionBlocksDrainUntilRelaxed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startRiskWatcher(t)
	h.create(t, testDeployment("api", 1, nil, safeE2EContainer("app")))
	h.createPDB(t, "api", &policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr(intstr.FromInt32(1))})

	in := h.waitWarning(t, "PodDisruptionBudget", "api", "", events.IssuePDBBlocksDrain, "zero_disruptions_allowed",
		"poddisruptionbudget api allows 0 disruptions while its pods are all healthy (1 of 1; minAvailable 1, so 1 must stay healthy): every node drain that would evict one of them stalls until the budget or the replica count changes")
	if in.PodCount != 1 || in.Owner.APIVersion != "policy/v1" || in.Warning == nil || !slices.Equal(measurementNames(in.Warning), []string{
		"disruptions_allowed", "current_healthy", "desired_healthy", "expected_pods"}) || in.Warning.Measurements[1].Value != 1 || in.Warning.Measurements[1].Limit != 1 {
		t.Errorf("incident = %+v, evidence %+v", in, in.Warning)
	}
	patch := `{"spec":{"minAvailable":null,"maxUnavailable":1}}`
	if _, err := h.admin.PolicyV1().PodDisruptionBudgets(h.ns).Patch(ctx30(t), "api", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	id := h.warningID("PodDisruptionBudget", "api", "", events.IssuePDBBlocksDrain)
	h.waitEvent(t, time.Minute, id, events.TransitionResolved)
	detectedOnce(t, h.events(t), id)
}

func measurementNames(w *events.WarningEvidence) []string {
	var out []string
	for _, m := range w.Measurements {
		out = append(out, m.Name)
	}
	return out
}

func (h *harness) createPDB(t *testing.T, app string, spec *policyv1.PodDisruptionBudgetSpec) {
	t.Helper()
	spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: app}, Spec: *spec}
	if _, err := h.admin.PolicyV1().PodDisruptionBudgets(h.ns).Create(ctx30(t), pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) waitPDB(t *testing.T, name string, cond func(policyv1.PodDisruptionBudgetStatus) bool) {
	t.Helper()
	waitFor(t, time.Minute, "the status of poddisruptionbudget "+name, func() (bool, string) {
		p, err := h.admin.PolicyV1().PodDisruptionBudgets(h.ns).Get(ctx30(t), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return cond(p.Status), fmt.Sprintf("%+v", p.Status)
	})
}

// schedulableNode is a Ready kwok node of the sandbox without taints that
// accepts pods (other tests add, taint and cordon nodes of their own).
func (h *harness) schedulableNode(t *testing.T) string {
	t.Helper()
	nodes, err := h.admin.CoreV1().Nodes().List(ctx30(t), metav1.ListOptions{LabelSelector: "type=kwok"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes.Items {
		ready := slices.ContainsFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool {
			return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
		})
		if ready && !n.Spec.Unschedulable && len(n.Spec.Taints) == 0 && strings.HasPrefix(n.Name, "kwok-node-") {
			names = append(names, n.Name)
		}
	}
	if len(names) < 2 {
		t.Fatalf("the sandbox has %d schedulable kwok nodes (%v), want at least 2", len(names), names)
	}
	slices.Sort(names)
	return names[0]
}

// nodesOf lists the nodes of the running pods of Deployment app.
func (h *harness) nodesOf(t *testing.T, app string) []string {
	t.Helper()
	pods, err := h.admin.CoreV1().Pods(h.ns).List(ctx30(t), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Spec.NodeName != "" && !slices.Contains(out, p.Spec.NodeName) {
			out = append(out, p.Spec.NodeName)
		}
	}
	return out
}
