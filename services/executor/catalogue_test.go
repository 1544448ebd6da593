package executor

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// plannerPlansDir holds the plans the planner makes: its golden files
// (services/planner TestPlanGoldens, refreshed with -update), one or more
// per action family and target kind, and its diagnostic-only plans. They
// are read from the planner's own testdata, not copied, so the catalogue
// is checked against what the planner produces today. The catalogue must
// accept every one of them as it is, and refuse each tampered variant
// below.
var plannerPlansDir = filepath.Join("..", "planner", "testdata", "plans")

var catalogueTestConfig = catalogueConfig{MaxPods: 10, ProtectedNamespaces: []string{"kube-system"}}

func plannerPlans(t *testing.T) map[string]events.Plan {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(plannerPlansDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no planner plans in %s: %v", plannerPlansDir, err)
	}
	out := map[string]events.Plan{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var p events.Plan
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = p
	}
	return out
}

func plannerPlan(t *testing.T, name string) events.Plan {
	t.Helper()
	p, ok := plannerPlans(t)[name]
	if !ok {
		t.Fatalf("no planner plan %s", name)
	}
	return p
}

func TestPlannerPlansPassTheCatalogue(t *testing.T) {
	covered := map[events.ActionType]bool{}
	kinds := map[string]bool{}
	for name, p := range plannerPlans(t) {
		if r := validatePlanSteps(p, catalogueTestConfig); r != nil {
			t.Errorf("%s: refused: %v", name, r)
		}
		kinds[p.Target.Kind] = true
		for _, st := range p.Steps {
			if !st.Mutating {
				continue
			}
			covered[st.Action] = true
			// The catalogue's risk table agrees with the planner's grading.
			if got := stepRisk(st); got != st.Risk {
				t.Errorf("%s: step %d (%s): catalogue risk %s, planner's %s", name, st.Index, st.Action, got, st.Risk)
			}
		}
		if got := planRisk(p); got != p.Risk {
			t.Errorf("%s: plan risk %s, planner's %s", name, got, p.Risk)
		}
	}
	for _, a := range events.ActionTypes() {
		if a.Mutating() && !covered[a] {
			t.Errorf("no planner plan with a %s step in %s", a, plannerPlansDir)
		}
	}
	for _, k := range supportedKinds {
		if !kinds[k] {
			t.Errorf("no planner plan for a %s in %s", k, plannerPlansDir)
		}
	}
}

// ops decodes a JSON patch for editing.
func ops(t *testing.T, raw json.RawMessage) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func enc(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mutating returns the first mutating step of p, for editing.
func mutating(t *testing.T, p *events.Plan) *events.Step {
	t.Helper()
	for i := range p.Steps {
		if p.Steps[i].Mutating {
			return &p.Steps[i]
		}
	}
	t.Fatal("no mutating step")
	return nil
}

// appendOp adds an operation to the step's patch.
func appendOp(t *testing.T, raw json.RawMessage, op map[string]any) json.RawMessage {
	t.Helper()
	return enc(t, append(ops(t, raw), op))
}

func TestCatalogueRefusesTamperedPlans(t *testing.T) {
	tests := []struct {
		name string
		plan string // a file of plannerPlansDir
		cfg  func(*catalogueConfig)
		edit func(t *testing.T, p *events.Plan)
		// want are substrings of the refusal message (the step and the
		// reason); reason is invalid_step unless set.
		want   []string
		reason events.RefusalReason
	}{
		// The right object.
		{name: "step on another object (name)", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) { mutating(t, p).Target.Name = "payments" },
			want: []string{"step 1 (set_image)", "Deployment/shop/payments is not the plan's target Deployment/shop/frontend"}},
		{name: "step on another object (namespace)", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) { mutating(t, p).Target.Namespace = "billing" },
			want: []string{"step 1 (set_image)", "namespace billing, not the plan's namespace shop"}},
		{name: "step on another object (kind)", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) { mutating(t, p).Target.Kind = "StatefulSet" },
			want: []string{"step 1 (set_image)", "StatefulSet/shop/frontend is not the plan's target"}},
		{name: "step on another object (uid: recreated under the name)", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) { mutating(t, p).Target.UID = "another-uid" },
			want: []string{"step 1 (set_image)", "has uid another-uid"}},
		{name: "a target kind the executor does not change", plan: "job-delete-pod",
			edit: func(t *testing.T, p *events.Plan) { p.Target.Kind = "Secret" },
			want: []string{`target kind "Secret" is not one the executor changes`}},
		{name: "plan target outside the plan's namespace", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) { p.Target.Namespace = "billing" },
			want: []string{"target Deployment/billing/frontend is not in the plan's namespace shop"}},
		{name: "rollback of a StatefulSet (the planner rolls back Deployments only)", plan: "statefulset-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Action = events.ActionRollback
				st.Patch = enc(t, []map[string]any{{"op": "test", "path": "/metadata/generation", "value": 7},
					{"op": "replace", "path": "/spec/template", "value": map[string]any{"spec": map[string]any{"containers": []any{}}}}})
				st.UndoPatch = nil
			},
			want: []string{"step 0 (rollback)", "not planned for a StatefulSet"}},
		{name: "rollout restart of a Job (none exists)", plan: "job-delete-pod",
			edit: func(t *testing.T, p *events.Plan) {
				p.Steps = []events.Step{{Index: 0, Action: events.ActionRolloutRestart, Title: "restart", Target: p.Target, Risk: events.RiskLow, Mutating: true,
					PatchType: events.PatchJSON, Patch: json.RawMessage(`[{"op":"test","path":"/metadata/generation","value":1},{"op":"add","path":"/spec/template/metadata/annotations","value":{"kubectl.kubernetes.io/restartedAt":"now"}}]`)}}
			},
			want: []string{"step 0 (rollout_restart)", "not planned for a Job"}},

		// A generation-guarded JSON patch.
		{name: "unguarded JSON patch", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) { st := mutating(t, p); st.Patch = enc(t, ops(t, st.Patch)[1:]) },
			want: []string{"step 1 (set_image)", "patch: first operation must be", `"/metadata/generation"`}},
		{name: "guard not first", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				o := ops(t, st.Patch)
				st.Patch = enc(t, append(o[1:], o[0]))
			},
			want: []string{"step 1 (set_image)", "patch: first operation must be"}},
		{name: "guard with the wrong generation", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				o := ops(t, st.Patch)
				o[0]["value"] = 1
				st.Patch = enc(t, o)
			},
			want: []string{"step 1 (set_image)", "(target_generation 2)", "not test /metadata/generation 1"}},
		{name: "guard value as a string", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				o := ops(t, st.Patch)
				o[0]["value"] = "2"
				st.Patch = enc(t, o)
			},
			want: []string{"step 1 (set_image)", "first operation must be"}},
		{name: "guard testing another path", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				o := ops(t, st.Patch)
				o[0]["path"] = "/metadata/name"
				st.Patch = enc(t, o)
			},
			want: []string{"step 1 (set_image)", "first operation must be"}},
		{name: "merge patch", plan: "deployment-rollout-restart",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.PatchType = events.PatchMerge
				st.Patch = json.RawMessage(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"now"}}}}}`)
			},
			want: []string{"step 1 (rollout_restart)", `patch_type "merge": only JSON patches are executed`}},
		{name: "strategic patch", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.PatchType = events.PatchStrategic
				st.Patch = json.RawMessage(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"evil:1","securityContext":{"privileged":true}}]}}}}`)
				st.UndoPatch = nil
			},
			want: []string{"step 1 (set_image)", `patch_type "strategic"`}},
		{name: "a mutating step without a patch", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Patch, st.UndoPatch = nil, nil
			},
			want: []string{"step 1 (set_image)", "patch: required"}},
		{name: "bare pod guard on another resourceVersion", plan: "pod-set-image-resourceversion-guard",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				o := ops(t, st.Patch)
				o[0]["value"] = "41"
				st.Patch = enc(t, o)
			},
			want: []string{"step 0 (set_image)", `"/metadata/resourceVersion","value":"42"`}},
		{name: "bare pod planned without a generation: no undo patch can be guarded", plan: "pod-set-image-resourceversion-guard",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.UndoPatch = json.RawMessage(`[{"op":"test","path":"/metadata/resourceVersion","value":"42"},{"op":"replace","path":"/spec/containers/0/image","value":"busybox:1"}]`)
			},
			want: []string{"step 0 (set_image)", "undo_patch: a pod planned without a generation has no guard"}},
		{name: "workload planned without a generation", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) { p.TargetGeneration = 0 },
			want: []string{"step 1 (set_image)", "target_generation is 0"}},

		// Only the paths of the action.
		{name: "rollback that also scales to zero", plan: "deployment-rollback",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Patch = appendOp(t, st.Patch, map[string]any{"op": "replace", "path": "/spec/replicas", "value": 0})
			},
			want: []string{"step 1 (rollback)", "operation 2 (replace /spec/replicas)", "rollback replaces /spec/template only"}},
		{name: "rollback that also annotates the Deployment", plan: "deployment-rollback",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Patch = appendOp(t, st.Patch, map[string]any{"op": "add", "path": "/metadata/annotations", "value": map[string]string{"owner": "mallory"}})
			},
			want: []string{"step 1 (rollback)", "add /metadata/annotations", "rollback replaces /spec/template only"}},
		{name: "rollback whose template has a field no pod template has", plan: "deployment-rollback",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				o := ops(t, st.Patch)
				o[1]["value"].(map[string]any)["Spec"] = map[string]any{"hostPID": true}
				st.Patch = enc(t, o)
			},
			want: []string{"step 1 (rollback)", "value is not a pod template"}},
		{name: "set_image that makes the container privileged", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Patch = appendOp(t, st.Patch, map[string]any{"op": "add", "path": "/spec/template/spec/containers/0/securityContext", "value": map[string]any{"privileged": true}})
			},
			want: []string{"step 1 (set_image)", "operation 3 (add /spec/template/spec/containers/0/securityContext)", "set_image replaces only"}},
		{name: "set_image that mounts the node's root (volumes, hostPath)", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Patch = appendOp(t, st.Patch, map[string]any{"op": "add", "path": "/spec/template/spec/volumes", "value": []any{map[string]any{"name": "root", "hostPath": map[string]any{"path": "/"}}}})
				st.Patch = appendOp(t, st.Patch, map[string]any{"op": "add", "path": "/spec/template/spec/containers/0/volumeMounts", "value": []any{map[string]any{"name": "root", "mountPath": "/host"}}})
			},
			want: []string{"step 1 (set_image)", "add /spec/template/spec/volumes", "set_image replaces only"}},
		{name: "set_image of two containers", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Patch = appendOp(t, st.Patch, map[string]any{"op": "replace", "path": "/spec/template/spec/initContainers/0/image", "value": "evil:1"})
			},
			want: []string{"step 1 (set_image)", "changes initContainers/0 as well as containers/0"}},
		{name: "set_image with a non-string image", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				o := ops(t, st.Patch)
				o[2]["value"] = map[string]any{"image": "x"}
				st.Patch = enc(t, o)
			},
			want: []string{"step 1 (set_image)", "value must be a non-empty string"}},
		{name: "a move operation", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Patch = appendOp(t, st.Patch, map[string]any{"op": "move", "from": "/spec/template/spec/containers/1/image", "path": "/spec/template/spec/containers/0/image"})
			},
			want: []string{"step 1 (set_image)", `key "from" not allowed`}},
		{name: "a second path key spelt differently (parser differential)", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Patch = appendOp(t, st.Patch, map[string]any{"op": "replace", "path": "/spec/template/spec/containers/0/image", "Path": "/spec/replicas", "value": "x"})
			},
			want: []string{"step 1 (set_image)", `key "Path" not allowed`}},
		{name: "undo patch touching a path outside its action", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.UndoPatch = appendOp(t, st.UndoPatch, map[string]any{"op": "add", "path": "/spec/template/spec/hostNetwork", "value": true})
			},
			want: []string{"step 1 (set_image)", "undo_patch: operation 3 (add /spec/template/spec/hostNetwork)"}},
		{name: "unguarded undo patch", plan: "deployment-rollback",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.UndoPatch = enc(t, ops(t, st.UndoPatch)[1:])
			},
			want: []string{"step 1 (rollback)", "undo_patch: first operation must be", "value\":3}"}},
		{name: "set_memory_limit that lifts the CPU limit", plan: "deployment-set-memory-limit",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Patch = appendOp(t, st.Patch, map[string]any{"op": "remove", "path": "/spec/template/spec/containers/0/resources/limits/cpu"})
			},
			want: []string{"step 0 (set_memory_limit)", "remove /spec/template/spec/containers/0/resources/limits/cpu"}},
		{name: "set_memory_limit that replaces the whole limits map", plan: "deployment-set-memory-limit",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Patch = appendOp(t, st.Patch, map[string]any{"op": "add", "path": "/spec/template/spec/containers/0/resources/limits", "value": map[string]string{"memory": "1Gi"}})
			},
			want: []string{"step 0 (set_memory_limit)", "add /spec/template/spec/containers/0/resources/limits)"}},
		{name: "set_memory_limit with a value that is not a quantity", plan: "deployment-set-memory-limit",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				o := ops(t, st.Patch)
				o[2]["value"] = "a lot"
				st.Patch = enc(t, o)
			},
			want: []string{"step 0 (set_memory_limit)", `"a lot" is not a quantity`}},
		{name: "set_resource_requests that sets a limit", plan: "deployment-set-resource-requests",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Patch = appendOp(t, st.Patch, map[string]any{"op": "replace", "path": "/spec/template/spec/containers/0/resources/limits/cpu", "value": "64"})
			},
			want: []string{"step 0 (set_resource_requests)", "resources/limits/cpu"}},
		{name: "add_toleration that tolerates every taint", plan: "deployment-add-toleration",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				o := ops(t, st.Patch)
				o[1]["value"] = []any{map[string]any{"operator": "Exists"}}
				st.Patch = enc(t, o)
			},
			want: []string{"step 0 (add_toleration)", "tolerates every taint"}},
		{name: "add_toleration whose key is spelt for Go, not for the API server", plan: "deployment-add-toleration",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				o := ops(t, st.Patch)
				o[1]["value"] = []any{map[string]any{"Key": "dedicated", "operator": "Exists"}}
				st.Patch = enc(t, o)
			},
			want: []string{"step 0 (add_toleration)", "value is not a list of tolerations", "Key"}},
		{name: "add_toleration that also sets the node name", plan: "deployment-add-toleration",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Patch = appendOp(t, st.Patch, map[string]any{"op": "add", "path": "/spec/template/spec/nodeName", "value": "control-plane"})
			},
			want: []string{"step 0 (add_toleration)", "add_toleration changes /spec/template/spec/tolerations only"}},
		{name: "set_node_selector that sets an affinity", plan: "deployment-set-node-selector",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Patch = appendOp(t, st.Patch, map[string]any{"op": "add", "path": "/spec/template/spec/affinity", "value": map[string]any{}})
			},
			want: []string{"step 0 (set_node_selector)", "nodeSelector only"}},
		{name: "rollout_restart that adds another template annotation", plan: "statefulset-rollout-restart",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				o := ops(t, st.Patch)
				o[1]["value"].(map[string]any)["container.apparmor.security.beta.kubernetes.io/app"] = "unconfined"
				st.Patch = enc(t, o)
			},
			want: []string{"step 0 (rollout_restart)", "kubectl.kubernetes.io/restartedAt alone"}},
		{name: "rollout_restart that changes the Deployment's own metadata", plan: "deployment-rollout-restart",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				o := ops(t, st.Patch)
				o[1]["path"] = "/metadata/annotations/kubectl.kubernetes.io~1restartedAt"
				st.Patch = enc(t, o)
			},
			want: []string{"step 1 (rollout_restart)", "rollout_restart adds /spec/template/metadata/annotations/"}},
		{name: "a diagnostic step marked mutating, with a patch", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				p.Steps[0].Mutating = true
				p.Steps[0].Target = p.Target
				p.Steps[0].PatchType = events.PatchJSON
				p.Steps[0].Patch = json.RawMessage(`[{"op":"test","path":"/metadata/generation","value":2},{"op":"replace","path":"/spec/replicas","value":0}]`)
			},
			want: []string{"step 0 (diagnostic)", "mutating is true for an action that is mutating=false"}},

		// Pods: listed by uid, controlled, at most max_pods.
		{name: "delete_evicted_pods with no uid list", plan: "deployment-delete-evicted-pods",
			edit: func(t *testing.T, p *events.Plan) { delete(mutating(t, p).Params, "uids") },
			want: []string{"step 0 (delete_evicted_pods)", "params.uids: required"}},
		{name: "delete_evicted_pods with more uids than max_pods", plan: "deployment-delete-evicted-pods",
			cfg:  func(c *catalogueConfig) { c.MaxPods = 1 },
			want: []string{"deletes 2 pods, more than remediation.max_pods (1)"}},
		{name: "delete_evicted_pods of another Deployment", plan: "deployment-delete-evicted-pods",
			edit: func(t *testing.T, p *events.Plan) { mutating(t, p).Target.Name = "payments-api" },
			want: []string{"step 0 (delete_evicted_pods)", "is not the plan's target"}},
		{name: "delete_evicted_pods with a repeated uid", plan: "deployment-delete-evicted-pods",
			edit: func(t *testing.T, p *events.Plan) { mutating(t, p).Params["uids"] = "a,a" },
			want: []string{"step 0 (delete_evicted_pods)", "empty or repeated uid"}},
		{name: "more delete_pod steps than max_pods", plan: "job-delete-pod",
			cfg:  func(c *catalogueConfig) { c.MaxPods = 1 },
			want: []string{"deletes 2 pods, more than remediation.max_pods (1)"}},
		{name: "delete_pod without a uid", plan: "job-delete-pod",
			edit: func(t *testing.T, p *events.Plan) { st := mutating(t, p); st.Target.UID = ""; delete(st.Params, "uid") },
			want: []string{"step 0 (delete_pod)", "target.uid required"}},
		{name: "delete_pod whose uid param disagrees with its target", plan: "job-delete-pod",
			edit: func(t *testing.T, p *events.Plan) { mutating(t, p).Params["uid"] = "other" },
			want: []string{"step 0 (delete_pod)", "params.uid other is not the target's uid"}},
		{name: "delete_pod in another namespace", plan: "job-delete-pod",
			edit: func(t *testing.T, p *events.Plan) { mutating(t, p).Target.Namespace = "billing" },
			want: []string{"step 0 (delete_pod)", "not the plan's namespace apps"}},
		{name: "delete_pod of something that is not a pod", plan: "job-delete-pod",
			edit: func(t *testing.T, p *events.Plan) { mutating(t, p).Target.Kind = "Deployment" },
			want: []string{"step 0 (delete_pod)", "target.kind must be Pod"}},
		{name: "delete_pod of a bare pod (nothing recreates it)", plan: "pod-set-image-generation-guard",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				*st = events.Step{Index: st.Index, Action: events.ActionDeletePod, Title: "delete", Target: p.Target, Risk: events.RiskLow, Mutating: true}
			},
			want: []string{"step 0 (delete_pod)", "a pod without a controller"}},
		{name: "delete_pod that carries a patch", plan: "job-delete-pod",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.PatchType = events.PatchJSON
				st.Patch = json.RawMessage(`[{"op":"test","path":"/metadata/generation","value":1}]`)
			},
			want: []string{"step 0 (delete_pod)", "carries no patch"}},

		// Policy.
		{name: "protected namespace", plan: "deployment-rollback", reason: events.RefusalNotApproved,
			cfg:  func(c *catalogueConfig) { c.ProtectedNamespaces = append(c.ProtectedNamespaces, "shop") },
			want: []string{"step 1 (rollback)", "changes protected namespace shop (policy.protected_namespaces)"}},
		{name: "a step into a protected namespace from an unprotected plan", plan: "job-delete-pod", reason: events.RefusalNotApproved,
			edit: func(t *testing.T, p *events.Plan) { mutating(t, p).Target.Namespace = "kube-system" },
			want: []string{"step 0 (delete_pod)", "changes protected namespace kube-system"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := plannerPlan(t, tt.plan)
			cfg := catalogueTestConfig
			cfg.ProtectedNamespaces = slices.Clone(cfg.ProtectedNamespaces)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			if tt.edit != nil {
				tt.edit(t, &p)
			}
			p.Seal() // a correct digest: the bus cannot tell
			r := validatePlanSteps(p, cfg)
			if r == nil {
				t.Fatal("accepted")
			}
			reason := tt.reason
			if reason == "" {
				reason = events.RefusalInvalidStep
			}
			if r.Reason != reason || !errors.Is(r, reasonErr(reason)) {
				t.Errorf("reason %s, want %s", r.Reason, reason)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.Message, w) {
					t.Errorf("message %q lacks %q", r.Message, w)
				}
			}
			if !strings.Contains(r.Message, p.ID) {
				t.Errorf("message %q does not name the plan", r.Message)
			}
		})
	}
}

// The risk auto-approval goes by is the catalogue's, not the plan's: a
// plan that calls its rollback harmless is still a rollback.
func TestAutoApprovalTakesTheRiskFromTheCatalogue(t *testing.T) {
	svc := func(maxRisk events.RiskLevel, p events.Plan) *Service {
		return &Service{cfg: Config{Cluster: p.Cluster, AutoApprove: true, AutoApproveMaxRisk: maxRisk,
			ProtectedNamespaces: []string{"kube-system"}}.withDefaults(), now: func() time.Time { return p.CreatedAt.Add(time.Minute) }}
	}
	harmless := func(p events.Plan) events.Plan {
		p.Risk = events.RiskNone
		for i := range p.Steps {
			p.Steps[i].Risk = events.RiskNone
		}
		p.Seal()
		return p
	}
	rollback := plannerPlan(t, "deployment-rollback")
	restart := plannerPlan(t, "deployment-rollout-restart")
	tests := []struct {
		name    string
		p       events.Plan
		maxRisk events.RiskLevel
		want    string // "" = approved
	}{
		{"a rollback claiming risk none is medium", harmless(rollback), events.RiskLow, "step 1 (rollback) has risk medium, above remediation.auto_approve_max_risk low"},
		{"a set_image claiming risk none is medium", harmless(plannerPlan(t, "deployment-set-image")), events.RiskLow, "step 1 (set_image) has risk medium"},
		{"a rollback within the limit", rollback, events.RiskMedium, ""},
		{"a restart within the limit", harmless(restart), events.RiskLow, ""},
		{"a restart claiming a higher risk keeps it", func() events.Plan {
			p := restart
			p.Steps = slices.Clone(p.Steps)
			p.Steps[1].Risk = events.RiskHigh
			return p
		}(), events.RiskMedium, "step 1 (rollout_restart) has risk high"},
		{"a plan outside the catalogue", func() events.Plan {
			p := restart
			p.Steps = slices.Clone(p.Steps)
			p.Steps[1].PatchType = events.PatchMerge
			p.Steps[1].Patch = json.RawMessage(`{"spec":{"replicas":0}}`)
			p.Seal()
			return p
		}(), events.RiskHigh, `patch_type "merge"`},
		{"a protected namespace", func() events.Plan {
			p := restart
			p.Namespace, p.Target.Namespace = "kube-system", "kube-system"
			p.Steps = slices.Clone(p.Steps)
			p.Steps[1].Target.Namespace = "kube-system"
			return p
		}(), events.RiskHigh, "changes protected namespace kube-system"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := svc(tt.maxRisk, tt.p).autoApprovable(tt.p)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("autoApprovable = %q, want %q", got, tt.want)
			}
		})
	}
	if got := planRisk(harmless(rollback)); got != events.RiskMedium {
		t.Errorf("planRisk of a harmless-claiming rollback = %s, want medium", got)
	}
}

// FuzzCatalogueSetImage feeds arbitrary patches to a set_image step of a
// real plan: the check never panics, and whatever it accepts starts with
// the generation test and writes nothing but container images.
func FuzzCatalogueSetImage(f *testing.F) {
	for _, seed := range []string{
		`[{"op":"test","path":"/metadata/generation","value":2},{"op":"test","path":"/spec/template/spec/containers/0/name","value":"app"},{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.27"}]`,
		`[{"op":"test","path":"/metadata/generation","value":2},{"op":"replace","path":"/spec/replicas","value":0}]`,
		`[{"op":"test","path":"/metadata/generation","value":2},{"op":"replace","path":"/spec/template/spec/containers/0/image","Path":"/spec/replicas","value":"x"}]`,
		`{"spec":{"replicas":0}}`, `[]`, `[{}]`, `null`,
	} {
		f.Add([]byte(seed))
	}
	base := func() events.Plan {
		b, err := os.ReadFile(filepath.Join(plannerPlansDir, "deployment-set-image.json"))
		if err != nil {
			f.Fatal(err)
		}
		var p events.Plan
		if err := json.Unmarshal(b, &p); err != nil {
			f.Fatal(err)
		}
		return p
	}()
	f.Fuzz(func(t *testing.T, patch []byte) {
		p := base
		p.Steps = slices.Clone(base.Steps)
		p.Steps[1].Patch, p.Steps[1].UndoPatch = patch, nil
		if validatePlanSteps(p, catalogueTestConfig) != nil {
			return
		}
		var ops []map[string]json.RawMessage
		if err := json.Unmarshal(patch, &ops); err != nil || len(ops) == 0 {
			t.Fatalf("accepted a patch that is not a list of operations: %s", patch)
		}
		if string(ops[0]["op"]) != `"test"` || string(ops[0]["path"]) != `"/metadata/generation"` || string(ops[0]["value"]) != "2" {
			t.Fatalf("accepted a patch without the generation test first: %s", patch)
		}
		for _, op := range ops[1:] {
			var path string
			_ = json.Unmarshal(op["path"], &path)
			if string(op["op"]) != `"test"` && !(strings.HasPrefix(path, "/spec/template/spec/") && strings.HasSuffix(path, "/image")) {
				t.Fatalf("accepted a write outside container images: %s", patch)
			}
		}
	})
}
