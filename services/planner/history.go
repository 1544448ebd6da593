package planner

import (
	"cmp"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// revision is one ReplicaSet of a Deployment's rollout history.
type revision struct {
	Number int64
	RS     *appsv1.ReplicaSet
}

// rsRevision reads the deployment.kubernetes.io/revision annotation
// (0 when absent or malformed).
func rsRevision(m metav1.ObjectMeta) int64 {
	n, err := strconv.ParseInt(m.Annotations[annotationRevision], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// rolloutHistory returns the Deployment's ReplicaSets (those it controls)
// newest revision first, and its current revision number: the highest of
// the Deployment's revision annotation and its ReplicaSets' revisions.
func rolloutHistory(dep *appsv1.Deployment, rss []appsv1.ReplicaSet) (revs []revision, current int64) {
	for i := range rss {
		rs := &rss[i]
		ctrl := metav1.GetControllerOf(rs)
		if ctrl == nil || ctrl.Kind != KindDeployment || ctrl.Name != dep.Name || (dep.UID != "" && ctrl.UID != dep.UID) {
			continue
		}
		if n := rsRevision(rs.ObjectMeta); n > 0 {
			revs = append(revs, revision{Number: n, RS: rs})
		}
	}
	slices.SortFunc(revs, func(a, b revision) int { return cmp.Compare(b.Number, a.Number) })
	// The Deployment's revision annotation lags the ReplicaSet the
	// controller has just created for a new template (it writes the
	// ReplicaSet first): the highest revision among its ReplicaSets is
	// the current one, since the controller gives the current template's
	// ReplicaSet the highest revision (a rollback renumbers the old one).
	current = rsRevision(dep.ObjectMeta)
	if len(revs) > 0 && revs[0].Number > current {
		current = revs[0].Number
	}
	return revs, current
}

// rollbackTarget picks the revision to roll back to: the newest revision
// older than the current one whose ReplicaSet has ready replicas (the last
// healthy revision), else the previous revision. healthy tells which rule
// chose it; ok is false when there is no older revision.
func rollbackTarget(revs []revision, current int64) (target revision, healthy, ok bool) {
	var older []revision
	for _, r := range revs {
		if r.Number < current {
			older = append(older, r)
		}
	}
	if len(older) == 0 {
		return revision{}, false, false
	}
	for _, r := range older {
		if r.RS.Status.ReadyReplicas > 0 {
			return r, true, true
		}
	}
	return older[0], false, true
}

// currentRS returns the ReplicaSet of the current revision, or nil.
func currentRS(revs []revision, current int64) *appsv1.ReplicaSet {
	for _, r := range revs {
		if r.Number == current {
			return r.RS
		}
	}
	return nil
}

// templateOf returns a ReplicaSet's pod template without the
// pod-template-hash label, which the Deployment controller adds: the
// template to write back into the Deployment (as kubectl rollout undo does).
func templateOf(rs *appsv1.ReplicaSet) corev1.PodTemplateSpec {
	t := *rs.Spec.Template.DeepCopy()
	delete(t.Labels, labelPodTemplateHash)
	if len(t.Labels) == 0 {
		t.Labels = nil
	}
	return t
}

// sameTemplate compares pod templates semantically (quantities by value).
func sameTemplate(a, b corev1.PodTemplateSpec) bool {
	return apiequality.Semantic.DeepEqual(a, b)
}

// imageOf returns the image of the container named name in a template, or "".
func imageOf(t corev1.PodTemplateSpec, name string) string {
	for _, c := range t.Spec.Containers {
		if c.Name == name {
			return c.Image
		}
	}
	for _, c := range t.Spec.InitContainers {
		if c.Name == name {
			return c.Image
		}
	}
	return ""
}
