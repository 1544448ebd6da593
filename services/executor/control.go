package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Checks of the catalogue that need the cluster, run after the claim and
// before the first step.
//
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
// delete controlled by it, then rollbacks to a template it ran.
func (s *Service) preStepCheck(ctx context.Context, p events.Plan) (*refusal, error) {
	if r, err := s.staleCheck(ctx, p); r != nil || err != nil {
		return r, err
	}
	r, err := s.checkPodsControlled(ctx, p)
	if r != nil || err != nil {
		if err != nil && !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("check the pods to delete: %w", err)
		}
		return r, err
	}
	r, err = s.checkRollbacks(ctx, p)
	if err != nil && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("check the rollback: %w", err)
	}
	return r, err
}

// checkRollbacks refuses (invalid_step) a rollback whose template is not
// one the target ran, or whose undo patch would not put back the
// template it has now. The catalogue lets a rollback replace the pod
// template and nothing else; this makes it a rollback: the template comes
// from a ReplicaSet the Deployment controls (less its pod-template-hash
// label, as the planner takes it), not from the plan's author. The stale
// check before it ensures the Deployment is still at the planned
// generation, so its current template is the one the plan saw.
func (s *Service) checkRollbacks(ctx context.Context, p events.Plan) (*refusal, error) {
	var dep *appsv1.Deployment
	var rss []appsv1.ReplicaSet
	for _, st := range p.Steps {
		if !st.Mutating || st.Action != events.ActionRollback {
			continue
		}
		if dep == nil {
			var err error
			if dep, rss, err = s.deploymentAndReplicaSets(ctx, resolveNamespace(p.Target, p.Namespace)); err != nil {
				return nil, fmt.Errorf("step %d: %w", st.Index, err)
			}
		}
		planned, err := templateValues(st.Patch)
		if err != nil {
			return invalidStep("step %d (%s) of plan %s: patch: %v", st.Index, st.Action, p.ID, err), nil
		}
		for _, tmpl := range planned {
			if !slices.ContainsFunc(rss, func(rs appsv1.ReplicaSet) bool {
				return metav1.IsControlledBy(&rs, dep) && apiequality.Semantic.DeepEqual(revisionTemplate(rs), tmpl)
			}) {
				return invalidStep("step %d (%s) of plan %s: the template is not that of any ReplicaSet of %s: a rollback restores a revision the Deployment ran",
					st.Index, st.Action, p.ID, resolveNamespace(p.Target, p.Namespace)), nil
			}
		}
		undo, err := templateValues(st.UndoPatch)
		if err != nil {
			return invalidStep("step %d (%s) of plan %s: undo_patch: %v", st.Index, st.Action, p.ID, err), nil
		}
		for _, tmpl := range undo {
			if !apiequality.Semantic.DeepEqual(dep.Spec.Template, tmpl) {
				return invalidStep("step %d (%s) of plan %s: the undo patch's template is not the current template of %s",
					st.Index, st.Action, p.ID, resolveNamespace(p.Target, p.Namespace)), nil
			}
		}
	}
	return nil, nil
}

func (s *Service) deploymentAndReplicaSets(ctx context.Context, ref events.ObjectRef) (*appsv1.Deployment, []appsv1.ReplicaSet, error) {
	var dep *appsv1.Deployment
	var rss []appsv1.ReplicaSet
	err := s.retry(ctx, func(ctx context.Context) error {
		d, err := s.kube.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return classify(err)
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			return permanent(fmt.Errorf("selector of %s: %w", ref, err))
		}
		l, err := s.kube.AppsV1().ReplicaSets(ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return classify(err)
		}
		dep, rss = d, l.Items
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read %s and its ReplicaSets: %w", ref, err)
	}
	return dep, rss, nil
}

// revisionTemplate is a ReplicaSet's pod template as a rollback writes it
// back: without the pod-template-hash label the Deployment controller
// adds.
func revisionTemplate(rs appsv1.ReplicaSet) corev1.PodTemplateSpec {
	t := *rs.Spec.Template.DeepCopy()
	delete(t.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	if len(t.Labels) == 0 {
		t.Labels = nil
	}
	return t
}

// templateValues decodes the values of a rollback patch's writing
// operations (the catalogue allows only the replacement of the template).
func templateValues(patch []byte) ([]corev1.PodTemplateSpec, error) {
	if len(patch) == 0 {
		return nil, nil
	}
	ops, err := parseOps(patch)
	if err != nil {
		return nil, err
	}
	var out []corev1.PodTemplateSpec
	for _, op := range ops {
		if op.Op == "test" {
			continue
		}
		var t corev1.PodTemplateSpec
		if err := strictDecode(op.Value, &t, "a pod template"); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}
