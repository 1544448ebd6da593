package watcher

import (
	"cmp"
	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"time"
)

// ownerKey names a controlling owner: the unit the work queue coalesces
// on, so that the events of a 50-replica crash are handled as one.
type ownerKey struct {
	Namespace string
	Kind      string
	Name      string
}

// String is "namespace/Kind/name", also the key of the controller index.
func (k ownerKey) String() string { return k.Namespace + "/" + k.Kind + "/" + k.Name }

// keyOf is the key of an owner; a cluster-scoped one (a Node) is keyed
// in events.ClusterScopeNamespace, the namespace of its incidents.
func keyOf(r events.ObjectRef) ownerKey {
	return ownerKey{Namespace: cmp.Or(r.Namespace, events.ClusterScopeNamespace), Kind: r.Kind, Name: r.Name}
}

// ownerLookup finds the intermediate controllers owner resolution follows.
// The informers' listers implement it; tests use maps.
type ownerLookup interface {
	replicaSet(namespace, name string) *appsv1.ReplicaSet
	job(namespace, name string) *batchv1.Job
}

var (
	groupApps  = appsv1.SchemeGroupVersion.Group
	groupBatch = batchv1.SchemeGroupVersion.Group
)

// resolveOwner follows the ownerReferences with controller=true from pod up
// to its top controller: Pod -> ReplicaSet -> Deployment, Pod -> Job ->
// CronJob, Pod -> StatefulSet, Pod -> DaemonSet, or any other controller
// kind directly. A pod without a controller is its own owner. chain lists
// the controllers from the pod's direct owner up to owner (empty for a bare
// pod). An intermediate controller missing from the cache (or replaced by
// one with another UID) ends the chain there.
func resolveOwner(pod *corev1.Pod, lk ownerLookup) (owner events.ObjectRef, chain []events.ObjectRef) {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return events.ObjectRef{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), APIVersion: "v1"}, nil
	}
	ns := pod.Namespace
	cur := refOf(ns, ref)
	chain = append(chain, cur)
	for range 4 { // Pod -> ReplicaSet -> Deployment is the longest known chain
		var next *metav1.OwnerReference
		gv, _ := schema.ParseGroupVersion(ref.APIVersion)
		switch {
		case ref.Kind == "ReplicaSet" && gv.Group == groupApps:
			if rs := lk.replicaSet(ns, ref.Name); rs != nil && rs.UID == ref.UID {
				next = metav1.GetControllerOfNoCopy(rs)
			}
		case ref.Kind == "Job" && gv.Group == groupBatch:
			if j := lk.job(ns, ref.Name); j != nil && j.UID == ref.UID {
				next = metav1.GetControllerOfNoCopy(j)
			}
		}
		if next == nil {
			break
		}
		ref, cur = next, refOf(ns, next)
		chain = append(chain, cur)
	}
	return cur, chain
}

// ownerWait is how long a new pod whose ReplicaSet or Job is not in the
// cache yet waits for it before being attributed to that intermediate
// controller. The controller's watch event usually arrives within
// milliseconds of the pod's; when the watches resume after an API server
// restart, the pod's can come first.
const ownerWait = 30 * time.Second

// ownerPending reports a pod whose owner chain cannot be followed yet: its
// controller is a ReplicaSet or Job missing from the cache, and the pod is
// young enough for that controller to be on its way. Such a pod is not
// attributed to any owner yet (it would open an incident under the
// ReplicaSet and resolve it a moment later); the controller's arrival
// re-evaluates its owner.
func ownerPending(pod *corev1.Pod, lk ownerLookup, now time.Time) bool {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || now.Sub(pod.CreationTimestamp.Time) > ownerWait {
		return false
	}
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	switch {
	case ref.Kind == "ReplicaSet" && gv.Group == groupApps:
		rs := lk.replicaSet(pod.Namespace, ref.Name)
		return rs == nil || rs.UID != ref.UID
	case ref.Kind == "Job" && gv.Group == groupBatch:
		j := lk.job(pod.Namespace, ref.Name)
		return j == nil || j.UID != ref.UID
	}
	return false
}

func refOf(ns string, r *metav1.OwnerReference) events.ObjectRef {
	return events.ObjectRef{Kind: r.Kind, Namespace: ns, Name: r.Name, UID: string(r.UID), APIVersion: r.APIVersion}
}

// controllerIndexKey is the controller index of an object: the
// "namespace/Kind/name" of its controlling owner, or of the object itself
// (as a Pod) when it has none. Pods, ReplicaSets and Jobs are indexed by it
// so the pods of an owner are found without a LIST.
func controllerIndexKey(obj metav1.Object, selfKind string) string {
	if ref := metav1.GetControllerOfNoCopy(obj); ref != nil {
		return ownerKey{Namespace: obj.GetNamespace(), Kind: ref.Kind, Name: ref.Name}.String()
	}
	if selfKind == "" {
		return ""
	}
	return ownerKey{Namespace: obj.GetNamespace(), Kind: selfKind, Name: obj.GetName()}.String()
}
