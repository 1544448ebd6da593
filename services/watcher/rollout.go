package watcher

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// StatefulSets and DaemonSets have no progress deadline: their rollout
// just stops when an updated pod does not become ready (a StatefulSet's
// OrderedReady update waits for it forever; a DaemonSet's stops once
// maxUnavailable pods are down). The watcher remembers since when each
// rollout has not advanced and reports one that has not for
// RolloutStallAfter.

// RolloutStallAfter is how long a StatefulSet or DaemonSet rollout may go
// without any pod updated or becoming ready before it is reported as
// stuck: the default progress deadline of a Deployment (600 s). Not
// configurable, like ServiceGrace; a rollout whose pods take longer than
// that to start each is reported too, as a Deployment's would be.
const RolloutStallAfter = 10 * time.Minute

// Reason classes of a StatefulSet or DaemonSet rollout that stopped.
const (
	reasonStatefulSetRolloutStalled = "statefulset_rollout_stalled"
	reasonDaemonSetRolloutStalled   = "daemonset_rollout_stalled"
)

// labelRevisionHash is the label of a StatefulSet's (and DaemonSet's)
// pods naming their ControllerRevision.
const labelRevisionHash = appsv1.ControllerRevisionHashLabelKey

// rolloutMark is a rollout's progress (what it has done so far) and
// since when it has been that.
type rolloutMark struct {
	progress string
	since    time.Time
}

// rolloutMemory remembers, per StatefulSet or DaemonSet, its rollout's
// progress and since when it has not changed. A restarted watcher starts
// counting again. Safe for concurrent use.
type rolloutMemory struct {
	mu sync.Mutex
	m  map[types.UID]rolloutMark
}

func newRolloutMemory() *rolloutMemory { return &rolloutMemory{m: map[types.UID]rolloutMark{}} }

// observe records the progress of a rollout seen at now and returns since
// when it has been that; progress "" (no rollout) forgets it.
func (r *rolloutMemory) observe(uid types.UID, progress string, now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if progress == "" {
		delete(r.m, uid)
		return time.Time{}
	}
	if m, ok := r.m[uid]; ok && m.progress == progress {
		return m.since
	}
	r.m[uid] = rolloutMark{progress: progress, since: now}
	return now
}

// since is when the rollout of uid was first seen at progress, zero when
// it is at another (or none).
func (r *rolloutMemory) since(uid types.UID, progress string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.m[uid]; ok && progress != "" && m.progress == progress {
		return m.since
	}
	return time.Time{}
}

func (r *rolloutMemory) forget(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, uid)
}

// StatefulSetRollout is the progress of a StatefulSet's rolling update
// ("" when none runs): its update revision and how many pods are updated
// and ready. An OnDelete StatefulSet waits for people by design, one
// scaled to zero has nothing to roll, and one whose status is older than
// its spec is not judged until its controller catches up. A partitioned
// update is done once the pods above the partition are updated and all
// are ready.
func StatefulSetRollout(sts *appsv1.StatefulSet) string {
	if sts == nil || sts.DeletionTimestamp != nil || sts.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return ""
	}
	want := replicasOf(sts.Spec.Replicas)
	st := sts.Status
	if want == 0 || st.ObservedGeneration < sts.Generation || st.UpdateRevision == "" || st.CurrentRevision == st.UpdateRevision {
		return ""
	}
	if ru := sts.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil && *ru.Partition > 0 {
		if st.UpdatedReplicas >= max(want-*ru.Partition, 0) && st.ReadyReplicas >= want {
			return ""
		}
	}
	return fmt.Sprintf("%d/%s/%d/%d/%d", sts.Generation, st.UpdateRevision, st.UpdatedReplicas, st.ReadyReplicas, want)
}

// DaemonSetRollout is the progress of a DaemonSet's rolling update (""
// when none runs): nodes still run pods of an older template. An OnDelete
// DaemonSet waits for people by design.
func DaemonSetRollout(ds *appsv1.DaemonSet) string {
	if ds == nil || ds.DeletionTimestamp != nil || ds.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType {
		return ""
	}
	st := ds.Status
	if st.DesiredNumberScheduled == 0 || st.ObservedGeneration < ds.Generation || st.UpdatedNumberScheduled >= st.DesiredNumberScheduled {
		return ""
	}
	return fmt.Sprintf("%d/%d/%d/%d", ds.Generation, st.UpdatedNumberScheduled, st.NumberAvailable, st.DesiredNumberScheduled)
}

// ClassifyStatefulSetRollout reports a StatefulSet whose rolling update
// has not advanced since since (see StatefulSetRollout) for after, at
// time now, naming the update revision and the first updated pod that is
// not ready and why; pods are the StatefulSet's. It returns when to look
// again while the rollout is young. A pure function of its arguments.
func ClassifyStatefulSetRollout(sts *appsv1.StatefulSet, pods []*corev1.Pod, since, now time.Time, after time.Duration) ([]ControllerIssue, time.Time) {
	if StatefulSetRollout(sts) == "" || since.IsZero() {
		return nil, time.Time{}
	}
	if due := since.Add(after); now.Before(due) {
		return nil, due
	}
	st := sts.Status
	want := replicasOf(sts.Spec.Replicas)
	var updated []*corev1.Pod
	for _, p := range pods {
		if p.Labels[labelRevisionHash] == st.UpdateRevision {
			updated = append(updated, p)
		}
	}
	msg := fmt.Sprintf("rollout of statefulset %s to revision %s stopped: %d of %d replicas updated, %d ready, no progress for %s",
		sts.Name, st.UpdateRevision, st.UpdatedReplicas, want, st.ReadyReplicas, roundDuration(now.Sub(since)))
	msg += blockingPod(updated, "of the new revision")
	return []ControllerIssue{{Type: events.IssueRolloutStuck, Reason: reasonStatefulSetRolloutStalled, Message: msg,
		PodCount: int(max(want-st.ReadyReplicas, 0))}}, time.Time{}
}

// ClassifyDaemonSetRollout reports a DaemonSet whose rolling update has
// not advanced since since for after (see DaemonSetRollout), naming the
// newest pod that is not ready and why; pods are the DaemonSet's.
func ClassifyDaemonSetRollout(ds *appsv1.DaemonSet, pods []*corev1.Pod, since, now time.Time, after time.Duration) ([]ControllerIssue, time.Time) {
	if DaemonSetRollout(ds) == "" || since.IsZero() {
		return nil, time.Time{}
	}
	if due := since.Add(after); now.Before(due) {
		return nil, due
	}
	st := ds.Status
	newest := slices.Clone(pods)
	slices.SortFunc(newest, func(a, b *corev1.Pod) int {
		if c := b.CreationTimestamp.Compare(a.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	msg := fmt.Sprintf("rollout of daemonset %s (generation %d) stopped: %d of %d nodes run the updated pod, %d available, no progress for %s",
		ds.Name, ds.Generation, st.UpdatedNumberScheduled, st.DesiredNumberScheduled, st.NumberAvailable, roundDuration(now.Sub(since)))
	msg += blockingPod(newest, "")
	return []ControllerIssue{{Type: events.IssueRolloutStuck, Reason: reasonDaemonSetRolloutStalled, Message: msg,
		PodCount: int(max(st.DesiredNumberScheduled-st.UpdatedNumberScheduled, 0))}}, time.Time{}
}

// blockingPod names the first pod that is not ready and says why
// ("; pod db-2 of the new revision is not ready: container db waiting
// (CrashLoopBackOff)"), or "" when every pod is ready.
func blockingPod(pods []*corev1.Pod, which string) string {
	for _, p := range pods {
		if p.DeletionTimestamp != nil || podReady(p) {
			continue
		}
		name := "pod " + p.Name
		if which != "" {
			name += " " + which
		}
		return "; " + name + " is not ready: " + podState(p)
	}
	return ""
}

// podState says in a few words why a pod is not ready.
func podState(p *corev1.Pod) string {
	if c := condition(p, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse {
		return "not scheduled (" + truncate(c.Message, 256) + ")"
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, cs := range list {
			if w := cs.State.Waiting; w != nil && w.Reason != "" {
				return fmt.Sprintf("container %s waiting (%s)", cs.Name, w.Reason)
			}
			if t := cs.State.Terminated; t != nil {
				return fmt.Sprintf("container %s terminated (%s, exit code %d)", cs.Name, t.Reason, t.ExitCode)
			}
			if !cs.Ready && cs.State.Running != nil {
				return fmt.Sprintf("container %s running but not ready", cs.Name)
			}
		}
	}
	return "phase " + string(p.Status.Phase)
}

// roundDuration is d to the second.
func roundDuration(d time.Duration) time.Duration { return d.Round(time.Second) }

// rolloutObs is the rollout issue of a StatefulSet or DaemonSet, if its
// rollout has stalled; while a rollout is young it queues the owner again
// for when it would stall.
func (s *Service) rolloutObs(k ownerKey, obj any, now time.Time) []ControllerIssue {
	since := s.observeRollout(obj, now)
	var issues []ControllerIssue
	var recheck time.Time
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		issues, recheck = ClassifyStatefulSetRollout(o, s.cl.podsOf(k), since, now, s.cfg.rolloutStall)
	case *appsv1.DaemonSet:
		issues, recheck = ClassifyDaemonSetRollout(o, s.cl.podsOf(k), since, now, s.cfg.rolloutStall)
	}
	if !recheck.IsZero() {
		s.queue.AddAfter(k, recheck.Sub(now)+10*time.Millisecond)
	}
	return issues
}

// rolloutOf is the rollout progress of a StatefulSet or DaemonSet ("" for
// none, or another kind) and the controller's key and UID.
func rolloutOf(obj any) (progress string, k ownerKey, uid types.UID) {
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		return StatefulSetRollout(o), ownerKey{Namespace: o.Namespace, Kind: "StatefulSet", Name: o.Name}, o.UID
	case *appsv1.DaemonSet:
		return DaemonSetRollout(o), ownerKey{Namespace: o.Namespace, Kind: "DaemonSet", Name: o.Name}, o.UID
	}
	return "", ownerKey{}, ""
}

// observeRollout records the rollout progress of a StatefulSet or
// DaemonSet and returns since when it has not advanced (zero when no
// rollout runs).
func (s *Service) observeRollout(obj any, now time.Time) time.Time {
	progress, k, uid := rolloutOf(obj)
	if k.Name == "" {
		return time.Time{}
	}
	return s.rollouts.observe(uid, progress, now)
}

// rolloutChanged records the progress of a StatefulSet or DaemonSet that
// changed and, while its rollout is young, queues its evaluation for when
// it would have stalled.
func (s *Service) rolloutChanged(obj any) {
	now := s.now()
	since := s.observeRollout(obj, now)
	if since.IsZero() {
		return
	}
	if due := since.Add(s.cfg.rolloutStall); now.Before(due) {
		_, k, _ := rolloutOf(obj)
		s.queue.AddAfter(k, due.Sub(now)+10*time.Millisecond)
	}
}

// rolloutStalled reports a StatefulSet or DaemonSet whose rollout, as
// last recorded, has not advanced for the stall threshold. It records
// nothing: controllerChanged asks it about the previous state too.
func (s *Service) rolloutStalled(obj any) bool {
	progress, _, uid := rolloutOf(obj)
	since := s.rollouts.since(uid, progress)
	return !since.IsZero() && !s.now().Before(since.Add(s.cfg.rolloutStall))
}
