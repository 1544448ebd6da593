package watcher

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

// benchPod is a Running pod of a Deployment as the API server sends it to
// the watcher, managedFields included, recorded from make bench-watcher's
// sandbox (a kwok node).
func benchPod(t testing.TB) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile("testdata/bench/deployment-pod.json")
	if err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// replicaOf is a decoded copy of pod as replica i of ReplicaSet rs: its
// own strings, as decoding gives every object.
func replicaOf(t testing.TB, pod *corev1.Pod, rs, i int) *corev1.Pod {
	t.Helper()
	b, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	p.Name = fmt.Sprintf("web-%03d-%05d", rs, i)
	p.UID = types.UID(fmt.Sprintf("00000000-0000-0000-%04d-%012d", rs, i))
	p.Labels["app"] = fmt.Sprintf("web-%03d", rs)
	p.Labels["pod-template-hash"] = fmt.Sprintf("h%03d", rs)
	p.OwnerReferences[0].Name = fmt.Sprintf("web-%03d-h%03d", rs, rs)
	p.OwnerReferences[0].UID = types.UID(fmt.Sprintf("11111111-0000-0000-0000-%012d", rs))
	return &p
}

func TestTransformedPodsShareRepeatedStrings(t *testing.T) {
	pod := benchPod(t)
	a, _ := transform(replicaOf(t, pod, 1, 1))
	b, _ := transform(replicaOf(t, pod, 1, 2))
	c, _ := transform(replicaOf(t, pod, 2, 1))
	pa, pb, pc := a.(*corev1.Pod), b.(*corev1.Pod), c.(*corev1.Pod)
	same := func(what string, x, y string) {
		t.Helper()
		if x != y || unsafe.StringData(x) != unsafe.StringData(y) {
			t.Errorf("%s: %q and %q are not one shared string", what, x, y)
		}
	}
	same("namespace", pa.Namespace, pb.Namespace)
	same("owner name", pa.OwnerReferences[0].Name, pb.OwnerReferences[0].Name)
	same("owner kind", pa.OwnerReferences[0].Kind, pc.OwnerReferences[0].Kind)
	same("image", pa.Spec.Containers[0].Image, pc.Spec.Containers[0].Image)
	same("node", pa.Spec.NodeName, pb.Spec.NodeName)
	if reflect.ValueOf(pa.Labels).UnsafePointer() != reflect.ValueOf(pb.Labels).UnsafePointer() {
		t.Error("two pods of one ReplicaSet do not share their label map")
	}
	if reflect.ValueOf(pa.Labels).UnsafePointer() == reflect.ValueOf(pc.Labels).UnsafePointer() || pc.Labels["app"] != "web-002" {
		t.Errorf("pods of two ReplicaSets share a label map: %v", pc.Labels)
	}
	if pa.OwnerReferences[0].Controller == nil || !*pa.OwnerReferences[0].Controller {
		t.Errorf("controller flag lost: %+v", pa.OwnerReferences[0])
	}
	if pa.Name == pb.Name || pa.UID == pb.UID {
		t.Errorf("identities merged: %s %s", pa.Name, pb.Name)
	}
}

func TestTransformKeepsTheConditionsClassifiersRead(t *testing.T) {
	pod := benchPod(t)
	got, _ := transform(pod)
	p := got.(*corev1.Pod)
	if len(p.Status.Conditions) != 1 || p.Status.Conditions[0].Type != corev1.PodReady || p.Status.Conditions[0].Status != corev1.ConditionTrue {
		t.Errorf("a running pod keeps %+v, want only Ready=True", p.Status.Conditions)
	}
	pending := pod.DeepCopy()
	pending.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient cpu.",
			LastTransitionTime: metav1.Unix(100, 0)},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
	}
	got, _ = transform(pending)
	p = got.(*corev1.Pod)
	if c := condition(p, corev1.PodScheduled); c == nil || c.Status != corev1.ConditionFalse || c.Reason != corev1.PodReasonUnschedulable ||
		c.Message != "0/3 nodes are available: 3 Insufficient cpu." || !c.LastTransitionTime.Equal(&pending.Status.Conditions[0].LastTransitionTime) {
		t.Errorf("unschedulable condition not kept whole: %+v", p.Status.Conditions)
	}
	if len(p.Status.Conditions) != 1 {
		t.Errorf("kept %+v, want only PodScheduled", p.Status.Conditions)
	}
}

// BenchmarkCachedPod measures what one pod costs in the watcher's pod
// cache: 10,000 pods of 200 ReplicaSets, each decoded from its own JSON
// (as the informer receives it), transformed and indexed, reported as
// the heap the cache retains per pod (B/pod).
func BenchmarkCachedPod(b *testing.B) {
	const sets, perSet = 200, 50
	pod := benchPod(b)
	encoded := make([][]byte, 0, sets*perSet)
	for rs := range sets {
		for i := range perSet {
			raw, err := json.Marshal(replicaOf(b, pod, rs, i))
			if err != nil {
				b.Fatal(err)
			}
			encoded = append(encoded, raw)
		}
	}
	var perPod float64
	for b.Loop() {
		c, err := newCluster(fake.NewClientset(), "", 0)
		if err != nil {
			b.Fatal(err)
		}
		before := heapInUse()
		for _, raw := range encoded {
			var p corev1.Pod
			if err := json.Unmarshal(raw, &p); err != nil {
				b.Fatal(err)
			}
			obj, _ := transform(&p)
			if err := c.pods.GetIndexer().Add(obj); err != nil {
				b.Fatal(err)
			}
		}
		perPod = float64(heapInUse()-before) / float64(len(encoded))
		runtime.KeepAlive(c)
	}
	b.ReportMetric(perPod, "B/pod")
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
