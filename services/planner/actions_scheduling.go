package planner

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/scheduling"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"
)

// schedulingMessage is the reason the scheduler gave for the pod.
func (b *builder) schedulingMessage() string {
	if p := b.in.Pod; p != nil {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Message != "" {
				return c.Message
			}
		}
	}
	for _, e := range b.in.Events {
		if e.Reason == "FailedScheduling" {
			return e.Message
		}
	}
	return b.in.Incident.Message
}

// schedulableNodes are the Ready nodes that accept pods.
func (b *builder) schedulableNodes() []corev1.Node {
	var out []corev1.Node
	for _, n := range b.in.Nodes {
		if n.Spec.Unschedulable {
			continue
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// setNodeSelector fixes a node selector no node matches: to the
// strategy's params (label=value) when given, else to the selector of the
// last healthy revision, and only when a Ready, schedulable node matches
// it and has no taint the pods do not tolerate. It never guesses labels.
func (b *builder) setNodeSelector(st Strategy) (*candidate, string) {
	w := b.in.Owner
	if w.BarePod || !w.TemplateMutable {
		return nil, fmt.Sprintf("the node selector of %s cannot be changed in place", w.ref())
	}
	if !b.schedulingReport().Has(scheduling.KindNodeAffinity, "") {
		return nil, "the scheduler does not report a node selector mismatch"
	}
	want, from := maps.Clone(st.Params), "the strategy's params"
	if len(want) == 0 {
		r, ok := b.lastHealthy()
		if !ok {
			return nil, "no selector is configured (the strategy's params) and no older revision ran healthy to take one from; guessing node labels is not safe"
		}
		want, from = maps.Clone(r.RS.Spec.Template.Spec.NodeSelector), fmt.Sprintf("the selector of revision %d, the last that ran", r.Number)
	}
	if maps.Equal(want, w.Spec.NodeSelector) {
		return nil, fmt.Sprintf("the node selector is already %s", from)
	}
	sel := labels.SelectorFromSet(want)
	var match []string
	for _, n := range b.schedulableNodes() {
		if sel.Matches(labels.Set(n.Labels)) && untolerated(n.Spec.Taints, w.Spec.Tolerations) == nil {
			match = append(match, n.Name)
		}
	}
	if len(match) == 0 {
		return nil, fmt.Sprintf("no Ready, schedulable node without untolerated taints has the labels %q (%s)", sel.String(), from)
	}
	op, undo := nodeSelectorOps(w, want)
	shown := sel.String()
	if shown == "" {
		shown = "none (any node)"
	}
	params := want
	if len(want) == 0 {
		params = nil
	}
	return b.propose(ownerStep{
		action:        events.ActionSetNodeSelector,
		title:         fmt.Sprintf("Set the node selector of %s to %s (matches %s)", w.ref(), shown, strings.Join(match, ", ")),
		risk:          events.RiskMedium,
		params:        params,
		ops:           []patchOp{op},
		undoOps:       []patchOp{undo},
		undo:          fmt.Sprintf("restore the node selector %s (the undo patch)", labelsString(w.Spec.NodeSelector)),
		kubectl:       b.kubectl("patch", w.ref(), "--type=json", "-p", string(encodePatch(op))),
		preconditions: []string{fmt.Sprintf("a Ready, schedulable node carries the labels %q and no taint the pods do not tolerate (now: %s)", sel.String(), strings.Join(match, ", "))},
		successCheck:  fmt.Sprintf("the pods of %s are scheduled and become ready", w.ref()),
	}, fmt.Sprintf("%s; set its node selector to %s.", problem(b.in), shown), "set_node_selector: the selector is "+from), ""
}

// nodeSelectorOps set the node selector to want, and set it back.
func nodeSelectorOps(w *workload, want map[string]string) (op, undo patchOp) {
	path := w.SpecPath + "/nodeSelector"
	switch {
	case len(want) == 0:
		return patchOp{Op: "remove", Path: path}, patchOp{Op: "add", Path: path, Value: w.Spec.NodeSelector}
	case w.Spec.NodeSelector == nil:
		return patchOp{Op: "add", Path: path, Value: want}, patchOp{Op: "remove", Path: path}
	default:
		return patchOp{Op: "replace", Path: path, Value: want}, patchOp{Op: "replace", Path: path, Value: w.Spec.NodeSelector}
	}
}

// untolerated returns the first NoSchedule or NoExecute taint that no
// toleration tolerates, or nil.
func untolerated(taints []corev1.Taint, tols []corev1.Toleration) *corev1.Taint {
	for i := range taints {
		t := &taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		if !slices.ContainsFunc(tols, func(tol corev1.Toleration) bool { return tolerates(tol, t) }) {
			return t
		}
	}
	return nil
}

// tolerates reports whether a toleration tolerates a taint (the Equal and
// Exists operators; an empty key with Exists tolerates everything).
func tolerates(tol corev1.Toleration, t *corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	if tol.Key == "" {
		return tol.Operator == corev1.TolerationOpExists
	}
	if tol.Key != t.Key {
		return false
	}
	switch tol.Operator {
	case corev1.TolerationOpExists:
		return true
	case corev1.TolerationOpEqual, "":
		return tol.Value == t.Value
	}
	return false
}

// addToleration adds a toleration the pods lack, when the scheduler
// reports an untolerated taint: the toleration given as the strategy's
// params (key, and value, operator, effect), else one the last healthy
// revision had. It is proposed only when a Ready, schedulable node that
// matches the node selector carries the taint and would then accept the
// pods. A toleration is never derived from the taint alone: taints
// reserve nodes for someone, so the permission has to come from the
// configuration or from the workload's own history.
func (b *builder) addToleration(st Strategy) (*candidate, string) {
	w := b.in.Owner
	if !w.BarePod && !w.TemplateMutable {
		return nil, fmt.Sprintf("the tolerations of %s cannot be changed in place", w.ref())
	}
	if !b.schedulingReport().Has(scheduling.KindTaint, "") {
		return nil, "the scheduler does not report an untolerated taint"
	}
	add, from, why := b.tolerationsToAdd(st)
	if why != "" {
		return nil, why
	}
	if slices.ContainsFunc(add, func(t corev1.Toleration) bool { return t.Key == "" && t.Operator == corev1.TolerationOpExists }) {
		return nil, "refused: a toleration without a key tolerates every taint"
	}
	match := b.nodesAcceptingWith(add)
	if len(match) == 0 {
		return nil, fmt.Sprintf("no Ready, schedulable node matching the node selector would accept the pods with the toleration from %s", from)
	}
	ops, undo := tolerationOps(w, add)
	desc := make([]string, len(add))
	for i, t := range add {
		desc[i] = tolerationString(t)
	}
	o := ownerStep{
		action:        events.ActionAddToleration,
		title:         fmt.Sprintf("Let the pods of %s tolerate %s (nodes %s)", w.ref(), strings.Join(desc, ", "), strings.Join(match, ", ")),
		risk:          events.RiskMedium,
		params:        tolerationParams(add[0]),
		ops:           ops,
		undo:          "remove the added toleration (the undo patch); pods already placed on the tainted nodes stay there until replaced",
		kubectl:       b.kubectl("patch", w.ref(), "--type=json", "-p", string(encodePatch(ops...))),
		preconditions: []string{"a Ready, schedulable node matching the node selector carries the taint and no other untolerated one (now: " + strings.Join(match, ", ") + ")"},
		successCheck:  fmt.Sprintf("the pods of %s are scheduled (on %s) and become ready", w.ref(), strings.Join(match, ", ")),
	}
	if undoable(w) {
		o.undoOps = []patchOp{undo}
	}
	return b.propose(o, fmt.Sprintf("%s; let it tolerate %s.", problem(b.in), strings.Join(desc, ", ")),
		"add_toleration: the toleration is "+from+"; it lets the pods onto nodes reserved by that taint"), ""
}

// tolerationsToAdd are the tolerations to add and where they come from:
// the strategy's params, else those the last healthy revision had and the
// current template lacks; or why there are none.
func (b *builder) tolerationsToAdd(st Strategy) (add []corev1.Toleration, from, why string) {
	if key := st.Params[events.ParamKey]; key != "" {
		tol := corev1.Toleration{Key: key, Value: st.Params[events.ParamValue],
			Operator: corev1.TolerationOperator(st.Params[events.ParamOperator]), Effect: corev1.TaintEffect(st.Params[events.ParamEffect])}
		if tol.Operator == "" {
			tol.Operator = corev1.TolerationOpEqual
			if tol.Value == "" {
				tol.Operator = corev1.TolerationOpExists
			}
		}
		return []corev1.Toleration{tol}, "the strategy's params", ""
	}
	r, ok := b.lastHealthy()
	if !ok {
		return nil, "", "the toleration to add is not configured (the strategy's params key, value, effect) and no older revision ran healthy to take it from; a taint reserves nodes, so kaar does not guess"
	}
	for _, tol := range r.RS.Spec.Template.Spec.Tolerations {
		if !slices.ContainsFunc(b.in.Owner.Spec.Tolerations, func(t corev1.Toleration) bool { return apiequality.Semantic.DeepEqual(t, tol) }) {
			add = append(add, tol)
		}
	}
	if len(add) == 0 {
		return nil, "", fmt.Sprintf("revision %d, the last that ran, had no toleration the current template lacks", r.Number)
	}
	return add, fmt.Sprintf("the tolerations of revision %d, the last that ran", r.Number), ""
}

// nodesAcceptingWith are the Ready, schedulable nodes matching the node
// selector that refuse the pods now and would accept them with the added
// tolerations.
func (b *builder) nodesAcceptingWith(add []corev1.Toleration) []string {
	w := b.in.Owner
	all := append(slices.Clone(w.Spec.Tolerations), add...)
	sel := labels.SelectorFromSet(w.Spec.NodeSelector)
	var match []string
	for _, n := range b.schedulableNodes() {
		newlyTolerated := untolerated(n.Spec.Taints, w.Spec.Tolerations) != nil
		if newlyTolerated && untolerated(n.Spec.Taints, all) == nil && sel.Matches(labels.Set(n.Labels)) {
			match = append(match, n.Name)
		}
	}
	return match
}

// tolerationOps add the tolerations (creating the list when the spec has
// none), and the undo operation.
func tolerationOps(w *workload, add []corev1.Toleration) (ops []patchOp, undo patchOp) {
	path := w.SpecPath + "/tolerations"
	if w.Spec.Tolerations == nil {
		return []patchOp{{Op: "add", Path: path, Value: add}}, patchOp{Op: "remove", Path: path}
	}
	for _, t := range add {
		ops = append(ops, patchOp{Op: "add", Path: path + "/-", Value: t})
	}
	return ops, patchOp{Op: "replace", Path: path, Value: w.Spec.Tolerations}
}

// tolerationParams are the step's params for a toleration.
func tolerationParams(t corev1.Toleration) map[string]string {
	params := map[string]string{events.ParamKey: t.Key, events.ParamOperator: string(t.Operator)}
	if t.Value != "" {
		params[events.ParamValue] = t.Value
	}
	if t.Effect != "" {
		params[events.ParamEffect] = string(t.Effect)
	}
	return params
}

// tolerationString renders a toleration as "key=value:Effect" or
// "key:Effect (exists)".
func tolerationString(t corev1.Toleration) string {
	s := t.Key
	if t.Operator == corev1.TolerationOpExists {
		s += " (any value)"
	} else {
		s += "=" + t.Value
	}
	if t.Effect != "" {
		s += ":" + string(t.Effect)
	}
	return s
}
