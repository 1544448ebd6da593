package planner

import (
	"fmt"
	"slices"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// restart is a rollout restart of the controller; for a controller
// without one (a ReplicaSet of its own, a Job), the deletion of its
// failing pods, which it recreates. A pod without a controller is never
// deleted to restart it: nothing would bring it back.
func (b *builder) restart(st Strategy) (*candidate, string) {
	w := b.in.Owner
	if why := probeKilledRestart(b.in.Incident); why != "" {
		return nil, why
	}
	if w.BarePod {
		return nil, fmt.Sprintf("pod %s has no controller: deleting it would not restart it but remove it; recreate it from its manifest", w.Ref.Name)
	}
	if !w.Restartable {
		cand, why := b.deletePods(st)
		if cand == nil {
			return nil, fmt.Sprintf("%s has no rollout restart, and its pods cannot be deleted instead: %s", w.ref(), why)
		}
		return cand, ""
	}
	// The timestamp is the incident's last observation, not the planning
	// time, so that planning the same observation twice gives the same
	// patch (and digest).
	at := b.in.Incident.LastSeen
	if at.IsZero() {
		at = b.in.Now
	}
	stamp := at.UTC().Format(time.RFC3339)
	var op patchOp
	if w.Template.Annotations == nil {
		op = patchOp{Op: "add", Path: w.TemplatePath + "/metadata/annotations", Value: map[string]string{annotationRestartedAt: stamp}}
	} else {
		op = patchOp{Op: "add", Path: w.TemplatePath + "/metadata/annotations/" + pointerEscape(annotationRestartedAt), Value: stamp}
	}
	return b.propose(ownerStep{
		action:       events.ActionRolloutRestart,
		title:        fmt.Sprintf("Restart the pods of %s (rollout restart)", w.ref()),
		risk:         events.RiskLow,
		ops:          []patchOp{op},
		undo:         "nothing to undo: the pods are replaced by identical ones",
		kubectl:      b.kubectl("rollout", "restart", w.ref()),
		successCheck: fmt.Sprintf("%s rolls out new pods and they stay ready for the verify window", w.ref()),
	}, fmt.Sprintf("%s; restart its pods.", problem(b.in)),
		"restart: a restart only helps a transient failure; if the pods fail again, look at the diagnostic steps"), ""
}

// deletePods deletes the incident's failing pods so that their
// controller replaces them: one step per pod, each with a UID
// precondition, at most remediation.max_pods. A pod without a controller
// is never deleted (it would not come back). Its steps target the pods,
// not the owner, so they are not ownerSteps.
func (b *builder) deletePods(_ Strategy) (*candidate, string) {
	w := b.in.Owner
	if w.BarePod {
		return nil, fmt.Sprintf("pod %s has no controller: deleting it would remove the workload; recreate it from its manifest instead", w.Ref.Name)
	}
	var pods []corev1.Pod
	for _, p := range b.in.Pods {
		if b.controlledByOwner(&p) && p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		return nil, fmt.Sprintf("no failing pod of %s is left to delete", w.ref())
	}
	if n := max(len(pods), b.in.Incident.PodCount); n > b.in.Cfg.MaxPods {
		return nil, fmt.Sprintf("refused: %s has %d failing pods, more than remediation.max_pods (%d)", w.ref(), n, b.in.Cfg.MaxPods)
	}
	var steps []events.Step
	for _, p := range pods {
		st := events.Step{Action: events.ActionDeletePod, Title: fmt.Sprintf("Delete pod %s so that %s replaces it", p.Name, w.ref()),
			Target: kindRef(KindPod, "v1", p.ObjectMeta), Risk: events.RiskLow, Mutating: true,
			Params: map[string]string{"uid": string(p.UID)}}
		st.Kubectl = b.kubectl("delete", "pod", p.Name)
		st.Undo = "nothing to undo: the controller creates a replacement pod from the same template"
		st.Preconditions = []string{fmt.Sprintf("pod %s still has uid %s (a delete precondition) and is controlled by %s", p.Name, p.UID, w.ref())}
		st.SuccessCheck = fmt.Sprintf("pod %s is gone and a replacement pod of %s becomes ready", p.Name, w.ref())
		steps = append(steps, st)
	}
	return &candidate{Steps: steps,
		Summary: fmt.Sprintf("%s; delete the %s so that %s recreates them.", problem(b.in), plural(len(pods), "failing pod"), w.ref()),
		Notes:   []string{"delete_pod: a new pod only helps a transient failure; if it fails again, look at the diagnostic steps"}}, ""
}

// controlledByOwner reports whether the owner (or, for a Deployment, one
// of its ReplicaSets) is the pod's controller.
func (b *builder) controlledByOwner(p *corev1.Pod) bool {
	c := metav1.GetControllerOf(p)
	if c == nil {
		return false
	}
	if string(c.UID) == b.in.Owner.Ref.UID {
		return true
	}
	return slices.ContainsFunc(b.in.ReplicaSets, func(rs appsv1.ReplicaSet) bool { return rs.UID == c.UID })
}
