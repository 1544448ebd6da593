package planner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The -update flag (declared in untrusted_test.go) rewrites
// testdata/plans/*.json from the planner's output.

// planCase is one plan the planner makes: its input (a recorded shop
// fixture or a synthetic workload, the strategies, and edits to what
// gather read) and what the plan must say. TestPlanGoldens compares the
// whole plan with testdata/plans/<name>.json; TestStepBuilders checks the
// expectations, which say why the golden is right and survive -update.
type planCase struct {
	name string // testdata/plans/<name>.json
	id   int    // the plan id's last digits (see planID)

	fixture   string // testdata/shop/<fixture>.json, or ""
	workload  string // a synthetic workload of syntheticWorkloads, or ""
	typ       events.IssueType
	container string
	// strategies for typ; nil keeps the default configuration's.
	strategies []Strategy
	custom     map[string][]Strategy
	edit       inputEdit

	expect expect
}

// inputEdit changes the configuration or what gather read, as data.
type inputEdit struct {
	noHistory           bool   // no ReplicaSets (no rollout history)
	noReadyRevision     bool   // no ReplicaSet has ready replicas
	memoryLimit         string // the first container's memory limit; its memory request is removed
	cpuRequest          string // the first container's CPU request
	nodes               bool   // the recorded nodes (testdata/shop/nodes.json)
	schedulerMessage    string // the failing pod is unschedulable with this message (implies nodes)
	taintNodes          bool   // taint the recorded nodes (see taintAll)
	nodeSelector        map[string]string
	rev1Tolerations     []corev1.Toleration
	maxPods             int
	protectedNamespaces []string
	ownerLabels         map[string]string
	ownerAnnotations    map[string]string
	gitOpsManaged       string
	rolloutStuck        bool // the Deployment is past its progress deadline (see stuck)
}

// expect is what a plan must say, beyond its golden file.
type expect struct {
	actions        []events.ActionType
	diagnosticOnly bool
	risk           events.RiskLevel // "" = not checked
	notes          []string         // each is a substring of some note
	summary        []string         // each is a substring of the summary
	fields         []fieldCheck
}

// fieldCheck checks one value of the plan's JSON, found by its RFC 6901
// pointer ("/steps/1/params/revision").
type fieldCheck struct {
	pointer  string
	equals   any    // a string, or a number compared as JSON
	contains string // a substring of a string value
	length   int    // the length of an array, when > 0
	absent   bool
}

func eq(pointer string, v any) fieldCheck { return fieldCheck{pointer: pointer, equals: v} }
func has(pointer, sub string) fieldCheck  { return fieldCheck{pointer: pointer, contains: sub} }
func length(pointer string, n int) fieldCheck {
	return fieldCheck{pointer: pointer, length: n}
}
func absent(pointer string) fieldCheck { return fieldCheck{pointer: pointer, absent: true} }

var (
	batchToleration = map[string]string{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}
	diagnosticOnly  = []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic}
)

// planCases cover every action family, every target kind the executor
// changes, and the diagnostic-only plans.
var planCases = []planCase{
	// rollout history: rollback and set_image.
	{name: "deployment-rollback", id: 1, fixture: "frontend", typ: events.IssueImagePullBackOff, container: "app",
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionRollback}, risk: events.RiskMedium,
			summary: []string{"roll back to revision 1"},
			fields: []fieldCheck{
				eq("/steps/1/params/revision", "1"),
				eq("/steps/1/kubectl", "kubectl -n shop rollout undo deployment/frontend --to-revision=1"),
				length("/steps/1/patch", 2),
				eq("/steps/1/patch/1/op", "replace"), eq("/steps/1/patch/1/path", "/spec/template"),
				eq("/steps/1/patch/1/value/spec/containers/0/image", "nginx:1.27"),
				absent("/steps/1/patch/1/value/metadata/labels/" + labelPodTemplateHash),
				eq("/steps/0/params/image", "nginx:1.27-nonexistent"),
			}}},
	{name: "deployment-set-image", id: 2, fixture: "frontend", typ: events.IssueImagePullBackOff, container: "app",
		strategies: []Strategy{{Name: "check_image"}, {Name: "update_image"}},
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionSetImage},
			fields: []fieldCheck{
				eq("/steps/1/patch/1/path", "/spec/template/spec/containers/0/name"), eq("/steps/1/patch/1/value", "app"),
				eq("/steps/1/patch/2/path", "/spec/template/spec/containers/0/image"), eq("/steps/1/patch/2/value", "nginx:1.27"),
				eq("/steps/1/kubectl", "kubectl -n shop set image deployment/frontend app=nginx:1.27"),
			}}},
	{name: "deployment-set-image-parameter", id: 20, fixture: "frontend", typ: events.IssueImagePullBackOff, container: "app",
		strategies: []Strategy{{Name: "set_image", Params: map[string]string{"image": "nginx:1.28"}}},
		expect: expect{actions: []events.ActionType{events.ActionSetImage},
			fields: []fieldCheck{eq("/steps/0/params/image", "nginx:1.28")}}},
	{name: "deployment-crashloop-rollback", id: 21, fixture: "payments-api", typ: events.IssueCrashLoopBackOff, container: "app",
		expect: expect{actions: []events.ActionType{events.ActionCheckLogs, events.ActionRollback},
			fields: []fieldCheck{eq("/steps/0/target/kind", KindPod), has("/steps/0/kubectl", "--previous --tail=50")}}},

	// restart.
	{name: "deployment-rollout-restart", id: 3, fixture: "payments-api", typ: events.IssueCrashLoopBackOff, container: "app",
		edit: inputEdit{noHistory: true},
		expect: expect{actions: []events.ActionType{events.ActionCheckLogs, events.ActionRolloutRestart},
			notes: []string{"strategy rollback does not apply"},
			fields: []fieldCheck{
				eq("/steps/1/patch/1/op", "add"),
				eq("/steps/1/patch/1/path", "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt"),
				eq("/steps/1/patch/1/value", "2026-11-27T00:40:00Z"),
			}}},

	// memory.
	{name: "deployment-set-memory-limit-healthy-revision", id: 22, fixture: "recommender", typ: events.IssueOOMKilled, container: "app",
		// Revision 1 ran with 512Mi; revision 2 lowered it to 64Mi. The
		// request (64Mi) is doubled as usual.
		expect: expect{actions: []events.ActionType{events.ActionSetMemoryLimit},
			notes:  []string{"revision 1 ran healthy with a 512Mi limit"},
			fields: []fieldCheck{eq("/steps/0/params/memory", "512Mi"), eq("/steps/0/params/memory_request", "128Mi")}}},
	{name: "deployment-set-memory-limit", id: 4, fixture: "recommender", typ: events.IssueOOMKilled, container: "app",
		edit: inputEdit{noReadyRevision: true}, // doubles the limit and the request
		expect: expect{actions: []events.ActionType{events.ActionSetMemoryLimit},
			fields: []fieldCheck{
				length("/steps/0/patch", 4),
				eq("/steps/0/patch/2/path", "/spec/template/spec/containers/0/resources/limits/memory"), eq("/steps/0/patch/2/value", "128Mi"),
				eq("/steps/0/patch/3/path", "/spec/template/spec/containers/0/resources/requests/memory"), eq("/steps/0/patch/3/value", "128Mi"),
				eq("/steps/0/params/memory", "128Mi"), eq("/steps/0/risk", "low"),
				has("/steps/0/kubectl", "--limits=memory=128Mi --requests=memory=128Mi"),
			}}},
	{name: "deployment-set-memory-limit-capped", id: 23, fixture: "recommender", typ: events.IssueOOMKilled, container: "app",
		edit: inputEdit{memoryLimit: "3Gi"},
		expect: expect{actions: []events.ActionType{events.ActionSetMemoryLimit},
			notes:  []string{"capped at remediation.max_memory_limit"},
			fields: []fieldCheck{eq("/steps/0/params/memory", "4Gi")}}},
	{name: "deployment-memory-at-cap-diagnostic", id: 24, fixture: "recommender", typ: events.IssueOOMKilled, container: "app",
		edit:   inputEdit{memoryLimit: "4Gi"},
		expect: expect{actions: diagnosticOnly, diagnosticOnly: true, notes: []string{"already at remediation.max_memory_limit"}}},

	// cleanup: evicted pods.
	{name: "deployment-delete-evicted-pods", id: 5, fixture: "cache", typ: events.IssueEvicted,
		expect: expect{actions: []events.ActionType{events.ActionDeleteEvictedPods},
			fields: []fieldCheck{
				// Both are Failed/Evicted pods of the fixture.
				eq("/steps/0/params/pods", "cache-54757995bf-fnrrc,cache-54757995bf-h5clt"),
				eq("/steps/0/params/uids", "158eb905-09dc-4496-bf73-905c446e2478,73def8ba-bc7c-42a9-ae2c-0a6229851864"),
				eq("/steps/0/target/kind", KindDeployment),
			}}},
	{name: "deployment-evicted-over-max-pods-diagnostic", id: 25, fixture: "cache", typ: events.IssueEvicted,
		edit: inputEdit{maxPods: 1},
		expect: expect{actions: diagnosticOnly, diagnosticOnly: true,
			notes: []string{"refused: deployment/cache has 2 evicted pods, more than remediation.max_pods (1)"}}},

	// scheduling: requests, node selector, tolerations.
	{name: "deployment-set-resource-requests", id: 6, fixture: "analytics", typ: events.IssuePending,
		edit: inputEdit{nodes: true},
		expect: expect{actions: []events.ActionType{events.ActionSetResourceRequests, events.ActionDiagnostic},
			fields: []fieldCheck{
				eq("/steps/0/params/cpu", "8"), // half of a 16-CPU node
				eq("/steps/0/params/container", "app"),
				has("/steps/0/title", "from 64 to 8"),
			}}},
	{name: "deployment-pending-capacity-diagnostic", id: 26, fixture: "analytics", typ: events.IssuePending,
		edit:   inputEdit{nodes: true, cpuRequest: "12"},
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic}, diagnosticOnly: true, notes: []string{"short of capacity"}}},
	{name: "deployment-add-toleration", id: 7, fixture: "frontend", typ: events.IssuePending, container: "app",
		strategies: []Strategy{{Name: "add_toleration", Params: batchToleration}},
		edit:       inputEdit{schedulerMessage: taintMsg, taintNodes: true},
		expect: expect{actions: []events.ActionType{events.ActionAddToleration},
			fields: []fieldCheck{
				length("/steps/0/patch", 2), eq("/steps/0/patch/1/op", "add"), eq("/steps/0/patch/1/path", "/spec/template/spec/tolerations"),
				length("/steps/0/patch/1/value", 1),
				eq("/steps/0/patch/1/value/0/key", "dedicated"), eq("/steps/0/patch/1/value/0/value", "batch"),
				eq("/steps/0/patch/1/value/0/operator", "Equal"), eq("/steps/0/patch/1/value/0/effect", "NoSchedule"),
				has("/steps/0/title", "nodes kwok-node-0"), eq("/steps/0/risk", "medium"), length("/steps/0/undo_patch", 2),
				has("/steps/0/kubectl", "kubectl -n shop patch deployment/frontend --type=json -p '["),
			}}},
	{name: "deployment-add-toleration-last-healthy-revision", id: 27, fixture: "frontend", typ: events.IssuePending, container: "app",
		strategies: []Strategy{{Name: "add_toleration"}},
		edit: inputEdit{schedulerMessage: taintMsg, taintNodes: true,
			rev1Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}}},
		expect: expect{actions: []events.ActionType{events.ActionAddToleration},
			fields: []fieldCheck{eq("/steps/0/params/key", "dedicated"), eq("/steps/0/params/operator", "Exists"),
				has("/steps/0/title", "dedicated (any value)")}}},
	{name: "deployment-set-node-selector", id: 8, fixture: "frontend", typ: events.IssuePending, container: "app",
		strategies: []Strategy{{Name: "set_node_selector", Params: map[string]string{"topology.kubernetes.io/zone": "sandbox-b"}}},
		edit:       inputEdit{schedulerMessage: selectorMsg},
		expect: expect{actions: []events.ActionType{events.ActionSetNodeSelector},
			fields: []fieldCheck{eq("/steps/0/patch/1/op", "add"), eq("/steps/0/patch/1/path", "/spec/template/spec/nodeSelector"),
				has("/steps/0/title", "matches kwok-node-1")}}},
	{name: "deployment-set-node-selector-last-healthy-revision", id: 28, fixture: "frontend", typ: events.IssuePending, container: "app",
		strategies: []Strategy{{Name: "set_node_selector"}},
		edit:       inputEdit{schedulerMessage: selectorMsg, nodeSelector: map[string]string{"disk": "ssd"}},
		expect: expect{actions: []events.ActionType{events.ActionSetNodeSelector},
			fields: []fieldCheck{length("/steps/0/patch", 2), eq("/steps/0/patch/1/op", "remove"), eq("/steps/0/undo_patch/1/op", "add"),
				absent("/steps/0/params")}}},
	{name: "deployment-pending-taints-diagnostic", id: 29, fixture: "frontend", typ: events.IssuePending, container: "app",
		strategies: []Strategy{{Name: "diagnostic"}},
		edit:       inputEdit{schedulerMessage: taintMsg, taintNodes: true},
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic}, diagnosticOnly: true, risk: events.RiskNone,
			fields: []fieldCheck{has("/steps/0/title", "2 of 3 nodes carry taint maintenance=true:NoSchedule and 1 of 3 nodes carries taint dedicated=batch:NoSchedule that")}}},

	// custom strategies.
	{name: "deployment-custom-set-image-and-memory", id: 9, fixture: "recommender", typ: events.IssueOOMKilled, container: "app",
		strategies: []Strategy{{Name: "fix_and_raise"}},
		custom: map[string][]Strategy{"fix_and_raise": {{Name: "check_logs"}, {Name: "set_image", Params: map[string]string{"image": "redis:7.2"}},
			{Name: "increase_memory", Params: map[string]string{"factor": "1.5"}}}},
		expect: expect{actions: []events.ActionType{events.ActionCheckLogs, events.ActionSetImage, events.ActionSetMemoryLimit},
			summary: []string{"; then raise it to", "(custom strategy fix_and_raise)"}}},

	// diagnostic plans.
	{name: "deployment-config-error-diagnostic", id: 30, fixture: "notifier", typ: events.IssueCreateContainerConfigError, container: "app",
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic}, diagnosticOnly: true,
			fields: []fieldCheck{has("/steps/0/title", "configmap missing-notifier-config"), has("/steps/0/title", "container app env WEBHOOK_URL")}}},
	{name: "deployment-protected-namespace-diagnostic", id: 31, fixture: "frontend", typ: events.IssueImagePullBackOff, container: "app",
		edit: inputEdit{protectedNamespaces: []string{"shop"}},
		expect: expect{actions: diagnosticOnly, diagnosticOnly: true, risk: events.RiskNone,
			notes: []string{"namespace shop is protected"}}},
	{name: "deployment-helm-managed-rollback", id: 32, fixture: "frontend", typ: events.IssueImagePullBackOff, container: "app",
		edit: inputEdit{ownerLabels: map[string]string{"app.kubernetes.io/managed-by": "Helm"}},
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionRollback},
			notes: []string{"managed by Helm (label app.kubernetes.io/managed-by=Helm)"}}},
	{name: "deployment-argocd-managed-rollback", id: 33, fixture: "frontend", typ: events.IssueImagePullBackOff, container: "app",
		edit: inputEdit{ownerAnnotations: map[string]string{"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/frontend"}},
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionRollback},
			notes: []string{"managed by Argo CD"}}},
	{name: "deployment-flux-managed-diagnostic", id: 34, fixture: "frontend", typ: events.IssueImagePullBackOff, container: "app",
		edit: inputEdit{gitOpsManaged: GitOpsDiagnosticOnly,
			ownerLabels: map[string]string{"kustomize.toolkit.fluxcd.io/name": "shop", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}},
		expect: expect{actions: diagnosticOnly, diagnosticOnly: true, risk: events.RiskNone,
			notes: []string{"policy.gitops_managed is diagnostic_only"}}},
	{name: "pod-bare-crashloop-diagnostic", id: 35, workload: "pod", typ: events.IssueCrashLoopBackOff, container: "app",
		strategies: []Strategy{{Name: "check_logs"}, {Name: "restart_pod"}},
		expect: expect{actions: []events.ActionType{events.ActionCheckLogs, events.ActionDiagnostic, events.ActionDiagnostic},
			diagnosticOnly: true, risk: events.RiskNone, notes: []string{"pod debug has no controller"}}},

	// Other target kinds.
	{name: "statefulset-rollout-restart", id: 10, workload: "statefulset", typ: events.IssueCrashLoopBackOff, container: "app",
		strategies: []Strategy{{Name: "rollout_restart"}},
		expect: expect{actions: []events.ActionType{events.ActionRolloutRestart},
			fields: []fieldCheck{eq("/steps/0/patch/1/path", "/spec/template/metadata/annotations")}}},
	{name: "statefulset-set-image", id: 11, workload: "statefulset", typ: events.IssueImagePullBackOff, container: "app",
		strategies: []Strategy{{Name: "set_image", Params: map[string]string{"image": "db:2"}}},
		expect:     expect{actions: []events.ActionType{events.ActionSetImage}}},
	{name: "daemonset-set-memory-limit", id: 12, workload: "daemonset", typ: events.IssueOOMKilled, container: "app",
		strategies: []Strategy{{Name: "increase_memory"}},
		expect: expect{actions: []events.ActionType{events.ActionSetMemoryLimit},
			fields: []fieldCheck{eq("/steps/0/patch/2/path", "/spec/template/spec/containers/0/resources/limits/memory")}}},
	{name: "daemonset-rollout-restart", id: 13, workload: "daemonset", typ: events.IssueCrashLoopBackOff, container: "app",
		strategies: []Strategy{{Name: "rollout_restart"}},
		expect:     expect{actions: []events.ActionType{events.ActionRolloutRestart}}},
	{name: "cronjob-set-memory-limit", id: 14, workload: "cronjob", typ: events.IssueOOMKilled, container: "app",
		strategies: []Strategy{{Name: "increase_memory"}},
		expect: expect{actions: []events.ActionType{events.ActionSetMemoryLimit},
			fields: []fieldCheck{eq("/steps/0/patch/2/path", "/spec/jobTemplate/spec/template/spec/containers/0/resources/limits/memory")}}},
	{name: "cronjob-set-image", id: 15, workload: "cronjob", typ: events.IssueImagePullBackOff, container: "app",
		strategies: []Strategy{{Name: "set_image", Params: map[string]string{"image": "db:2"}}},
		expect:     expect{actions: []events.ActionType{events.ActionSetImage}}},
	{name: "job-delete-pod", id: 16, workload: "job", typ: events.IssueCrashLoopBackOff, container: "app",
		strategies: []Strategy{{Name: "delete_pod"}},
		expect: expect{actions: []events.ActionType{events.ActionDeletePod, events.ActionDeletePod},
			fields: []fieldCheck{eq("/steps/0/target/name", "migrate-a"), eq("/steps/0/params/uid", "migrate-a-uid"),
				eq("/steps/1/target/name", "migrate-b"), eq("/steps/1/kubectl", "kubectl -n apps delete pod migrate-b")}}},
	{name: "replicaset-delete-pod", id: 17, workload: "replicaset", typ: events.IssueCrashLoopBackOff, container: "app",
		strategies: []Strategy{{Name: "delete_pod"}},
		expect:     expect{actions: []events.ActionType{events.ActionDeletePod}}},
	{name: "pod-set-image-resourceversion-guard", id: 18, workload: "pod", typ: events.IssueImagePullBackOff, container: "app",
		strategies: []Strategy{{Name: "set_image", Params: map[string]string{"image": "busybox:1.36"}}},
		expect: expect{actions: []events.ActionType{events.ActionSetImage},
			fields: []fieldCheck{eq("/steps/0/patch/0/path", "/metadata/resourceVersion"), eq("/steps/0/patch/0/value", "42"),
				absent("/steps/0/undo_patch")}}},
	{name: "pod-set-image-generation-guard", id: 19, workload: "pod-with-generation", typ: events.IssueImagePullBackOff, container: "app",
		strategies: []Strategy{{Name: "set_image", Params: map[string]string{"image": "busybox:1.36"}}},
		expect:     expect{actions: []events.ActionType{events.ActionSetImage}}},
}

// planID is the fixed id of a case's plan: UUIDv7-shaped, its last
// digits the case's id, so that a golden does not change with the clock.
func planID(c planCase) string { return fmt.Sprintf("01900000-0000-7000-8000-%012d", c.id) }

// The clock of every case: the plan's created_at (its expires_at follows
// from the approval window); acceptAll dry-runs at the same time.
var (
	goldenNow      = time.Date(2026, 11, 27, 0, 41, 0, 0, time.UTC)
	goldenLastSeen = time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC) // of the synthetic incidents
)

// planOf plans a case: the input, then draftPlan, finalize with every dry
// run accepted, and assemblePlan (sealed, not signed).
func planOf(t *testing.T, c planCase) (planInput, outcome, events.Plan) {
	t.Helper()
	in := c.input(t)
	out := finalize(draftPlan(in), acceptAll)
	return in, out, assemblePlan(planID(c), in.Now, in.Cfg, in, out)
}

// input builds the planInput of a case.
func (c planCase) input(t *testing.T) planInput {
	t.Helper()
	cfg := testConfig(t)
	if c.strategies != nil {
		cfg.Strategies = map[events.IssueType][]Strategy{c.typ: c.strategies}
	}
	if c.custom != nil {
		cfg.CustomStrategies = c.custom
	}
	var in planInput
	switch {
	case c.fixture != "":
		in = loadShop(t, c.fixture).input(t, cfg, c.typ, c.container)
	case c.workload != "":
		in = syntheticInput(t, cfg, c)
	default:
		t.Fatalf("case %s has neither a fixture nor a workload", c.name)
	}
	c.edit.apply(t, &in)
	return in
}

// apply makes the edits to the input.
func (e inputEdit) apply(t *testing.T, in *planInput) {
	t.Helper()
	if e.noHistory {
		in.ReplicaSets = nil
	}
	if e.noReadyRevision {
		in.ReplicaSets = slices.Clone(in.ReplicaSets)
		for i := range in.ReplicaSets {
			in.ReplicaSets[i].Status.ReadyReplicas = 0
		}
	}
	if e.memoryLimit != "" {
		setMemory(in, e.memoryLimit, "")
	}
	if e.cpuRequest != "" {
		in.Owner.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse(e.cpuRequest)
	}
	if e.nodes || e.schedulerMessage != "" {
		in.Nodes = loadNodes(t)
	}
	if e.schedulerMessage != "" {
		pod := in.Pod.DeepCopy()
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: e.schedulerMessage}}
		in.Pod = pod
	}
	if e.taintNodes {
		taintAll(in.Nodes)
	}
	if e.nodeSelector != nil {
		in.Owner.Spec.NodeSelector = e.nodeSelector
	}
	if e.rev1Tolerations != nil {
		in.ReplicaSets = withRev1Tolerations(in.ReplicaSets, e.rev1Tolerations...)
	}
	if e.maxPods > 0 {
		in.Cfg.MaxPods = e.maxPods
	}
	if e.protectedNamespaces != nil {
		in.Cfg.ProtectedNamespaces = e.protectedNamespaces
	}
	if e.ownerLabels != nil {
		in.Owner.Labels = e.ownerLabels
	}
	if e.ownerAnnotations != nil {
		in.Owner.Annotations = e.ownerAnnotations
	}
	if e.gitOpsManaged != "" {
		in.Cfg.GitOpsManaged = e.gitOpsManaged
	}
	if e.rolloutStuck {
		stuck(in)
	}
}

// taintAll taints the three recorded nodes: kwok-node-0 dedicated=batch,
// the others maintenance=true.
func taintAll(nodes []corev1.Node) {
	taintNode(&nodes[0], "dedicated", "batch")
	taintNode(&nodes[1], "maintenance", "true")
	taintNode(&nodes[2], "maintenance", "true")
}

// syntheticInput is the input of a workload that the shop fixtures do not
// record: a StatefulSet, DaemonSet or CronJob "w" (generation 7), a Job
// "migrate" with two failing pods (and one it does not control), a
// ReplicaSet "lone" of its own, a bare pod "debug" (without a generation,
// or "pod-with-generation").
func syntheticInput(t *testing.T, cfg Config, c planCase) planInput {
	t.Helper()
	limits := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}}
	tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "db:1", Resources: limits}}}}
	meta := metav1.ObjectMeta{Name: "w", Namespace: "apps", UID: "w-uid", Generation: 7, ResourceVersion: "100"}
	controlled := func(name string, kind string, uid types.UID) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", UID: types.UID(name + "-uid"),
			OwnerReferences: []metav1.OwnerReference{{Kind: kind, Name: "owner", UID: uid, Controller: new(true)}}}}
	}
	var obj any
	var pods []corev1.Pod
	switch c.workload {
	case "statefulset":
		obj = &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Template: tmpl}}
	case "daemonset":
		obj = &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: tmpl}}
	case "cronjob":
		obj = &batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}
	case "job":
		obj = &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "migrate", Namespace: "apps", UID: "job-uid", Generation: 1, ResourceVersion: "9"},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "migrate:1"}}}}}}
		pods = []corev1.Pod{controlled("migrate-a", KindJob, "job-uid"), controlled("migrate-b", KindJob, "job-uid"), controlled("stranger", KindJob, "other-uid")}
	case "replicaset":
		obj = &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "lone", Namespace: "apps", UID: "rs-uid", Generation: 3, ResourceVersion: "11"},
			Spec: appsv1.ReplicaSetSpec{Template: tmpl}}
		pods = []corev1.Pod{controlled("lone-x", KindReplicaSet, "rs-uid")}
	case "pod", "pod-with-generation":
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "debug", Namespace: "apps", UID: "pod-uid", ResourceVersion: "42"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox:1"}}}}
		if c.workload == "pod-with-generation" {
			pod.Generation = 1
		}
		obj = pod
	default:
		if in, ok := workloadInput(t, cfg, c); ok {
			return in
		}
		t.Fatalf("case %s: unknown synthetic workload %q", c.name, c.workload)
	}
	w, err := workloadOf(obj)
	if err != nil {
		t.Fatal(err)
	}
	inc := events.Incident{ID: "0123456789abcdef", Cluster: testCluster, Namespace: "apps", Owner: w.Ref, Container: c.container,
		Type: c.typ, LastSeen: goldenLastSeen}
	in := planInput{Cfg: cfg, Incident: inc, Owner: w, Pods: pods, Now: goldenNow}
	if len(pods) > 0 {
		in.Pod = &in.Pods[0]
	}
	for _, p := range pods {
		in.Incident.Pods = append(in.Incident.Pods, p.Name)
		if metav1.GetControllerOf(&p).UID == types.UID(w.Ref.UID) {
			in.Incident.PodCount++
		}
	}
	if w.BarePod {
		in.Incident.Pods, in.Incident.PodCount = []string{w.Ref.Name}, 1
	}
	return in
}

// TestPlanGoldens plans every case and compares the plan, as indented
// JSON, with testdata/plans/<name>.json byte for byte; -update rewrites
// them (read the diff: a changed patch is a changed power of the
// executor, whose catalogue tests read the same files).
//
// Nothing is normalised after planning, because nothing in the input
// varies: the id is planID (not a new UUIDv7), created_at is the input's
// fixed clock (goldenNow; expires_at adds the approval window), every dry
// run is accepted at that time (acceptAll), and the plan is sealed (its
// digest covers all of this) but not signed: assemblePlan does not sign,
// buildPlan signs with the service's key, which the trust tests cover.
func TestPlanGoldens(t *testing.T) {
	seen := map[string]bool{}
	ids := map[int]bool{}
	for _, c := range planCases {
		if seen[c.name] || ids[c.id] {
			t.Fatalf("case %s: name or id %d used twice", c.name, c.id)
		}
		seen[c.name], ids[c.id] = true, true
		t.Run(c.name, func(t *testing.T) {
			_, _, p := planOf(t, c)
			got, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "plans", c.name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestPlanGoldens -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("plan differs from %s (go test -run TestPlanGoldens -update rewrites it):\n%s", path, lineDiff(string(want), string(got)))
			}
		})
	}
	// Every golden file is a case: none is left behind by a removed case.
	files, err := filepath.Glob(filepath.Join("testdata", "plans", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".json"); !seen[name] {
			t.Errorf("%s has no case in planCases", f)
		}
	}
}

// lineDiff shows the first lines where two texts differ, with context.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	from := max(0, i-3)
	var b strings.Builder
	for j := from; j < i; j++ {
		fmt.Fprintf(&b, "  %s\n", w[j])
	}
	for j := i; j < min(len(w), i+5); j++ {
		fmt.Fprintf(&b, "- %s\n", w[j])
	}
	for j := i; j < min(len(g), i+5); j++ {
		fmt.Fprintf(&b, "+ %s\n", g[j])
	}
	return b.String()
}

// TestStepBuilders checks every case's plan against its expectations and
// the invariants of every plan: the actions in order, step indexes, a
// valid plan with a one-line summary, each step's Mutating flag agreeing
// with its action, and every generation-guarded patch testing the owner's
// generation (its undo patch the next one).
func TestStepBuilders(t *testing.T) {
	for _, c := range planCases {
		t.Run(c.name, func(t *testing.T) {
			in, out, p := planOf(t, c)
			if got := actions(out); !slices.Equal(got, c.expect.actions) {
				t.Fatalf("actions %v, want %v (notes %v)", got, c.expect.actions, out.Notes)
			}
			for i, s := range out.Steps {
				if s.Index != i {
					t.Errorf("step %d has index %d", i, s.Index)
				}
				if s.Mutating != s.Action.Mutating() {
					t.Errorf("step %d (%s) has mutating %t", i, s.Action, s.Mutating)
				}
				if s.Mutating && len(s.Patch) > 0 && in.Owner.Generation > 0 {
					checkGuard(t, s, in.Owner.Generation)
				}
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("plan does not validate: %v\n%s", err, mustJSON(p))
			}
			if strings.Contains(p.Summary, "\n") || p.Summary == "" {
				t.Errorf("summary %q", p.Summary)
			}
			c.expect.check(t, out, p)
		})
	}
}

// check checks the expectations on a plan.
func (e expect) check(t *testing.T, out outcome, p events.Plan) {
	t.Helper()
	if out.DiagnosticOnly != e.diagnosticOnly {
		t.Errorf("diagnostic only %t, want %t (notes %v)", out.DiagnosticOnly, e.diagnosticOnly, out.Notes)
	}
	if e.risk != "" && out.Risk != e.risk {
		t.Errorf("risk %s, want %s", out.Risk, e.risk)
	}
	for _, n := range e.notes {
		if !hasNote(out, n) {
			t.Errorf("no note with %q in %v", n, out.Notes)
		}
	}
	for _, sub := range e.summary {
		if !strings.Contains(out.Summary, sub) {
			t.Errorf("summary %q lacks %q", out.Summary, sub)
		}
	}
	if len(e.fields) == 0 {
		return
	}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, f := range e.fields {
		f.check(t, doc)
	}
}

// check checks one value of the plan's JSON document.
func (f fieldCheck) check(t *testing.T, doc any) {
	t.Helper()
	v, ok := lookup(doc, f.pointer)
	switch {
	case f.absent:
		if ok {
			t.Errorf("%s is %v, want it absent", f.pointer, v)
		}
		return
	case !ok:
		t.Errorf("%s is absent", f.pointer)
		return
	}
	if f.equals != nil {
		if s, isString := f.equals.(string); isString {
			if v != s {
				t.Errorf("%s is %v, want %q", f.pointer, v, s)
			}
		} else if got, want := mustJSON(v), mustJSON(f.equals); got != want {
			t.Errorf("%s is %s, want %s", f.pointer, got, want)
		}
	}
	if f.contains != "" {
		if s, _ := v.(string); !strings.Contains(s, f.contains) {
			t.Errorf("%s is %v, want it to contain %q", f.pointer, v, f.contains)
		}
	}
	if f.length > 0 {
		if a, _ := v.([]any); len(a) != f.length {
			t.Errorf("%s has %d elements, want %d: %v", f.pointer, len(a), f.length, v)
		}
	}
}

// lookup resolves an RFC 6901 JSON pointer in a decoded JSON document.
func lookup(doc any, pointer string) (any, bool) {
	v := doc
	for _, tok := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch n := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = n[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n) {
				return nil, false
			}
			v = n[i]
		default:
			return nil, false
		}
	}
	return v, true
}
