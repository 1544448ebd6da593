package executor

import (
	"context"
	"errors"
	"fmt"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// A plan may delete only pods its target controls (directly, or through a
// ReplicaSet of a target Deployment), as the planner's controlledByOwner
// chooses them. That needs the cluster, so it is checked after the claim
// and before the first step (checkPodsControlled), and again for every
// evicted pod found by label selector (deleteEvictedPods): labels are not
// ownership.

// controlChecker answers "does the plan's target control this pod",
// reading each ReplicaSet once.
type controlChecker struct {
	kube   kubernetes.Interface
	target events.ObjectRef
	rs     map[string]bool // ReplicaSet uid -> controlled by the target
}

func newControlChecker(kube kubernetes.Interface, p events.Plan) *controlChecker {
	t := p.Target
	if t.Namespace == "" {
		t.Namespace = p.Namespace
	}
	return &controlChecker{kube: kube, target: t, rs: map[string]bool{}}
}

// isTarget reports an owner reference to the plan's target (by uid when
// the plan names one, else by kind and name).
func (c *controlChecker) isTarget(ref *metav1.OwnerReference) bool {
	if c.target.UID != "" {
		return string(ref.UID) == c.target.UID
	}
	return ref.Kind == c.target.Kind && ref.Name == c.target.Name
}

// controls reports whether the target controls pod.
func (c *controlChecker) controls(ctx context.Context, pod *corev1.Pod) (bool, error) {
	ref := metav1.GetControllerOf(pod)
	switch {
	case ref == nil:
		return false, nil
	case c.isTarget(ref):
		return true, nil
	case c.target.Kind != kindDeployment || ref.Kind != kindReplicaSet:
		return false, nil
	}
	if ok, seen := c.rs[string(ref.UID)]; seen {
		return ok, nil
	}
	rs, err := c.kube.AppsV1().ReplicaSets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read replicaset %s/%s, the controller of pod %s: %w", pod.Namespace, ref.Name, pod.Name, err)
	}
	owner := metav1.GetControllerOf(rs)
	ok := rs.UID == ref.UID && owner != nil && c.isTarget(owner)
	c.rs[string(ref.UID)] = ok
	return ok, nil
}

// checkPodsControlled reads the pod of every delete_pod step and refuses
// the plan (invalid_step) when its target does not
// control one. A pod that is gone, or was replaced under its name (another
// uid), is left to the step, which deletes nothing then.
func (s *Service) checkPodsControlled(ctx context.Context, p events.Plan) (*refusal, error) {
	cc := newControlChecker(s.kube, p)
	for _, st := range p.Steps {
		if !st.Mutating || st.Action != events.ActionDeletePod {
			continue
		}
		ref := resolveNamespace(st.Target, p.Namespace)
		var pod *corev1.Pod
		err := s.retry(ctx, func(ctx context.Context) error {
			got, err := s.kube.CoreV1().Pods(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			pod = got
			return classify(err)
		})
		if err != nil {
			return nil, fmt.Errorf("step %d: read pod %s: %w", st.Index, ref, err)
		}
		if pod == nil || (ref.UID != "" && string(pod.UID) != ref.UID) {
			continue
		}
		ok, err := cc.controls(ctx, pod)
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", st.Index, err)
		}
		if !ok {
			return invalidStep("step %d (%s) of plan %s: pod %s is not controlled by the plan's target %s (controller: %s)",
				st.Index, st.Action, p.ID, ref, cc.target, controllerString(pod)), nil
		}
	}
	return nil, nil
}

func controllerString(pod *corev1.Pod) string {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return "none"
	}
	return fmt.Sprintf("%s/%s uid %s", ref.Kind, ref.Name, ref.UID)
}

// preStepCheck runs the checks that need the cluster before the first
// step: the target unchanged since planning (stale), then the pods to
// delete controlled by it.
func (s *Service) preStepCheck(ctx context.Context, p events.Plan) (*refusal, error) {
	if r, err := s.staleCheck(ctx, p); r != nil || err != nil {
		return r, err
	}
	r, err := s.checkPodsControlled(ctx, p)
	if err != nil && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("check the pods to delete: %w", err)
	}
	return r, err
}
