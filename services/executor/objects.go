package executor

import (
	"context"
	"fmt"

	"github.com/kaar-dev/kaar/pkg/events"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Kinds the executor reads, patches and verifies through typed clients.
const (
	kindDeployment  = "Deployment"
	kindStatefulSet = "StatefulSet"
	kindDaemonSet   = "DaemonSet"
	kindReplicaSet  = "ReplicaSet"
	kindJob         = "Job"
	kindCronJob     = "CronJob"
	kindPod         = "Pod"
	kindService     = "Service"
)

// supportedKinds lists the kinds getObject and patchObject accept.
var supportedKinds = []string{kindDeployment, kindStatefulSet, kindDaemonSet, kindReplicaSet, kindJob, kindCronJob, kindPod, kindService}

// getObject reads the object ref points at through its typed client.
func getObject(ctx context.Context, cs kubernetes.Interface, ref events.ObjectRef) (metav1.Object, error) {
	o := metav1.GetOptions{}
	ns, name := ref.Namespace, ref.Name
	switch ref.Kind {
	case kindDeployment:
		return cs.AppsV1().Deployments(ns).Get(ctx, name, o)
	case kindStatefulSet:
		return cs.AppsV1().StatefulSets(ns).Get(ctx, name, o)
	case kindDaemonSet:
		return cs.AppsV1().DaemonSets(ns).Get(ctx, name, o)
	case kindReplicaSet:
		return cs.AppsV1().ReplicaSets(ns).Get(ctx, name, o)
	case kindJob:
		return cs.BatchV1().Jobs(ns).Get(ctx, name, o)
	case kindCronJob:
		return cs.BatchV1().CronJobs(ns).Get(ctx, name, o)
	case kindPod:
		return cs.CoreV1().Pods(ns).Get(ctx, name, o)
	case kindService:
		return cs.CoreV1().Services(ns).Get(ctx, name, o)
	}
	return nil, fmt.Errorf("get %s: %w %q (supported: %v)", ref, ErrUnsupportedKind, ref.Kind, supportedKinds)
}

// patchObject patches the object ref points at and returns the API
// server's answer (the patched object).
func patchObject(ctx context.Context, cs kubernetes.Interface, ref events.ObjectRef, pt types.PatchType, data []byte, fieldManager string) (metav1.Object, error) {
	return patchWith(ctx, cs, ref, pt, data, metav1.PatchOptions{FieldManager: fieldManager})
}

// patchObjectDryRun is patchObject as a server-side dry run: the answer is
// the object as the patch would leave it; nothing is stored.
func patchObjectDryRun(ctx context.Context, cs kubernetes.Interface, ref events.ObjectRef, pt types.PatchType, data []byte, fieldManager string) (metav1.Object, error) {
	return patchWith(ctx, cs, ref, pt, data, metav1.PatchOptions{FieldManager: fieldManager, DryRun: []string{metav1.DryRunAll}})
}

func patchWith(ctx context.Context, cs kubernetes.Interface, ref events.ObjectRef, pt types.PatchType, data []byte, o metav1.PatchOptions) (metav1.Object, error) {
	ns, name := ref.Namespace, ref.Name
	switch ref.Kind {
	case kindDeployment:
		return cs.AppsV1().Deployments(ns).Patch(ctx, name, pt, data, o)
	case kindStatefulSet:
		return cs.AppsV1().StatefulSets(ns).Patch(ctx, name, pt, data, o)
	case kindDaemonSet:
		return cs.AppsV1().DaemonSets(ns).Patch(ctx, name, pt, data, o)
	case kindReplicaSet:
		return cs.AppsV1().ReplicaSets(ns).Patch(ctx, name, pt, data, o)
	case kindJob:
		return cs.BatchV1().Jobs(ns).Patch(ctx, name, pt, data, o)
	case kindCronJob:
		return cs.BatchV1().CronJobs(ns).Patch(ctx, name, pt, data, o)
	case kindPod:
		return cs.CoreV1().Pods(ns).Patch(ctx, name, pt, data, o)
	case kindService:
		return cs.CoreV1().Services(ns).Patch(ctx, name, pt, data, o)
	}
	return nil, fmt.Errorf("patch %s: %w %q (supported: %v)", ref, ErrUnsupportedKind, ref.Kind, supportedKinds)
}

// patchType maps a step's patch type to the API's. Only JSON patches are
// applied: a merge or strategic patch cannot carry the generation test
// that keeps a patch off an object that changed since planning, and
// validatePlanSteps refuses them before the claim; this is the second
// line of that defence, at the moment of the API call.
func patchType(p events.PatchType) (types.PatchType, error) {
	if p == events.PatchJSON {
		return types.JSONPatchType, nil
	}
	return "", fmt.Errorf("patch_type %q: %w: the executor applies generation-guarded JSON patches only", p, ErrUnsupportedStep)
}

// checkStale compares the target as it is now with the plan's view of it:
// a different UID (recreated), a different generation (spec changed) or,
// for pods and Services (which have no generation), a different
// resourceVersion makes the plan stale. It returns a
// *refusal with reason stale, nil when the target is unchanged, or the
// read error.
func checkStale(ctx context.Context, cs kubernetes.Interface, p events.Plan) error {
	ref := p.Target
	if ref.Namespace == "" {
		ref.Namespace = p.Namespace
	}
	obj, err := getObject(ctx, cs, ref)
	if apierrors.IsNotFound(err) {
		return refuse(events.RefusalStale, "%s no longer exists", ref)
	}
	if err != nil {
		return err
	}
	if ref.UID != "" && string(obj.GetUID()) != ref.UID {
		return refuse(events.RefusalStale, "%s was recreated (uid %s, planned %s)", ref, obj.GetUID(), ref.UID)
	}
	if ref.Kind == kindPod || ref.Kind == kindService {
		if obj.GetResourceVersion() != p.TargetResourceVersion {
			return refuse(events.RefusalStale, "%s resourceVersion is %s, planned at %s", ref, obj.GetResourceVersion(), p.TargetResourceVersion)
		}
		return nil
	}
	if obj.GetGeneration() != p.TargetGeneration {
		return refuse(events.RefusalStale, "%s generation is %d, planned at %d", ref, obj.GetGeneration(), p.TargetGeneration)
	}
	return nil
}
