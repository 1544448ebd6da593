package podlogs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

func TestRenderIsCRIFormat(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	got := string(Render("starting\r\nError: boom\n", start, "stderr"))
	want := "2026-01-02T02:04:05Z stderr F starting\n2026-01-02T02:04:05.001Z stderr F Error: boom\n"
	if got != want {
		t.Errorf("Render = %q, want %q", got, want)
	}
	if b := Render("\n", start, "stdout"); b != nil {
		t.Errorf("empty text renders %q", b)
	}
}

func TestSyncWritesTheLogAndTheLogsObject(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{LogsGVR: "LogsList"})
	w := &Writer{Dir: dir, Dynamic: dyn}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1", Annotations: map[string]string{Annotation: "Error: boom"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "sidecar"}}},
	}
	if err := w.Sync(ctx, "ns", "p", pod); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "ns", "p", "u1.log")
	if b, err := os.ReadFile(file); err != nil || string(b) != string(Render("Error: boom", pod.CreationTimestamp.Time, "stderr")) {
		t.Fatalf("log file %q, %v", b, err)
	}
	obj, err := dyn.Resource(LogsGVR).Namespace("ns").Get(ctx, "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs := obj.Object["spec"].(map[string]any)["logs"].([]any)
	first := logs[0].(map[string]any)
	if first["logsFile"] != file || first["previousLogsFile"] != nil || logs[1].(map[string]any)["logsFile"] != filepath.Join(dir, EmptyLog) {
		t.Errorf("logs spec %v: want the file for app, no previous log yet, the empty log for the rest", logs)
	}
	if refs := obj.GetOwnerReferences(); len(refs) != 1 || refs[0].UID != "u1" || refs[0].Kind != "Pod" {
		t.Errorf("owner %v", refs)
	}

	// Once the container has terminated, the same log is the previous one.
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app",
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}}
	if err := w.Sync(ctx, "ns", "p", pod); err != nil {
		t.Fatal(err)
	}
	obj, _ = dyn.Resource(LogsGVR).Namespace("ns").Get(ctx, "p", metav1.GetOptions{})
	if first := obj.Object["spec"].(map[string]any)["logs"].([]any)[0].(map[string]any); first["previousLogsFile"] != file {
		t.Errorf("previousLogsFile %v, want %s", first["previousLogsFile"], file)
	}

	// Annotation removed: the file and the Logs object go.
	pod.Annotations = nil
	if err := w.Sync(ctx, "ns", "p", pod); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("log file left: %v", err)
	}
	if _, err := dyn.Resource(LogsGVR).Namespace("ns").Get(ctx, "p", metav1.GetOptions{}); err == nil {
		t.Error("Logs object left")
	}
}

// A pod annotated to crash, to fail its liveness probe, or to use more
// memory than its limit has its previous log from the start: a reader that
// sees the first termination must not wait for the writer and kwok to
// catch up. Pods that will run (memory within the limit, no limit, a
// readiness failure only) have none until a container of theirs ends.
func TestPodsThatWillRestartHaveTheirPreviousLogFromTheStart(t *testing.T) {
	limited := func(limit string) corev1.PodSpec {
		return corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(limit)}}}}}
	}
	plain := corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}
	for _, c := range []struct {
		name     string
		ann      map[string]string
		spec     corev1.PodSpec
		previous bool
	}{
		{"crash", map[string]string{AnnotationCrashExitCode: "1"}, plain, true},
		{"liveness", map[string]string{AnnotationLiveness: "fail"}, plain, true},
		{"oom", map[string]string{AnnotationMemoryUsage: "200Mi"}, limited("128Mi"), true},
		{"within-limit", map[string]string{AnnotationMemoryUsage: "100Mi"}, limited("128Mi"), false},
		{"no-limit", map[string]string{AnnotationMemoryUsage: "200Mi"}, plain, false},
		{"readiness", map[string]string{"sandbox.kaar.dev/readiness": "fail"}, plain, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{LogsGVR: "LogsList"})
			w := &Writer{Dir: dir, Dynamic: dyn}
			c.ann[Annotation] = "Error: boom"
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1", Annotations: c.ann}, Spec: c.spec}
			// What the informer keeps must be enough to decide.
			stripped, err := strip(pod)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Sync(ctx, "ns", "p", stripped.(*corev1.Pod)); err != nil {
				t.Fatal(err)
			}
			obj, err := dyn.Resource(LogsGVR).Namespace("ns").Get(ctx, "p", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			first := obj.Object["spec"].(map[string]any)["logs"].([]any)[0].(map[string]any)
			if got := first["previousLogsFile"] != nil; got != c.previous {
				t.Errorf("previousLogsFile %v; want one: %v", first["previousLogsFile"], c.previous)
			}
		})
	}
}
