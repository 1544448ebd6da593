package planner

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// pendingInput is the frontend fixture as a Pending incident whose pod
// the scheduler refused with msg, on the recorded nodes (edited by
// editNodes).
func pendingInput(t *testing.T, cfg Config, msg string, editNodes func([]corev1.Node)) planInput {
	t.Helper()
	in := loadShop(t, "frontend").input(t, cfg, events.IssuePending, "app")
	pod := in.Pod.DeepCopy()
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: msg}}
	in.Pod = pod
	in.Nodes = loadNodes(t)
	if editNodes != nil {
		editNodes(in.Nodes)
	}
	return in
}

func taintNode(n *corev1.Node, key, value string) {
	n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Value: value, Effect: corev1.TaintEffectNoSchedule})
}

// withRev1Tolerations gives revision 1 of a fixture these tolerations.
func withRev1Tolerations(rss []appsv1.ReplicaSet, tols ...corev1.Toleration) []appsv1.ReplicaSet {
	out := slices.Clone(rss)
	for i := range out {
		if rsRevision(out[i].ObjectMeta) == 1 {
			rs := out[i].DeepCopy()
			rs.Spec.Template.Spec.Tolerations = tols
			out[i] = *rs
		}
	}
	return out
}

const (
	taintMsg    = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: batch}, 2 node(s) had untolerated taint {maintenance: true}."
	selectorMsg = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
)

func TestTolerationAndNodeSelectorNeedAMatchingNode(t *testing.T) {
	cfg := testConfig(t)
	batchParams := map[string]string{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}
	taintAll := func(nodes []corev1.Node) {
		taintNode(&nodes[0], "dedicated", "batch")
		taintNode(&nodes[1], "maintenance", "true")
		taintNode(&nodes[2], "maintenance", "true")
	}
	tests := []struct {
		name   string
		in     func(t *testing.T) planInput
		st     Strategy
		want   events.ActionType // "" = not proposed
		note   string
		checks func(t *testing.T, in planInput, s events.Step)
	}{
		{
			name: "configured toleration for a tainted node", st: Strategy{Name: "add_toleration", Params: batchParams},
			in:   func(t *testing.T) planInput { return pendingInput(t, cfg, taintMsg, taintAll) },
			want: events.ActionAddToleration,
			checks: func(t *testing.T, in planInput, s events.Step) {
				ops := decodeOps(t, s.Patch)
				tol, _ := ops[1]["value"].([]any)
				if len(ops) != 2 || ops[1]["op"] != "add" || ops[1]["path"] != "/spec/template/spec/tolerations" || len(tol) != 1 {
					t.Fatalf("ops %v", ops)
				}
				if m := tol[0].(map[string]any); m["key"] != "dedicated" || m["value"] != "batch" || m["operator"] != "Equal" || m["effect"] != "NoSchedule" {
					t.Errorf("toleration %v", m)
				}
				if !strings.Contains(s.Title, "nodes kwok-node-0") || s.Risk != events.RiskMedium || len(s.UndoPatch) == 0 ||
					!strings.HasPrefix(s.Kubectl, "kubectl -n shop patch deployment/frontend --type=json -p '[") {
					t.Errorf("step %s", mustJSON(s))
				}
			},
		},
		{
			name: "no node carries the configured taint", st: Strategy{Name: "add_toleration", Params: map[string]string{"key": "gpu"}},
			in:   func(t *testing.T) planInput { return pendingInput(t, cfg, taintMsg, taintAll) },
			note: "no Ready, schedulable node matching the node selector would accept the pods",
		},
		{
			name: "the tainted node is not Ready", st: Strategy{Name: "add_toleration", Params: batchParams},
			in: func(t *testing.T) planInput {
				return pendingInput(t, cfg, taintMsg, func(n []corev1.Node) {
					taintAll(n)
					n[0].Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}}
				})
			},
			note: "no Ready, schedulable node",
		},
		{
			name: "the tainted node does not match the node selector", st: Strategy{Name: "add_toleration", Params: batchParams},
			in: func(t *testing.T) planInput {
				in := pendingInput(t, cfg, taintMsg, taintAll)
				in.Owner.Spec.NodeSelector = map[string]string{"topology.kubernetes.io/zone": "sandbox-b"}
				return in
			},
			note: "no Ready, schedulable node matching the node selector",
		},
		{
			name: "never guessed from the taint", st: Strategy{Name: "add_toleration"},
			in: func(t *testing.T) planInput {
				in := pendingInput(t, cfg, taintMsg, taintAll)
				in.ReplicaSets = nil
				return in
			},
			note: "kaar does not guess",
		},
		{
			name: "a toleration of everything is refused", st: Strategy{Name: "add_toleration"},
			in: func(t *testing.T) planInput {
				in := pendingInput(t, cfg, taintMsg, taintAll)
				in.ReplicaSets = withRev1Tolerations(in.ReplicaSets, corev1.Toleration{Operator: corev1.TolerationOpExists})
				return in
			},
			note: "refused: a toleration without a key tolerates every taint",
		},
		{
			name: "toleration of the last healthy revision", st: Strategy{Name: "add_toleration"},
			in: func(t *testing.T) planInput {
				in := pendingInput(t, cfg, taintMsg, taintAll)
				in.ReplicaSets = withRev1Tolerations(in.ReplicaSets, corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpExists})
				return in
			},
			want: events.ActionAddToleration,
			checks: func(t *testing.T, _ planInput, s events.Step) {
				if s.Params["key"] != "dedicated" || s.Params["operator"] != "Exists" || !strings.Contains(s.Title, "dedicated (any value)") {
					t.Errorf("step %s", mustJSON(s))
				}
			},
		},
		{
			name: "selector from params, when a node has the labels", st: Strategy{Name: "set_node_selector", Params: map[string]string{"topology.kubernetes.io/zone": "sandbox-b"}},
			in:   func(t *testing.T) planInput { return pendingInput(t, cfg, selectorMsg, nil) },
			want: events.ActionSetNodeSelector,
			checks: func(t *testing.T, _ planInput, s events.Step) {
				ops := decodeOps(t, s.Patch)
				if ops[1]["op"] != "add" || ops[1]["path"] != "/spec/template/spec/nodeSelector" || !strings.Contains(s.Title, "matches kwok-node-1") {
					t.Errorf("ops %v title %q", ops, s.Title)
				}
			},
		},
		{
			name: "selector from params, no node has the labels", st: Strategy{Name: "set_node_selector", Params: map[string]string{"disk": "ssd"}},
			in:   func(t *testing.T) planInput { return pendingInput(t, cfg, selectorMsg, nil) },
			note: `no Ready, schedulable node without untolerated taints has the labels "disk=ssd"`,
		},
		{
			name: "selector from params, the only matching node is tainted", st: Strategy{Name: "set_node_selector", Params: map[string]string{"topology.kubernetes.io/zone": "sandbox-a"}},
			in:   func(t *testing.T) planInput { return pendingInput(t, cfg, selectorMsg, taintAll) },
			note: "without untolerated taints",
		},
		{
			name: "selector of the last healthy revision", st: Strategy{Name: "set_node_selector"},
			in: func(t *testing.T) planInput {
				in := pendingInput(t, cfg, selectorMsg, nil)
				in.Owner.Spec.NodeSelector = map[string]string{"disk": "ssd"}
				return in
			},
			want: events.ActionSetNodeSelector,
			checks: func(t *testing.T, _ planInput, s events.Step) {
				ops := decodeOps(t, s.Patch)
				undo := decodeOps(t, s.UndoPatch)
				if len(ops) != 2 || ops[1]["op"] != "remove" || undo[1]["op"] != "add" || len(s.Params) != 0 {
					t.Errorf("ops %v undo %v params %v", ops, undo, s.Params)
				}
			},
		},
		{
			name: "selector mismatch not reported", st: Strategy{Name: "set_node_selector", Params: map[string]string{"topology.kubernetes.io/zone": "sandbox-b"}},
			in:   func(t *testing.T) planInput { return pendingInput(t, cfg, taintMsg, nil) },
			note: "does not report a node selector mismatch",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in(t)
			in.Cfg.Strategies = map[events.IssueType][]Strategy{events.IssuePending: {tt.st}}
			out := finalize(draftPlan(in), acceptAll)
			p := assemblePlan(uuid.Must(uuid.NewV7()).String(), in.Now, in.Cfg, in, out)
			if err := p.Validate(); err != nil {
				t.Fatalf("plan: %v", err)
			}
			if tt.want == "" {
				if !out.DiagnosticOnly || !hasNote(out, tt.note) {
					t.Fatalf("diagnostic %t notes %v, want a note with %q", out.DiagnosticOnly, out.Notes, tt.note)
				}
				return
			}
			s := mutatingStep(t, out)
			if s.Action != tt.want {
				t.Fatalf("action %s, want %s", s.Action, tt.want)
			}
			checkGuard(t, s, in.Owner.Generation)
			if len(s.Preconditions) < 2 || s.SuccessCheck == "" || s.Undo == "" || s.Kubectl == "" {
				t.Errorf("step lacks preconditions, success check, undo or kubectl: %s", mustJSON(s))
			}
			tt.checks(t, in, s)
		})
	}
	in := pendingInput(t, cfg, taintMsg, taintAll)
	in.Cfg.Strategies = strategies(events.IssuePending, "diagnostic")
	out := finalize(draftPlan(in), acceptAll)
	for _, want := range []string{"2 of 3 nodes carry taint maintenance=true:NoSchedule", "1 of 3 nodes carries taint dedicated=batch:NoSchedule"} {
		if !strings.Contains(out.Steps[0].Title, want) {
			t.Errorf("taint step %q does not name the taints with their nodes: no %q", out.Steps[0].Title, want)
		}
	}
}

// A custom strategy proposes all of its steps, in order, or none.
func TestCustomStrategies(t *testing.T) {
	cfg := testConfig(t)
	cfg.CustomStrategies = map[string][]Strategy{
		"fix_and_raise": {{Name: "check_logs"}, {Name: "set_image", Params: map[string]string{"image": "redis:7.2"}}, {Name: "increase_memory", Params: map[string]string{"factor": "1.5"}}},
		"impossible":    {{Name: "set_image", Params: map[string]string{"image": "redis:7.2"}}, {Name: "delete_evicted_pods"}},
	}
	in := loadShop(t, "recommender").input(t, cfg, events.IssueOOMKilled, "app")
	in.Cfg.Strategies = strategies(events.IssueOOMKilled, "impossible", "fix_and_raise")
	out := finalize(draftPlan(in), acceptAll)
	if got := actions(out); !slices.Equal(got, []events.ActionType{events.ActionCheckLogs, events.ActionSetImage, events.ActionSetMemoryLimit}) {
		t.Fatalf("actions %v notes %v", got, out.Notes)
	}
	if !hasNote(out, "strategy impossible does not apply: its step 1 (delete_evicted_pods) does not apply") || out.Chosen != "fix_and_raise" {
		t.Errorf("chosen %q notes %v", out.Chosen, out.Notes)
	}
	if !strings.Contains(out.Summary, "; then raise it to") || !strings.Contains(out.Summary, "(custom strategy fix_and_raise)") {
		t.Errorf("summary %q", out.Summary)
	}
	for _, s := range out.Steps[1:] {
		checkGuard(t, s, in.Owner.Generation)
		if s.DryRun == nil || !s.DryRun.OK {
			t.Errorf("step %s not dry-run", s.Action)
		}
	}
	p := assemblePlan(uuid.Must(uuid.NewV7()).String(), in.Now, in.Cfg, in, out)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}

	// One rejected dry run drops the whole custom strategy.
	out = finalize(draftPlan(in), func(s events.Step) events.DryRunResult {
		if s.Action == events.ActionSetMemoryLimit {
			return events.DryRunResult{Message: "memory rejected", At: in.Now}
		}
		return acceptAll(s)
	})
	if !out.DiagnosticOnly || !hasNote(out, "rejected the dry run of step 1 (set_memory_limit): memory rejected") {
		t.Errorf("diagnostic %t notes %v", out.DiagnosticOnly, out.Notes)
	}

	// Loaded from YAML, validated by pkg/config and by the planner alike.
	src := `
kubernetes: {cluster_name: test}
remediation:
  custom_strategies:
    fix_and_raise:
      - check_logs
      - {action: set_image, params: {image: "redis:7.2"}}
      - {action: set_memory_limit, params: {factor: "1.5"}}
  strategies:
    OOMKilled: [fix_and_raise, increase_memory]
`
	c, err := config.Load(strings.NewReader(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := ConfigFrom(c).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got := pc.CustomStrategies["fix_and_raise"]; len(got) != 3 || got[2].Name != "set_memory_limit" || got[2].Params["factor"] != "1.5" {
		t.Errorf("custom strategies %+v", pc.CustomStrategies)
	}
	for _, bad := range []struct{ src, key, allowed string }{
		{"remediation: {strategies: {OOMKilled: [fix_it]}}", `"remediation.strategies.OOMKilled[0]"`, "increase_memory"},
		{"remediation: {custom_strategies: {a: [pray]}}", `"remediation.custom_strategies.a[0]"`, "rollback"},
		{"remediation: {custom_strategies: {rollback: [rollback]}}", `"remediation.custom_strategies.rollback"`, ""},
		{"remediation: {custom_strategies: {a: [check_logs]}, strategies: {OOMKilled: [b]}}", `"remediation.strategies.OOMKilled[0]"`, "set_memory_limit, set_resource_requests, a"},
		{"policy: {gitops_managed: ignore}", `"policy.gitops_managed"`, "flag, diagnostic_only"},
	} {
		_, err := config.Load(strings.NewReader(bad.src), nil)
		if err == nil || !strings.Contains(err.Error(), bad.key) || !strings.Contains(err.Error(), bad.allowed) {
			t.Errorf("%s: error %v, want one naming %s (allowed %s)", bad.src, err, bad.key, bad.allowed)
		}
	}
}

// The configuration's strategy names and the planner agree: every name
// config accepts is one the planner knows, and every action a plan can
// show can be named in the configuration.
func TestStrategyNamesAgreeWithThePlanner(t *testing.T) {
	cfg := testConfig(t)
	in := loadShop(t, "frontend").input(t, cfg, events.IssueImagePullBackOff, "app")
	b := &builder{in: in}
	for _, name := range config.StrategyNames {
		if _, ok := b.diagnostic(name); ok {
			continue
		}
		if _, why := b.mutating(Strategy{Name: name}); strings.HasPrefix(why, "unknown strategy") {
			t.Errorf("config accepts %q but the planner does not know it", name)
		}
	}
	for _, a := range events.ActionTypes() {
		if !slices.Contains(config.StrategyNames, string(a)) {
			t.Errorf("plans show action %q, which remediation.strategies does not accept", a)
		}
	}
}

func TestManagedBy(t *testing.T) {
	tests := []struct {
		name        string
		labels, ann map[string]string
		tool, owner string
	}{
		{"argo tracking id", map[string]string{"app.kubernetes.io/instance": "shop"}, map[string]string{"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web"}, "Argo CD", "Application shop"},
		{"argo instance label", map[string]string{"argocd.argoproj.io/instance": "shop"}, nil, "Argo CD", "Application shop"},
		{"argo instance label with an argo annotation", map[string]string{"app.kubernetes.io/instance": "shop"}, map[string]string{"argocd.argoproj.io/sync-options": "Prune=false"}, "Argo CD", "Application shop"},
		{"argo rendering a helm chart", map[string]string{"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "shop"}, map[string]string{"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web"}, "Argo CD", "Application shop"},
		{"flux kustomization", map[string]string{"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}, nil, "Flux", "Kustomization flux-system/apps"},
		{"flux helmrelease over helm", map[string]string{"helm.toolkit.fluxcd.io/name": "web", "app.kubernetes.io/managed-by": "Helm"}, map[string]string{"meta.helm.sh/release-name": "web"}, "Flux", "HelmRelease web"},
		{"helm annotation", nil, map[string]string{"meta.helm.sh/release-name": "web"}, "Helm", "release web"},
		{"helm label", map[string]string{"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "web"}, nil, "Helm", "release web"},
		{"instance label alone", map[string]string{"app.kubernetes.io/instance": "web"}, nil, "", ""},
		{"another manager", map[string]string{"app.kubernetes.io/managed-by": "kustomize"}, nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := managedBy(tt.labels, tt.ann)
			if g.Tool != tt.tool || g.Owner != tt.owner {
				t.Errorf("managedBy = %+v, want %s %s", g, tt.tool, tt.owner)
			}
		})
	}
}

// A GitOps-managed workload's plan says the change belongs in Git; with
// policy.gitops_managed diagnostic_only it proposes no change.
func TestGitOpsManagedPlans(t *testing.T) {
	cfg := testConfig(t)
	in := loadShop(t, "frontend").input(t, cfg, events.IssueImagePullBackOff, "app")
	in.Owner.Labels = map[string]string{"kustomize.toolkit.fluxcd.io/name": "shop", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}
	out := finalize(draftPlan(in), acceptAll)
	if out.DiagnosticOnly || !strings.Contains(out.Summary, "deployment/frontend is managed by Flux: the lasting fix belongs in the Git repository reconciled by Flux Kustomization flux-system/shop") ||
		!hasNote(out, "Flux reverts drift on its next reconciliation") || out.ManagedBy != "Flux" {
		t.Errorf("flag: diagnostic %t summary %q notes %v managed by %q", out.DiagnosticOnly, out.Summary, out.Notes, out.ManagedBy)
	}
	in.Cfg.GitOpsManaged = GitOpsDiagnosticOnly
	out = finalize(draftPlan(in), acceptAll)
	if !out.DiagnosticOnly || out.Risk != events.RiskNone || !hasNote(out, "policy.gitops_managed is diagnostic_only") {
		t.Errorf("diagnostic_only: diagnostic %t notes %v", out.DiagnosticOnly, out.Notes)
	}
	p := assemblePlan(uuid.Must(uuid.NewV7()).String(), time.Now(), in.Cfg, in, out)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
}
