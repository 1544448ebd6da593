package planner

import (
	"context"
	"fmt"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// StatefulSet and DaemonSet rollouts that stopped (RolloutStuck,
// statefulset_rollout_stalled and daemonset_rollout_stalled): the
// executor's rollback is for Deployments only (a Deployment's revisions
// are its ReplicaSets; a StatefulSet's and DaemonSet's are
// ControllerRevisions, which the catalogue does not restore), so the
// plans are diagnostic, with `kubectl rollout undo` as the command a
// person runs.

// ownPods reads the pods a StatefulSet or DaemonSet controls, for a
// RolloutStuck incident that names none, and picks the failing one.
func (r reader) ownPods(ctx context.Context, in *planInput) error {
	if len(in.Pods) > 0 || in.Owner.Selector == nil {
		return nil
	}
	pods, err := r.controlledPods(ctx, in.Owner.Ref.Namespace, in.Owner.Selector, types.UID(in.Owner.Ref.UID))
	if err != nil {
		return err
	}
	in.Pods = pods
	in.Pod = notReadyPod(pods, updateRevision(in.Owner))
	return nil
}

// updateRevision is a StatefulSet's update revision ("" for others).
func updateRevision(w *workload) string {
	if s, ok := w.Object.(*appsv1.StatefulSet); ok {
		return s.Status.UpdateRevision
	}
	return ""
}

// notReadyPod is the first pod that is not ready, those of revision
// first (when set), else nil (pods are newest first).
func notReadyPod(pods []corev1.Pod, revision string) *corev1.Pod {
	var other *corev1.Pod
	for i := range pods {
		p := &pods[i]
		if podIsReady(p) || p.DeletionTimestamp != nil {
			continue
		}
		if revision == "" || p.Labels[appsv1.ControllerRevisionHashLabelKey] == revision {
			return p
		}
		if other == nil {
			other = p
		}
	}
	return other
}

// stalledRolloutSteps explain a StatefulSet or DaemonSet rollout that
// stopped, and how a person rolls it back.
func stalledRolloutSteps(in planInput, b *builder, step stepFunc) []events.Step {
	w := in.Owner
	ref := w.ref()
	cause := ""
	if c := podCause(in); c != "" {
		cause = ": " + c
	}
	what := ""
	if rev := updateRevision(w); rev != "" {
		what = " to revision " + rev
	}
	out := []events.Step{
		b.onOwner(step(fmt.Sprintf("The rollout of %s%s stopped: the new pods do not become ready%s", ref, what, cause), "rollout", "status", ref)),
		b.onOwner(step("Compare the revisions (kubectl shows each ControllerRevision's pod template)", "rollout", "history", ref)),
	}
	switch w.Ref.Kind {
	case KindStatefulSet:
		undo := fmt.Sprintf("Fix the pod template of %s, or roll it back by hand (kaar's rollback is for Deployments only)", ref)
		del := []string{"delete", "pod", "<pod of the new revision>"}
		if in.Pod != nil {
			del[2] = in.Pod.Name
		}
		out = append(out,
			b.onOwner(step(undo, "rollout", "undo", ref)),
			b.onOwner(step(fmt.Sprintf("Then delete the pods of the bad revision (%s): with podManagementPolicy OrderedReady the StatefulSet waits for a broken pod for ever, even after the template is reverted, until it is deleted and recreated from the good one",
				strings.Join(del[2:], ", ")), del...)))
	default:
		out = append(out, b.onOwner(step(fmt.Sprintf("Fix the pod template of %s, or roll it back by hand (kaar's rollback is for Deployments only): the controller then replaces the broken pods itself, maxUnavailable at a time", ref),
			"rollout", "undo", ref)))
	}
	return out
}
