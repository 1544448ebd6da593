package planner

import (
	"fmt"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
)

// The steps of the action catalogue, one file per family:
// actions_diagnostic.go (check_logs, check_image), actions_rollout.go
// (rollback, set_image), actions_resources.go (set_memory_limit,
// set_resource_requests), actions_restart.go (rollout_restart,
// delete_pod), actions_cleanup.go (delete_evicted_pods),
// actions_scheduling.go (set_node_selector, add_toleration),
// actions_service.go (set_service_selector, set_service_target_port).
// Every mutating step on the plan's target is assembled by ownerStep.step.

// builder builds the steps of one plan from a planInput. Each mutating
// builder returns a candidate, or nil and the reason it does not apply.
type builder struct{ in planInput }

// ownerStep is what an action family decides about a mutating step on
// the plan's target; step assembles it, the same way for every family.
type ownerStep struct {
	action events.ActionType
	title  string
	risk   events.RiskLevel
	params map[string]string
	// ops is the change as a JSON patch, after the guard operation that
	// step prepends (guardOp) with its precondition; nil for a step that
	// does not patch the target (it has neither).
	ops []patchOp
	// undoOps is the undo patch's change, after the guard of the
	// generation the step leaves; nil for no undo patch.
	undoOps []patchOp
	// preconditions follow the guard's precondition.
	preconditions []string
	undo          string
	kubectl       string
	successCheck  string
}

// step assembles the step: the target, the guarded patch and undo patch,
// the preconditions.
func (b *builder) step(o ownerStep) events.Step {
	w := b.in.Owner
	st := events.Step{Action: o.action, Title: o.title, Target: w.Ref, Risk: o.risk, Mutating: true, Params: o.params,
		Undo: o.undo, Kubectl: o.kubectl, SuccessCheck: o.successCheck, Preconditions: o.preconditions}
	if o.ops != nil {
		st.PatchType = events.PatchJSON
		st.Patch = encodePatch(append([]patchOp{guardOp(w, 0)}, o.ops...)...)
		st.Preconditions = append([]string{b.generationPrecondition()}, o.preconditions...)
	}
	if o.undoOps != nil {
		st.UndoPatch = encodePatch(append([]patchOp{guardOp(w, 1)}, o.undoOps...)...)
	}
	return st
}

// propose is the candidate of one assembled step.
func (b *builder) propose(o ownerStep, summary string, notes ...string) *candidate {
	return &candidate{Steps: []events.Step{b.step(o)}, Summary: summary, Notes: notes}
}

// kubectl renders an equivalent command for people (never executed by
// kaar, but people and assistants run it): every argument shell-quoted, so
// an image or name from the cluster runs as shown.
func (b *builder) kubectl(args ...string) string {
	return text.ShellQuote(append([]string{"kubectl", "-n", b.in.Incident.Namespace}, args...)...)
}

// containerName is the incident's container, else the first one.
func (b *builder) containerName() string {
	if b.in.Incident.Container != "" {
		return b.in.Incident.Container
	}
	if _, c, _ := b.in.Owner.container(""); c != nil {
		return c.Name
	}
	return ""
}

// podRef is the pod the diagnostic steps point at.
func (b *builder) podRef() (events.ObjectRef, string) {
	if b.in.Pod != nil {
		return kindRef(KindPod, "v1", b.in.Pod.ObjectMeta), b.in.Pod.Name
	}
	if len(b.in.Incident.Pods) > 0 {
		name := b.in.Incident.Pods[0]
		return events.ObjectRef{Kind: KindPod, Namespace: b.in.Incident.Namespace, Name: name, APIVersion: "v1"}, name
	}
	return events.ObjectRef{}, ""
}

// generationPrecondition is the human form of the guard operation.
func (b *builder) generationPrecondition() string {
	w := b.in.Owner
	if w.Generation > 0 {
		return fmt.Sprintf("%s is still at generation %d (the patch's first operation tests it)", w.ref(), w.Generation)
	}
	return fmt.Sprintf("%s is still at resourceVersion %s (the patch's first operation tests it)", w.ref(), w.ResourceVersion)
}

// lastHealthy is the newest Deployment revision older than the current
// one whose pods ran (ready replicas); false for other kinds or when none
// did.
func (b *builder) lastHealthy() (revision, bool) {
	w := b.in.Owner
	if w.Deployment == nil {
		return revision{}, false
	}
	revs, current := rolloutHistory(w.Deployment, b.in.ReplicaSets)
	for _, r := range revs {
		if r.Number < current && r.RS.Status.ReadyReplicas > 0 {
			return r, true
		}
	}
	return revision{}, false
}

// noContainer is the reason a step needing the incident's container does
// not apply.
func (b *builder) noContainer() string {
	return fmt.Sprintf("%s has no container %q", b.in.Owner.ref(), b.in.Incident.Container)
}
