package executor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	kjson "sigs.k8s.io/json"
)

// The action catalogue: what each action may do, checked by the executor
// on every plan it is asked to run, whatever the plan says about itself
// (DESIGN.md invariant 8). The bus is not trusted for authority: a plan
// in the plans bucket may have been written by anyone who could write
// there, so its target, its patches and its risk are re-derived here from
// the plan's target kind and the step's action, never from the plan's own
// text. The shapes are exactly those services/planner/actions*.go emit
// (services/planner/testdata/plans, its golden files, holds real plans of
// every action family; catalogue_test.go reads them).

// catalogueConfig is what the catalogue check needs of the configuration.
type catalogueConfig struct {
	// MaxPods bounds the pods one plan may delete (remediation.max_pods).
	MaxPods int
	// ProtectedNamespaces never get a mutating step
	// (policy.protected_namespaces).
	ProtectedNamespaces []string
}

func (c Config) catalogue() catalogueConfig {
	return catalogueConfig{MaxPods: c.MaxPods, ProtectedNamespaces: c.ProtectedNamespaces}
}

// actionRisk is the risk of each action, as the planner grades it. The
// executor uses it instead of the plan's risk fields: a plan may claim a
// higher risk for a step, never a lower one.
var actionRisk = map[events.ActionType]events.RiskLevel{
	events.ActionRollback:            events.RiskMedium,
	events.ActionSetImage:            events.RiskMedium,
	events.ActionSetMemoryLimit:      events.RiskLow,
	events.ActionRolloutRestart:      events.RiskLow,
	events.ActionDeletePod:           events.RiskLow,
	events.ActionDeleteEvictedPods:   events.RiskLow,
	events.ActionAddToleration:       events.RiskMedium,
	events.ActionSetNodeSelector:     events.RiskMedium,
	events.ActionSetResourceRequests: events.RiskMedium,
	// A Service routed to other pods: medium, as a selector or port
	// change can send traffic where it was not meant to go.
	events.ActionSetServiceSelector:   events.RiskMedium,
	events.ActionSetServiceTargetPort: events.RiskMedium,
	events.ActionDiagnostic:           events.RiskNone,
	events.ActionCheckLogs:            events.RiskNone,
}

// stepRisk is the risk of a step: the catalogue's for its action, or the
// step's own when that is higher. An action outside the catalogue is high.
func stepRisk(st events.Step) events.RiskLevel {
	r, ok := actionRisk[st.Action]
	if !ok {
		return events.RiskHigh
	}
	if st.Risk.Validate() == nil && riskIndex(st.Risk) > riskIndex(r) {
		return st.Risk
	}
	return r
}

func riskIndex(r events.RiskLevel) int { return slices.Index(events.RiskLevels(), r) }

// planRisk is the highest stepRisk of the plan's mutating steps.
func planRisk(p events.Plan) events.RiskLevel {
	risk := events.RiskNone
	for _, st := range p.Steps {
		if r := stepRisk(st); st.Mutating && riskIndex(r) > riskIndex(risk) {
			risk = r
		}
	}
	return risk
}

// Paths the planner's patches use.
const (
	restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"
	resourceVersionPath   = "/metadata/resourceVersion"
)

// shape locates the pod template and the pod spec in an object of a
// kind ("" template for a Pod, which has none), and matches the paths
// under one of the spec's containers.
type shape struct {
	template  string
	spec      string
	container *regexp.Regexp
}

func newShape(template, spec string) shape {
	return shape{template: template, spec: spec,
		container: regexp.MustCompile(`^` + regexp.QuoteMeta(spec) + `/(containers|initContainers)/(0|[1-9][0-9]{0,3})/(.+)$`)}
}

var kindShapes = map[string]shape{
	kindDeployment:  newShape("/spec/template", "/spec/template/spec"),
	kindStatefulSet: newShape("/spec/template", "/spec/template/spec"),
	kindDaemonSet:   newShape("/spec/template", "/spec/template/spec"),
	kindReplicaSet:  newShape("/spec/template", "/spec/template/spec"),
	kindJob:         newShape("/spec/template", "/spec/template/spec"),
	kindCronJob:     newShape("/spec/jobTemplate/spec/template", "/spec/jobTemplate/spec/template/spec"),
	kindPod:         newShape("", "/spec"),
}

// containerFields are the fields of one container each container action
// may replace.
var containerFields = map[events.ActionType][]string{
	events.ActionSetImage:            {"image"},
	events.ActionSetMemoryLimit:      {"resources/limits/memory", "resources/requests/memory"},
	events.ActionSetResourceRequests: {"resources/requests/cpu", "resources/requests/memory"},
}

// patchKinds lists, for each patch action, the target kinds the planner
// plans it for (a template the API server lets change in place; a bare
// pod only where a pod's spec may change).
var patchKinds = map[events.ActionType][]string{
	events.ActionRollback:            {kindDeployment},
	events.ActionSetImage:            {kindDeployment, kindStatefulSet, kindDaemonSet, kindCronJob, kindPod},
	events.ActionSetMemoryLimit:      {kindDeployment, kindStatefulSet, kindDaemonSet, kindCronJob},
	events.ActionSetResourceRequests: {kindDeployment, kindStatefulSet, kindDaemonSet, kindCronJob},
	events.ActionAddToleration:       {kindDeployment, kindStatefulSet, kindDaemonSet, kindCronJob, kindPod},
	events.ActionSetNodeSelector:     {kindDeployment, kindStatefulSet, kindDaemonSet, kindCronJob},
	events.ActionRolloutRestart:      {kindDeployment, kindStatefulSet, kindDaemonSet},
}

// evictedKinds are the targets whose evicted pods can be selected (the
// kinds podSelector knows).
var evictedKinds = []string{kindDeployment, kindStatefulSet, kindDaemonSet, kindReplicaSet, kindJob}

// validatePlanSteps checks every step of p against the action catalogue,
// independently of what the plan claims: each step acts on the plan's
// target (or, for pod deletions, on pods listed by uid, at most
// MaxPods of them), outside protected namespaces, with a JSON patch whose
// first operation tests the target's planned generation and whose other
// operations write only the paths of the step's action; the undo patch
// obeys the same rules. It returns nil or a refusal naming the step and
// the reason: invalid_step, or not_approved for a protected namespace
// (policy, not a malformed step). It is pure: nothing is read from the
// cluster. Whether a deleted pod is controlled by the target needs the
// cluster and is checked after the claim (checkPodsControlled).
func validatePlanSteps(p events.Plan, c catalogueConfig) *refusal {
	ns := p.Namespace
	if p.Target.Namespace != "" && p.Target.Namespace != ns {
		return invalidStep("plan %s: target %s is not in the plan's namespace %s", p.ID, p.Target, ns)
	}
	if p.Mutating() && !slices.Contains(supportedKinds, p.Target.Kind) {
		return invalidStep("plan %s: target kind %q is not one the executor changes (%s)", p.ID, p.Target.Kind, strings.Join(supportedKinds, ", "))
	}
	target := p.Target
	target.Namespace = ns
	pods := 0
	for _, st := range p.Steps {
		if !st.Mutating && !st.Action.Mutating() {
			continue // for people: never applied
		}
		stepNS := st.Target.Namespace
		if stepNS == "" {
			stepNS = ns
		}
		if slices.Contains(c.ProtectedNamespaces, stepNS) {
			return refuse(events.RefusalNotApproved, "step %d (%s) of plan %s changes protected namespace %s (policy.protected_namespaces)", st.Index, st.Action, p.ID, stepNS)
		}
		n, err := checkStep(p, target, st)
		if err != nil {
			return invalidStep("step %d (%s) of plan %s: %v", st.Index, st.Action, p.ID, err)
		}
		pods += n
	}
	if pods > c.MaxPods {
		return invalidStep("plan %s deletes %d pods, more than remediation.max_pods (%d)", p.ID, pods, c.MaxPods)
	}
	return nil
}

// invalidStep is a refusal of a plan outside the catalogue.
func invalidStep(format string, a ...any) *refusal {
	return refuse(events.RefusalInvalidStep, format, a...)
}

// checkStep checks one mutating step; it returns how many pods the step
// deletes.
func checkStep(p events.Plan, target events.ObjectRef, st events.Step) (int, error) {
	if !st.Mutating || !st.Action.Mutating() {
		return 0, fmt.Errorf("mutating is %t for an action that is mutating=%t", st.Mutating, st.Action.Mutating())
	}
	ref := st.Target
	if ref.Namespace == "" {
		ref.Namespace = target.Namespace
	}
	if ref.Namespace != target.Namespace {
		return 0, fmt.Errorf("target %s is in namespace %s, not the plan's namespace %s", ref, ref.Namespace, target.Namespace)
	}
	switch st.Action {
	case events.ActionDeletePod:
		return 1, checkPodDeletion(target, ref, st)
	case events.ActionDeleteEvictedPods:
		return checkEvictedDeletion(target, ref, st)
	}
	if isServiceAction(st.Action) {
		return 0, checkServiceStep(p, target, ref, st)
	}
	kinds, ok := patchKinds[st.Action]
	if !ok {
		return 0, fmt.Errorf("action %q is not in the executor's catalogue", st.Action)
	}
	if err := sameObject(ref, target); err != nil {
		return 0, err
	}
	if !slices.Contains(kinds, target.Kind) {
		return 0, fmt.Errorf("action %s is not planned for a %s (only %s)", st.Action, target.Kind, strings.Join(kinds, ", "))
	}
	if st.PatchType != events.PatchJSON {
		return 0, fmt.Errorf("patch_type %q: only JSON patches are executed (a merge or strategic patch cannot be guarded by the generation test)", st.PatchType)
	}
	if len(st.Patch) == 0 {
		return 0, errors.New("patch: required: the executor applies planned patches only")
	}
	sh := kindShapes[target.Kind]
	if err := checkPatch(p, st.Action, sh, st.Patch, 0); err != nil {
		return 0, fmt.Errorf("patch: %w", err)
	}
	if len(st.UndoPatch) > 0 {
		if err := checkPatch(p, st.Action, sh, st.UndoPatch, 1); err != nil {
			return 0, fmt.Errorf("undo_patch: %w", err)
		}
	}
	return 0, nil
}

// sameObject reports a step target other than the plan's: another kind,
// namespace, name, or uid (when both name one).
func sameObject(ref, target events.ObjectRef) error {
	switch {
	case ref.Kind != target.Kind, ref.Name != target.Name, ref.Namespace != target.Namespace:
		return fmt.Errorf("target %s is not the plan's target %s", ref, target)
	case ref.UID != "" && target.UID != "" && ref.UID != target.UID:
		return fmt.Errorf("target %s has uid %s, the plan's target has uid %s", ref, ref.UID, target.UID)
	case ref.APIVersion != "" && target.APIVersion != "" && ref.APIVersion != target.APIVersion:
		return fmt.Errorf("target %s has apiVersion %s, the plan's target %s", ref, ref.APIVersion, target.APIVersion)
	}
	return nil
}

func noPatch(st events.Step) error {
	if len(st.Patch) > 0 || len(st.UndoPatch) > 0 || st.PatchType != events.PatchNone {
		return fmt.Errorf("a pod deletion carries no patch (patch_type %q)", st.PatchType)
	}
	return nil
}

// checkPodDeletion: one pod of the target's namespace, named by uid, of a
// plan whose target is a controller (a bare pod is never deleted: nothing
// would bring it back).
func checkPodDeletion(target, ref events.ObjectRef, st events.Step) error {
	switch {
	case target.Kind == kindPod:
		return fmt.Errorf("the plan's target %s is a pod without a controller: deleting it would not restart it", target)
	case ref.Kind != kindPod:
		return fmt.Errorf("target %s: target.kind must be Pod", ref)
	case ref.UID == "":
		return fmt.Errorf("target %s: target.uid required: a pod is deleted by uid", ref)
	case st.Params["uid"] != "" && st.Params["uid"] != ref.UID:
		return fmt.Errorf("params.uid %s is not the target's uid %s", st.Params["uid"], ref.UID)
	}
	return noPatch(st)
}

// checkEvictedDeletion: the plan's target's evicted pods, listed by uid.
func checkEvictedDeletion(target, ref events.ObjectRef, st events.Step) (int, error) {
	if err := sameObject(ref, target); err != nil {
		return 0, err
	}
	if !slices.Contains(evictedKinds, target.Kind) {
		return 0, fmt.Errorf("the evicted pods of a %s cannot be selected (only %s)", target.Kind, strings.Join(evictedKinds, ", "))
	}
	if err := noPatch(st); err != nil {
		return 0, err
	}
	if strings.TrimSpace(st.Params["uids"]) == "" {
		return 0, errors.New("params.uids: required: the evicted pods to delete are listed by uid (at most remediation.max_pods)")
	}
	var uids []string
	for u := range strings.SplitSeq(st.Params["uids"], ",") {
		u = strings.TrimSpace(u)
		if u == "" || slices.Contains(uids, u) {
			return 0, fmt.Errorf("params.uids %q: empty or repeated uid", st.Params["uids"])
		}
		uids = append(uids, u)
	}
	return len(uids), nil
}

// patchOp is one operation of a JSON patch, as the API server reads it.
type patchOp struct {
	Op    string
	Path  string
	Value json.RawMessage // nil when absent
}

// parseOps decodes a JSON patch the way the API server's json-patch
// library does (one object per operation, keys matched exactly), and
// refuses what the catalogue never uses: unknown keys, move and copy.
func parseOps(raw json.RawMessage) ([]patchOp, error) {
	var objs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &objs); err != nil {
		return nil, fmt.Errorf("not a JSON patch (an array of operations): %w", err)
	}
	if len(objs) == 0 {
		return nil, errors.New("no operation")
	}
	ops := make([]patchOp, len(objs))
	for i, o := range objs {
		for k := range o {
			if k != "op" && k != "path" && k != "value" {
				return nil, fmt.Errorf("operation %d: key %q not allowed (op, path, value)", i, k)
			}
		}
		if json.Unmarshal(o["op"], &ops[i].Op) != nil || json.Unmarshal(o["path"], &ops[i].Path) != nil {
			return nil, fmt.Errorf("operation %d: op and path must be strings", i)
		}
		switch ops[i].Op {
		case "test", "add", "replace":
			if o["value"] == nil {
				return nil, fmt.Errorf("operation %d (%s %s): value required", i, ops[i].Op, ops[i].Path)
			}
		case "remove":
		default:
			return nil, fmt.Errorf("operation %d: op %q not allowed (test, add, replace, remove)", i, ops[i].Op)
		}
		ops[i].Value = o["value"]
	}
	return ops, nil
}

// checkPatch checks a patch (after = 0) or an undo patch (after = 1) of
// a step: the guard first, then every operation against the action's
// paths. Test operations only read: they are allowed anywhere.
func checkPatch(p events.Plan, action events.ActionType, sh shape, raw json.RawMessage, after int64) error {
	ops, err := parseOps(raw)
	if err != nil {
		return err
	}
	if err := checkGuard(p, ops[0], after); err != nil {
		return err
	}
	container := "" // the one container set_image and set_memory_limit change
	for i, op := range ops[1:] {
		if op.Op == "test" {
			continue
		}
		c, err := allowedOp(action, sh, op, after == 0)
		if err != nil {
			return fmt.Errorf("operation %d (%s %s): %w", i+1, op.Op, op.Path, err)
		}
		if action == events.ActionSetImage || action == events.ActionSetMemoryLimit {
			if container != "" && c != container {
				return fmt.Errorf("operation %d (%s %s): changes %s as well as %s: the action changes one container", i+1, op.Op, op.Path, c, container)
			}
			container = c
		}
	}
	return nil
}

// checkGuard: the first operation tests the generation the plan was made
// at (plus after, for an undo patch: the generation the step leaves), or,
// for a pod planned without a generation, its resourceVersion, as the
// planner's guardOp writes it.
func checkGuard(p events.Plan, op patchOp, after int64) error {
	if p.TargetGeneration > 0 {
		want := strconv.FormatInt(p.TargetGeneration+after, 10)
		if op.Op != "test" || op.Path != generationPath || !bytes.Equal(bytes.TrimSpace(op.Value), []byte(want)) {
			return fmt.Errorf("first operation must be {\"op\":\"test\",\"path\":%q,\"value\":%s} (target_generation %d), not %s %s %s",
				generationPath, want, p.TargetGeneration, op.Op, op.Path, op.Value)
		}
		return nil
	}
	if p.Target.Kind != kindPod {
		return fmt.Errorf("target_generation is 0: a %s patch cannot be guarded by its generation", p.Target.Kind)
	}
	if after > 0 {
		return errors.New("a pod planned without a generation has no guard for an undo patch")
	}
	var rv string
	if op.Op != "test" || op.Path != resourceVersionPath || json.Unmarshal(op.Value, &rv) != nil || rv != p.TargetResourceVersion {
		return fmt.Errorf("first operation must be {\"op\":\"test\",\"path\":%q,\"value\":%q} (target_resource_version), not %s %s %s",
			resourceVersionPath, p.TargetResourceVersion, op.Op, op.Path, op.Value)
	}
	return nil
}

// containerField splits a path under a container of the pod spec into
// the container ("containers/0") and the rest ("image").
func containerField(sh shape, path string) (container, rest string, ok bool) {
	m := sh.container.FindStringSubmatch(path)
	if m == nil {
		return "", "", false
	}
	return m[1] + "/" + m[2], m[3], true
}

// allowedOp checks a writing operation against the action's paths and
// values; it returns the container it changes, if any. forward is false
// for an undo patch, which may put back what the workload had.
func allowedOp(action events.ActionType, sh shape, op patchOp, forward bool) (string, error) {
	switch action {
	case events.ActionRollback:
		if op.Op != "replace" || op.Path != sh.template {
			return "", fmt.Errorf("rollback replaces %s only", sh.template)
		}
		var tmpl corev1.PodTemplateSpec
		return "", strictDecode(op.Value, &tmpl, "a pod template")
	case events.ActionSetImage, events.ActionSetMemoryLimit, events.ActionSetResourceRequests:
		c, rest, ok := containerField(sh, op.Path)
		allowed := containerFields[action]
		if !ok || op.Op != "replace" || !slices.Contains(allowed, rest) {
			return "", fmt.Errorf("%s replaces only %s/<containers|initContainers>/<i>/{%s}", action, sh.spec, strings.Join(allowed, ","))
		}
		var v string
		if err := json.Unmarshal(op.Value, &v); err != nil || v == "" {
			return "", errors.New("value must be a non-empty string")
		}
		if action != events.ActionSetImage {
			if _, err := resource.ParseQuantity(v); err != nil {
				return "", fmt.Errorf("value %q is not a quantity", v)
			}
		}
		return c, nil
	case events.ActionAddToleration:
		return "", allowedToleration(sh, op, forward)
	case events.ActionSetNodeSelector:
		if op.Path != sh.spec+"/nodeSelector" {
			return "", fmt.Errorf("set_node_selector changes %s/nodeSelector only", sh.spec)
		}
		if op.Op == "remove" {
			return "", nil
		}
		var sel map[string]string
		return "", strictDecode(op.Value, &sel, "a node selector (label: value)")
	case events.ActionRolloutRestart:
		return "", allowedRestart(sh, op)
	}
	return "", fmt.Errorf("action %q is not in the executor's catalogue", action)
}

func allowedToleration(sh shape, op patchOp, forward bool) error {
	path := sh.spec + "/tolerations"
	var tols []corev1.Toleration
	switch {
	case op.Path == path && op.Op == "remove":
		return nil
	case op.Path == path:
		if err := strictDecode(op.Value, &tols, "a list of tolerations"); err != nil {
			return err
		}
	case op.Path == path+"/-" && op.Op == "add":
		var t corev1.Toleration
		if err := strictDecode(op.Value, &t, "a toleration"); err != nil {
			return err
		}
		tols = []corev1.Toleration{t}
	default:
		return fmt.Errorf("add_toleration changes %s only", path)
	}
	if forward && slices.ContainsFunc(tols, func(t corev1.Toleration) bool { return t.Key == "" && t.Operator == corev1.TolerationOpExists }) {
		return errors.New("a toleration without a key tolerates every taint")
	}
	return nil
}

func allowedRestart(sh shape, op patchOp) error {
	annotations := sh.template + "/metadata/annotations"
	if op.Op != "add" {
		return fmt.Errorf("rollout_restart adds the %s annotation of the pod template only", restartedAtAnnotation)
	}
	var stamp string
	switch op.Path {
	case annotations + "/" + strings.ReplaceAll(restartedAtAnnotation, "/", "~1"):
		if json.Unmarshal(op.Value, &stamp) != nil || stamp == "" {
			return errors.New("value must be a non-empty string")
		}
		return nil
	case annotations:
		var m map[string]string
		if err := strictDecode(op.Value, &m, "annotations"); err != nil {
			return err
		}
		if len(m) != 1 || m[restartedAtAnnotation] == "" {
			return fmt.Errorf("the annotations added must be %s alone", restartedAtAnnotation)
		}
		return nil
	}
	return fmt.Errorf("rollout_restart adds %s/%s only", annotations, restartedAtAnnotation)
}

// strictDecode decodes a value into v as the API server does (field
// names matched case-sensitively), refusing unknown and repeated fields,
// so that a value is what the action writes and nothing more.
func strictDecode(raw json.RawMessage, v any, what string) error {
	strict, err := kjson.UnmarshalStrict(raw, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err == nil && len(strict) > 0 {
		err = errors.Join(strict...)
	}
	if err != nil {
		return fmt.Errorf("value is not %s: %w", what, err)
	}
	return nil
}
