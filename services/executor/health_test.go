package executor

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func ptr[T any](v T) *T { return &v }

func controller(kind, name, uid string) []metav1.OwnerReference {
	return []metav1.OwnerReference{{Kind: kind, Name: name, UID: types.UID(uid), Controller: ptr(true)}}
}

// podOf builds a pod controlled by owner uid with the given state.
func podOf(name, ownerUID string, mut func(*corev1.Pod)) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), OwnerReferences: controller("ReplicaSet", "rs", ownerUID),
			Labels: map[string]string{}},
		Status: corev1.PodStatus{
			Phase:             corev1.PodRunning,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}},
		},
	}
	if mut != nil {
		mut(&p)
	}
	return p
}

func waiting(reason string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodPending
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
		p.Status.ContainerStatuses[0].Ready = false
		p.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
	}
}

// deployment is "web" at generation 3, revision 3, with replicas desired
// and a status built by mut.
func deployment(replicas int32, mut func(*appsv1.DeploymentStatus)) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", UID: "dep", Generation: 3,
			Annotations: map[string]string{annotationDeploymentRevision: "3"}},
		Spec: appsv1.DeploymentSpec{Replicas: ptr(replicas)},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: replicas, UpdatedReplicas: replicas,
			ReadyReplicas: replicas, AvailableReplicas: replicas},
	}
	if mut != nil {
		mut(&d.Status)
	}
	return d
}

func replicaSets() []appsv1.ReplicaSet {
	return []appsv1.ReplicaSet{
		{ObjectMeta: metav1.ObjectMeta{Name: "web-old", UID: "rs-old", OwnerReferences: controller("Deployment", "web", "dep"),
			Annotations: map[string]string{annotationDeploymentRevision: "2"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "web-new", UID: "rs-new", OwnerReferences: controller("Deployment", "web", "dep"),
			Annotations: map[string]string{annotationDeploymentRevision: "3"}}},
		// Another Deployment's ReplicaSet with the same revision number.
		{ObjectMeta: metav1.ObjectMeta{Name: "api-3", UID: "rs-api", OwnerReferences: controller("Deployment", "api", "other"),
			Annotations: map[string]string{annotationDeploymentRevision: "3"}}},
	}
}

func TestDeploymentHealth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		dep         *appsv1.Deployment
		pods        []corev1.Pod
		healthy     bool
		wantMessage string // substring
		wantFailing []string
	}{
		{
			name:    "rolled out and available",
			dep:     deployment(2, nil),
			pods:    []corev1.Pod{podOf("web-new-a", "rs-new", nil), podOf("web-new-b", "rs-new", nil)},
			healthy: true, wantMessage: "healthy",
		},
		{
			name:        "controller has not observed the new generation",
			dep:         deployment(2, func(s *appsv1.DeploymentStatus) { s.ObservedGeneration = 2 }),
			pods:        []corev1.Pod{podOf("web-new-a", "rs-new", nil), podOf("web-new-b", "rs-new", nil)},
			wantMessage: "observed generation 2 < generation 3",
		},
		{
			name: "rollout in progress: one replica updated",
			dep: deployment(2, func(s *appsv1.DeploymentStatus) {
				s.Replicas, s.UpdatedReplicas = 3, 1
			}),
			pods:        []corev1.Pod{podOf("web-new-a", "rs-new", nil)},
			wantMessage: "1 of 2 replicas updated",
		},
		{
			name:        "old replica pending termination",
			dep:         deployment(2, func(s *appsv1.DeploymentStatus) { s.Replicas = 3 }),
			pods:        []corev1.Pod{podOf("web-new-a", "rs-new", nil), podOf("web-new-b", "rs-new", nil)},
			wantMessage: "3 replicas exist, 2 desired",
		},
		{
			name:        "ready but not yet available (minReadySeconds)",
			dep:         deployment(2, func(s *appsv1.DeploymentStatus) { s.AvailableReplicas = 1 }),
			pods:        []corev1.Pod{podOf("web-new-a", "rs-new", nil), podOf("web-new-b", "rs-new", nil)},
			wantMessage: "1 of 2 replicas available",
		},
		{
			name:        "counts fine but a pod of the new ReplicaSet crash-loops",
			dep:         deployment(2, nil),
			pods:        []corev1.Pod{podOf("web-new-a", "rs-new", nil), podOf("web-new-b", "rs-new", waiting("CrashLoopBackOff"))},
			wantMessage: "failing pods", wantFailing: []string{"web-new-b: CrashLoopBackOff"},
		},
		{
			name: "an evicted pod the ReplicaSet has replaced is a leftover, not a failure",
			dep:  deployment(2, nil),
			pods: []corev1.Pod{podOf("web-new-a", "rs-new", nil), podOf("web-new-b", "rs-new", nil),
				podOf("web-new-c", "rs-new", func(p *corev1.Pod) { p.Status.Phase, p.Status.Reason = corev1.PodFailed, "Evicted" })},
			healthy: true, wantMessage: "healthy",
		},
		{
			name: "a failing pod of the old ReplicaSet does not count",
			dep:  deployment(2, nil),
			pods: []corev1.Pod{podOf("web-new-a", "rs-new", nil), podOf("web-new-b", "rs-new", nil),
				podOf("web-old-a", "rs-old", waiting("ImagePullBackOff"))},
			healthy: true, wantMessage: "healthy",
		},
		{
			name: "the bad rollout: new ReplicaSet pod cannot pull its image",
			dep: deployment(2, func(s *appsv1.DeploymentStatus) {
				s.Replicas, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas = 3, 1, 2, 2
			}),
			pods: []corev1.Pod{podOf("web-old-a", "rs-old", nil), podOf("web-old-b", "rs-old", nil),
				podOf("web-new-a", "rs-new", waiting("ImagePullBackOff"))},
			wantMessage: "1 of 2 replicas updated", wantFailing: []string{"web-new-a: ImagePullBackOff"},
		},
		{
			name: "OOMKilled container of the new ReplicaSet",
			dep:  deployment(1, nil),
			pods: []corev1.Pod{podOf("web-new-a", "rs-new", func(p *corev1.Pod) {
				p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}}
			})},
			wantFailing: []string{"web-new-a: OOMKilled"},
		},
		{
			name:    "scaled to zero",
			dep:     deployment(0, nil),
			healthy: true, wantMessage: "healthy",
		},
		{
			name: "no revision annotation yet",
			dep: func() *appsv1.Deployment {
				d := deployment(1, nil)
				delete(d.Annotations, annotationDeploymentRevision)
				return d
			}(),
			pods:        []corev1.Pod{podOf("web-new-a", "rs-new", nil)},
			wantMessage: "new ReplicaSet not found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := DeploymentHealth(tt.dep, replicaSets(), tt.pods)
			if h.Healthy != tt.healthy {
				t.Fatalf("healthy = %t, want %t (%s)", h.Healthy, tt.healthy, h.Message)
			}
			if !strings.Contains(h.Message, tt.wantMessage) {
				t.Errorf("message %q does not contain %q", h.Message, tt.wantMessage)
			}
			if !slices.Equal(h.FailingPods, tt.wantFailing) {
				t.Errorf("failing pods %q, want %q", h.FailingPods, tt.wantFailing)
			}
			if h.Desired != *tt.dep.Spec.Replicas {
				t.Errorf("desired %d, want %d", h.Desired, *tt.dep.Spec.Replicas)
			}
		})
	}
}

func TestStatefulSetHealth(t *testing.T) {
	t.Parallel()
	sts := func(mut func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
		s := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "db", UID: "sts", Generation: 2},
			Spec:       appsv1.StatefulSetSpec{Replicas: ptr(int32(2))},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 2, Replicas: 2, ReadyReplicas: 2, UpdatedReplicas: 2,
				AvailableReplicas: 2, CurrentRevision: "db-2", UpdateRevision: "db-2"},
		}
		if mut != nil {
			mut(s)
		}
		return s
	}
	pod := func(name, rev string, mut func(*corev1.Pod)) corev1.Pod {
		p := podOf(name, "sts", mut)
		p.Labels[labelControllerRevisionHash] = rev
		return p
	}
	tests := []struct {
		name    string
		sts     *appsv1.StatefulSet
		pods    []corev1.Pod
		healthy bool
		want    string
	}{
		{"rolled out", sts(nil), []corev1.Pod{pod("db-0", "db-2", nil), pod("db-1", "db-2", nil)}, true, "healthy"},
		{"update in progress", sts(func(s *appsv1.StatefulSet) {
			s.Status.CurrentRevision, s.Status.UpdatedReplicas = "db-1", 1
		}), []corev1.Pod{pod("db-0", "db-1", nil), pod("db-1", "db-2", nil)}, false, "current revision db-1 is not update revision db-2"},
		{"updated pod crash-loops", sts(nil), []corev1.Pod{pod("db-0", "db-2", nil), pod("db-1", "db-2", waiting("CrashLoopBackOff"))}, false, "db-1: CrashLoopBackOff"},
		{"OnDelete strategy does not wait for the current revision", sts(func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType
			s.Status.CurrentRevision = "db-1"
		}), []corev1.Pod{pod("db-0", "db-2", nil), pod("db-1", "db-2", nil)}, true, "healthy"},
		{"not observed", sts(func(s *appsv1.StatefulSet) { s.Status.ObservedGeneration = 1 }), nil, false, "observed generation 1 < generation 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := StatefulSetHealth(tt.sts, tt.pods)
			if h.Healthy != tt.healthy || !strings.Contains(h.Message, tt.want) {
				t.Fatalf("healthy %t %q, want %t containing %q", h.Healthy, h.Message, tt.healthy, tt.want)
			}
		})
	}
}

func TestDaemonSetHealth(t *testing.T) {
	t.Parallel()
	ds := func(mut func(*appsv1.DaemonSetStatus)) *appsv1.DaemonSet {
		d := &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "agent", UID: "ds", Generation: 4},
			Status: appsv1.DaemonSetStatus{ObservedGeneration: 4, DesiredNumberScheduled: 3, UpdatedNumberScheduled: 3,
				NumberReady: 3, NumberAvailable: 3, CurrentNumberScheduled: 3},
		}
		if mut != nil {
			mut(&d.Status)
		}
		return d
	}
	pod := func(name, rev string, mut func(*corev1.Pod)) corev1.Pod {
		p := podOf(name, "ds", mut)
		p.Labels[labelControllerRevisionHash] = rev
		return p
	}
	ok := []corev1.Pod{pod("a", "h2", nil), pod("b", "h2", nil), pod("c", "h2", nil)}
	tests := []struct {
		name    string
		ds      *appsv1.DaemonSet
		rev     string
		pods    []corev1.Pod
		healthy bool
		want    string
	}{
		{"rolled out", ds(nil), "h2", ok, true, "healthy"},
		{"one node not updated", ds(func(s *appsv1.DaemonSetStatus) { s.UpdatedNumberScheduled = 2 }), "h2", ok, false, "2 of 3 pods updated"},
		{"updated pod fails to pull", ds(nil), "h2", []corev1.Pod{pod("a", "h2", waiting("ErrImagePull")), pod("b", "h1", nil)}, false, "a: ErrImagePull"},
		{"old revision pod failing is ignored", ds(nil), "h2", []corev1.Pod{pod("a", "h1", waiting("ErrImagePull"))}, true, "healthy"},
		{"unknown revision checks every pod", ds(nil), "", []corev1.Pod{pod("a", "h1", waiting("ErrImagePull"))}, false, "a: ErrImagePull"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := DaemonSetHealth(tt.ds, tt.rev, tt.pods)
			if h.Healthy != tt.healthy || !strings.Contains(h.Message, tt.want) {
				t.Fatalf("healthy %t %q, want %t containing %q", h.Healthy, h.Message, tt.healthy, tt.want)
			}
		})
	}
}

func TestPodHealthAndPodsGone(t *testing.T) {
	t.Parallel()
	now := metav1.Now()
	tests := []struct {
		name    string
		pod     corev1.Pod
		healthy bool
		want    string
	}{
		{"running and ready", podOf("p", "x", nil), true, "healthy"},
		{"completed", podOf("p", "x", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodSucceeded
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}
		}), true, "healthy"},
		{"evicted", podOf("p", "x", func(p *corev1.Pod) { p.Status.Phase, p.Status.Reason = corev1.PodFailed, "Evicted" }), false, "p: Evicted"},
		{"running, not ready", podOf("p", "x", func(p *corev1.Pod) {
			p.Status.Conditions[0].Status = corev1.ConditionFalse
		}), false, "not ready"},
		{"terminating", podOf("p", "x", func(p *corev1.Pod) { p.DeletionTimestamp = &now }), false, "terminating"},
		{"config error", podOf("p", "x", waiting("CreateContainerConfigError")), false, "p: CreateContainerConfigError"},
		{"still creating is not a failure", podOf("p", "x", waiting("ContainerCreating")), false, "not ready"},
		{"init container crash-loops", podOf("p", "x", func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
			p.Status.Phase = corev1.PodPending
			p.Status.Conditions[0].Status = corev1.ConditionFalse
		}), false, "p: CrashLoopBackOff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := PodHealth(&tt.pod)
			if h.Healthy != tt.healthy || !strings.Contains(h.Message, tt.want) {
				t.Fatalf("healthy %t %q, want %t containing %q", h.Healthy, h.Message, tt.healthy, tt.want)
			}
		})
	}

	deleted := map[string]string{"uid-a": "a", "uid-b": "b"}
	if h := PodsGone(deleted, []corev1.Pod{podOf("c", "x", nil)}); !h.Healthy {
		t.Errorf("PodsGone with the deleted pods gone: %s", h.Message)
	}
	// A replacement with the same name but another UID is not the deleted pod.
	if h := PodsGone(deleted, []corev1.Pod{podOf("a2", "x", func(p *corev1.Pod) { p.Name = "a" })}); !h.Healthy {
		t.Errorf("PodsGone with a same-name replacement: %s", h.Message)
	}
	if h := PodsGone(deleted, []corev1.Pod{podOf("b", "x", nil), podOf("c", "x", nil)}); h.Healthy || !strings.Contains(h.Message, "still present: b") {
		t.Errorf("PodsGone with b left: %t %s", h.Healthy, h.Message)
	}
}
