package watcher

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

func ctrl(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &yes}}
}

func meta(name string, owners []metav1.OwnerReference) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("uid-" + name), OwnerReferences: owners}
}

type lookupMap struct {
	rs   map[string]*appsv1.ReplicaSet
	jobs map[string]*batchv1.Job
}

func (l lookupMap) replicaSet(_, name string) *appsv1.ReplicaSet { return l.rs[name] }
func (l lookupMap) job(_, name string) *batchv1.Job              { return l.jobs[name] }

func TestResolveOwner(t *testing.T) {
	lk := lookupMap{
		rs: map[string]*appsv1.ReplicaSet{
			"web-7d9f": {ObjectMeta: meta("web-7d9f", ctrl("apps/v1", "Deployment", "web", "uid-web"))},
			"bare-rs":  {ObjectMeta: meta("bare-rs", nil)},
			"ro-5c":    {ObjectMeta: meta("ro-5c", ctrl("argoproj.io/v1alpha1", "Rollout", "ro", "uid-ro"))},
		},
		jobs: map[string]*batchv1.Job{
			"backup-2911": {ObjectMeta: meta("backup-2911", ctrl("batch/v1", "CronJob", "backup", "uid-backup"))},
			"migrate":     {ObjectMeta: meta("migrate", nil)},
		},
	}
	// An ownerReference also carries an owner that is not the controller.
	notController := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "cm", UID: "uid-cm"}
	cases := []struct {
		name  string
		refs  []metav1.OwnerReference
		owner string
		chain []string
	}{
		{"deployment", ctrl("apps/v1", "ReplicaSet", "web-7d9f", "uid-web-7d9f"), "Deployment/web", []string{"ReplicaSet/web-7d9f", "Deployment/web"}},
		{"cronjob", ctrl("batch/v1", "Job", "backup-2911", "uid-backup-2911"), "CronJob/backup", []string{"Job/backup-2911", "CronJob/backup"}},
		{"job", ctrl("batch/v1", "Job", "migrate", "uid-migrate"), "Job/migrate", []string{"Job/migrate"}},
		{"statefulset", ctrl("apps/v1", "StatefulSet", "db", "uid-db"), "StatefulSet/db", []string{"StatefulSet/db"}},
		{"daemonset", ctrl("apps/v1", "DaemonSet", "agent", "uid-agent"), "DaemonSet/agent", []string{"DaemonSet/agent"}},
		{"bare replicaset", ctrl("apps/v1", "ReplicaSet", "bare-rs", "uid-bare-rs"), "ReplicaSet/bare-rs", []string{"ReplicaSet/bare-rs"}},
		{"other controller kind", ctrl("apps/v1", "ReplicaSet", "ro-5c", "uid-ro-5c"), "Rollout/ro", []string{"ReplicaSet/ro-5c", "Rollout/ro"}},
		{"replicaset not cached yet", ctrl("apps/v1", "ReplicaSet", "web-new", "uid-web-new"), "ReplicaSet/web-new", []string{"ReplicaSet/web-new"}},
		{"replicaset recreated (other uid)", ctrl("apps/v1", "ReplicaSet", "web-7d9f", "uid-old"), "ReplicaSet/web-7d9f", []string{"ReplicaSet/web-7d9f"}},
		{"no controller", []metav1.OwnerReference{notController}, "Pod/p", nil},
		{"bare pod", nil, "Pod/p", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: meta("p", tc.refs)}
			owner, chain := resolveOwner(pod, lk)
			if got := owner.Kind + "/" + owner.Name; got != tc.owner || owner.Namespace != "shop" {
				t.Errorf("owner = %s in %q, want %s in shop", got, owner.Namespace, tc.owner)
			}
			var names []string
			for _, c := range chain {
				names = append(names, c.Kind+"/"+c.Name)
			}
			if !slices.Equal(names, tc.chain) {
				t.Errorf("chain = %v, want %v", names, tc.chain)
			}
		})
	}
}

// TestPodsOf checks the controller indexes that find an owner's pods
// without a LIST. The caches are filled directly (the informers are not
// started): this is index logic, the sandbox tests cover the informers.
func TestPodsOf(t *testing.T) {
	cl, err := newCluster(fake.NewClientset(), "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	add := func(obj any) {
		t.Helper()
		var err error
		switch obj.(type) {
		case *corev1.Pod:
			err = cl.pods.GetIndexer().Add(obj)
		case *appsv1.ReplicaSet:
			err = cl.rs.GetIndexer().Add(obj)
		case *batchv1.Job:
			err = cl.jobs.GetIndexer().Add(obj)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	add(&appsv1.ReplicaSet{ObjectMeta: meta("web-1", ctrl("apps/v1", "Deployment", "web", "uid-web"))})
	add(&appsv1.ReplicaSet{ObjectMeta: meta("web-2", ctrl("apps/v1", "Deployment", "web", "uid-web"))})
	add(&batchv1.Job{ObjectMeta: meta("backup-1", ctrl("batch/v1", "CronJob", "backup", "uid-backup"))})
	for i := range 3 {
		add(&corev1.Pod{ObjectMeta: meta(fmt.Sprintf("web-1-%d", i), ctrl("apps/v1", "ReplicaSet", "web-1", "uid-web-1"))})
		add(&corev1.Pod{ObjectMeta: meta(fmt.Sprintf("web-2-%d", i), ctrl("apps/v1", "ReplicaSet", "web-2", "uid-web-2"))})
	}
	add(&corev1.Pod{ObjectMeta: meta("backup-1-x", ctrl("batch/v1", "Job", "backup-1", "uid-backup-1"))})
	add(&corev1.Pod{ObjectMeta: meta("db-0", ctrl("apps/v1", "StatefulSet", "db", "uid-db"))})
	add(&corev1.Pod{ObjectMeta: meta("debug", nil)})
	add(&corev1.Pod{ObjectMeta: meta("orphan-rs-pod", ctrl("apps/v1", "ReplicaSet", "gone", "uid-gone"))})

	names := func(k ownerKey) []string {
		var out []string
		for _, p := range cl.podsOf(k) {
			out = append(out, p.Name)
		}
		slices.Sort(out)
		return out
	}
	for k, want := range map[ownerKey][]string{
		{"shop", "Deployment", "web"}:    {"web-1-0", "web-1-1", "web-1-2", "web-2-0", "web-2-1", "web-2-2"},
		{"shop", "ReplicaSet", "web-1"}:  nil, // resolved to the Deployment
		{"shop", "CronJob", "backup"}:    {"backup-1-x"},
		{"shop", "StatefulSet", "db"}:    {"db-0"},
		{"shop", "Pod", "debug"}:         {"debug"},
		{"shop", "Pod", "db-0"}:          nil, // has a controller
		{"shop", "ReplicaSet", "gone"}:   {"orphan-rs-pod"},
		{"other", "Deployment", "web"}:   nil,
		{"shop", "Deployment", "absent"}: nil,
	} {
		if got := names(k); !slices.Equal(got, want) {
			t.Errorf("podsOf(%s) = %v, want %v", k, got, want)
		}
	}
}

func TestTransformIsNilSafeAndTrims(t *testing.T) {
	for _, obj := range []any{nil, (*corev1.Pod)(nil), (*appsv1.ReplicaSet)(nil), (*corev1.Service)(nil), "not an object"} {
		if _, err := transform(obj); err != nil {
			t.Errorf("transform(%T) error: %v", obj, err)
		}
	}
	pod := loadPod(t, "sandbox-oom")
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	pod.Annotations = map[string]string{"big": "value"}
	out, _ := transform(pod)
	p := out.(*corev1.Pod)
	if p.ManagedFields != nil || p.Annotations != nil {
		t.Errorf("transform kept unread fields: %+v", p.ObjectMeta)
	}
	// Of the limits, memory only: what a memory trend runs into.
	if l := p.Spec.Containers[0].Resources.Limits; len(l) != 1 || l.Memory().String() != "64Mi" {
		t.Errorf("transform kept limits %v, want the memory limit alone", l)
	}
	// Labels are read: which Services select the pod.
	if !maps.Equal(p.Labels, pod.Labels) {
		t.Errorf("transform dropped the pod's labels: %v, want %v", p.Labels, pod.Labels)
	}
	if p.Name != pod.Name || p.Namespace != pod.Namespace || p.UID != pod.UID || len(p.Status.ContainerStatuses) != 1 {
		t.Errorf("transform dropped what the watcher reads")
	}
	again, _ := transform(p)
	if again.(*corev1.Pod).Status.ContainerStatuses[0].LastTerminationState.Terminated.Reason != "OOMKilled" {
		t.Errorf("transform is not idempotent")
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}}}}
	if out, _ := transform(svc); out.(*corev1.Service).ManagedFields != nil {
		t.Errorf("managedFields kept on other kinds")
	}
}

// A new pod whose ReplicaSet is not cached yet (its watch event is on the
// way, as when watches resume after an API server restart) is not
// attributed to the ReplicaSet; an old one, or one whose ReplicaSet is
// cached, is resolved as usual.
func TestOwnerPendingWhileTheControllerIsOnItsWay(t *testing.T) {
	now := time.Now()
	lk := lookupMap{rs: map[string]*appsv1.ReplicaSet{
		"web-7d9f": {ObjectMeta: meta("web-7d9f", ctrl("apps/v1", "Deployment", "web", "uid-web"))},
	}}
	pod := func(rs string, age time.Duration) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: meta("p", ctrl("apps/v1", "ReplicaSet", rs, types.UID("uid-"+rs)))}
		p.CreationTimestamp = metav1.NewTime(now.Add(-age))
		return p
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"cached ReplicaSet", pod("web-7d9f", time.Second), false},
		{"new pod, ReplicaSet not cached yet", pod("web-new", time.Second), true},
		{"old pod, ReplicaSet still missing: attributed to it", pod("web-new", time.Minute), false},
		{"bare pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "b", CreationTimestamp: metav1.NewTime(now)}}, false},
	} {
		if got := ownerPending(tc.pod, lk, now); got != tc.want {
			t.Errorf("%s: pending %t, want %t", tc.name, got, tc.want)
		}
	}
}
