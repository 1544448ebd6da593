package executor

import (
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Health is the verdict of one health check of a workload: pure data,
// computed by DeploymentHealth, StatefulSetHealth, DaemonSetHealth,
// PodHealth or PodsGone from objects read from the API server.
type Health struct {
	Healthy bool
	// Desired, Ready, Updated and Available count replicas (pods for a
	// DaemonSet: scheduled nodes).
	Desired   int32
	Ready     int32
	Updated   int32
	Available int32
	// FailingPods names the pods of the new revision that fail, with the
	// reason: "web-7d4b9-x2k: ImagePullBackOff".
	FailingPods []string
	// Message says why the workload is not healthy yet, or "healthy".
	Message string
}

// Annotations and labels the controllers set, used to find the pods of a
// workload's newest revision.
const (
	annotationDeploymentRevision = "deployment.kubernetes.io/revision"
	labelControllerRevisionHash  = appsv1.ControllerRevisionHashLabelKey
)

// waitingFailures are container waiting reasons that mean the container
// will not start without a change (as opposed to ContainerCreating).
var waitingFailures = map[string]bool{
	"CrashLoopBackOff":           true,
	"ImagePullBackOff":           true,
	"ErrImagePull":               true,
	"ErrImageNeverPull":          true,
	"InvalidImageName":           true,
	"ImageInspectError":          true,
	"CreateContainerConfigError": true,
	"CreateContainerError":       true,
	"RunContainerError":          true,
	"PreStartHookError":          true,
	"PreCreateHookError":         true,
}

// PodFailure returns why pod is failing ("" when it is not): the pod
// failed or was evicted, or one of its containers (init containers
// included) waits for a reason that needs a change (CrashLoopBackOff,
// ImagePullBackOff...) or was just terminated by an error or the OOM killer.
func PodFailure(pod *corev1.Pod) string {
	if pod.DeletionTimestamp != nil {
		return ""
	}
	if pod.Status.Phase == corev1.PodFailed {
		if pod.Status.Reason != "" {
			return pod.Status.Reason
		}
		return "Failed"
	}
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range statuses {
		if w := cs.State.Waiting; w != nil && waitingFailures[w.Reason] {
			return w.Reason
		}
		if t := cs.State.Terminated; t != nil && (t.Reason == "OOMKilled" || t.ExitCode != 0) && pod.Status.Phase != corev1.PodSucceeded {
			if t.Reason != "" {
				return t.Reason
			}
			return fmt.Sprintf("exit code %d", t.ExitCode)
		}
	}
	return ""
}

// podReady reports the pod's Ready condition.
func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ownedBy reports whether obj's controller is the object with uid.
func ownedBy(obj metav1.Object, uid string) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && string(ref.UID) == uid
}

// failingPods lists "name: reason" for every failing pod accepted by keep,
// sorted.
func failingPods(pods []corev1.Pod, keep func(*corev1.Pod) bool) []string {
	var out []string
	for i := range pods {
		p := &pods[i]
		// An evicted pod of a controller has been replaced by it: it is a
		// leftover for a cleanup plan, not a failure of the revision.
		if !keep(p) || evicted(p) {
			continue
		}
		if why := PodFailure(p); why != "" {
			out = append(out, p.Name+": "+why)
		}
	}
	sort.Strings(out)
	return out
}

func desired(replicas *int32) int32 {
	if replicas == nil {
		return 1
	}
	return *replicas
}

// verdict fills Healthy and Message from the unmet conditions.
func (h Health) verdict(unmet []string) Health {
	if len(h.FailingPods) > 0 {
		unmet = append(unmet, "failing pods: "+strings.Join(h.FailingPods, ", "))
	}
	h.Healthy = len(unmet) == 0
	if h.Healthy {
		h.Message = "healthy"
	} else {
		h.Message = strings.Join(unmet, "; ")
	}
	return h
}

// DeploymentHealth says whether dep's newest revision is rolled out and
// healthy: the controller observed the latest generation; updated, ready
// and available replicas all equal spec.replicas and no old replica is
// left; and no pod of the new ReplicaSet is failing. rss are the
// Deployment's ReplicaSets (others are ignored), pods the pods of its
// selector.
func DeploymentHealth(dep *appsv1.Deployment, rss []appsv1.ReplicaSet, pods []corev1.Pod) Health {
	s := dep.Status
	h := Health{Desired: desired(dep.Spec.Replicas), Ready: s.ReadyReplicas, Updated: s.UpdatedReplicas, Available: s.AvailableReplicas}
	unmet := h.rolloutUnmet(s.ObservedGeneration, dep.Generation, "replicas")
	if s.Replicas != h.Desired {
		unmet = append(unmet, fmt.Sprintf("%d replicas exist, %d desired (old replicas pending termination)", s.Replicas, h.Desired))
	}
	newRS := newReplicaSet(dep, rss)
	if newRS == nil && len(unmet) == 0 {
		unmet = append(unmet, "new ReplicaSet not found")
	}
	if newRS != nil {
		h.FailingPods = failingPods(pods, func(p *corev1.Pod) bool { return ownedBy(p, string(newRS.UID)) })
	}
	return h.verdict(unmet)
}

// rolloutUnmet lists what keeps a rollout from being complete, common to
// the workload kinds: the controller has not observed the latest
// generation, or the updated, ready or available count (h's, of unit
// "replicas" or "pods") differs from the desired one.
func (h Health) rolloutUnmet(observed, generation int64, unit string) []string {
	var unmet []string
	if observed < generation {
		unmet = append(unmet, fmt.Sprintf("observed generation %d < generation %d", observed, generation))
	}
	for _, c := range []struct {
		n    int32
		what string
	}{{h.Updated, "updated"}, {h.Ready, "ready"}, {h.Available, "available"}} {
		if c.n != h.Desired {
			unmet = append(unmet, fmt.Sprintf("%d of %d %s %s", c.n, h.Desired, unit, c.what))
		}
	}
	return unmet
}

// newReplicaSet is dep's ReplicaSet whose revision annotation equals the
// Deployment's (the deployment controller keeps them equal for the newest
// revision).
func newReplicaSet(dep *appsv1.Deployment, rss []appsv1.ReplicaSet) *appsv1.ReplicaSet {
	rev := dep.Annotations[annotationDeploymentRevision]
	if rev == "" {
		return nil
	}
	for i := range rss {
		rs := &rss[i]
		if ownedBy(rs, string(dep.UID)) && rs.Annotations[annotationDeploymentRevision] == rev {
			return rs
		}
	}
	return nil
}

// StatefulSetHealth says whether sts's update revision is rolled out to
// every replica and none of its pods fails: the controller observed the
// latest generation, updated, ready and available replicas equal
// spec.replicas, and (for RollingUpdate) the current revision is the update
// revision.
func StatefulSetHealth(sts *appsv1.StatefulSet, pods []corev1.Pod) Health {
	s := sts.Status
	h := Health{Desired: desired(sts.Spec.Replicas), Ready: s.ReadyReplicas, Updated: s.UpdatedReplicas, Available: s.AvailableReplicas}
	unmet := h.rolloutUnmet(s.ObservedGeneration, sts.Generation, "replicas")
	rolling := sts.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType
	if rolling && s.UpdateRevision != "" && s.CurrentRevision != s.UpdateRevision {
		unmet = append(unmet, fmt.Sprintf("current revision %s is not update revision %s", s.CurrentRevision, s.UpdateRevision))
	}
	h.FailingPods = failingPods(pods, func(p *corev1.Pod) bool {
		return ownedBy(p, string(sts.UID)) && (s.UpdateRevision == "" || p.Labels[labelControllerRevisionHash] == s.UpdateRevision)
	})
	return h.verdict(unmet)
}

// DaemonSetHealth says whether ds is rolled out on every node it should
// run on and none of its updated pods fails. updateRevision is the
// controller-revision-hash of its newest ControllerRevision ("" to check
// every pod).
func DaemonSetHealth(ds *appsv1.DaemonSet, updateRevision string, pods []corev1.Pod) Health {
	s := ds.Status
	h := Health{Desired: s.DesiredNumberScheduled, Ready: s.NumberReady, Updated: s.UpdatedNumberScheduled, Available: s.NumberAvailable}
	unmet := h.rolloutUnmet(s.ObservedGeneration, ds.Generation, "pods")
	h.FailingPods = failingPods(pods, func(p *corev1.Pod) bool {
		return ownedBy(p, string(ds.UID)) && (updateRevision == "" || p.Labels[labelControllerRevisionHash] == updateRevision)
	})
	return h.verdict(unmet)
}

// PodHealth says whether a single pod runs and is ready (or completed).
func PodHealth(pod *corev1.Pod) Health {
	h := Health{Desired: 1}
	var unmet []string
	if why := PodFailure(pod); why != "" {
		h.FailingPods = []string{pod.Name + ": " + why}
	}
	switch {
	case pod.DeletionTimestamp != nil:
		unmet = append(unmet, "pod is terminating")
	case pod.Status.Phase == corev1.PodSucceeded:
		h.Ready, h.Updated, h.Available = 1, 1, 1
	case podReady(pod):
		h.Ready, h.Updated, h.Available = 1, 1, 1
	default:
		unmet = append(unmet, fmt.Sprintf("pod is %s and not ready", pod.Status.Phase))
	}
	return h.verdict(unmet)
}

// PodsGone says whether none of the pods with the given UIDs is in pods
// (the check after deleting pods: evicted-pod cleanup is done when they
// are gone).
func PodsGone(uids map[string]string, pods []corev1.Pod) Health {
	h := Health{}
	var left []string
	for i := range pods {
		if name, ok := uids[string(pods[i].UID)]; ok {
			left = append(left, name)
		}
	}
	sort.Strings(left)
	var unmet []string
	if len(left) > 0 {
		unmet = append(unmet, "deleted pods still present: "+strings.Join(left, ", "))
	}
	return h.verdict(unmet)
}
