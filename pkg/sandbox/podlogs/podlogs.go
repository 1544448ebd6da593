// Package podlogs gives sandbox pods real container logs. For each pod
// annotated sandbox.kaar.dev/log it writes the annotation's text to a log
// file in the CRI format a kubelet's runtime writes, and creates the kwok
// Logs object (kwok.x-k8s.io/v1alpha1, named after the pod, owned by it)
// that points kwok's kubelet server at that file, so `kubectl logs` and
// client-go's GetLogs return the text.
//
// It runs inside the sandbox's kwok process: the sandbox builds kwok with a
// main of its own that starts a Writer (pkg/sandbox/buildmods/kwok), so the
// writer lives exactly as long as the cluster, whoever started it. The
// package therefore imports nothing of kaar and only long-stable client-go
// APIs: it is compiled both here (and tested) and in kwok's build module.
package podlogs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Annotation (pod annotation) holds the log of the pod's first container:
// each line of the text is one log line. For a container that has
// terminated (a crash loop) it is the log of that last run, which is what
// a kubelet returns both for `kubectl logs` and `kubectl logs --previous`.
const Annotation = "sandbox.kaar.dev/log"

// The sandbox's annotations (pkg/sandbox, stages.go, which takes its
// constants from here) of a pod whose first container will end and be
// restarted: its previous run's log is served from the pod's creation,
// so that a reader that sees the container's first termination finds the
// log at once. Without this the previous log appeared only after the
// writer saw the termination and kwok saw the updated Logs object, a
// second or more under load after the status said the container ended.
const (
	// AnnotationCrashExitCode: the first container exits with this code.
	AnnotationCrashExitCode = "sandbox.kaar.dev/crash-exit-code"
	// AnnotationMemoryUsage: the memory the first container uses; above
	// its memory limit, it is OOMKilled.
	AnnotationMemoryUsage = "sandbox.kaar.dev/memory-usage"
	// AnnotationLiveness "fail": the kubelet kills the first container.
	AnnotationLiveness = "sandbox.kaar.dev/liveness"
)

// EmptyLog is the name, under the writer's directory, of the empty log
// every container without a text of its own shows.
const EmptyLog = "empty.log"

// managedBy labels the Logs objects the writer owns.
const managedBy = "kaar-sandbox-podlogs"

// LogsGVR is kwok's namespaced Logs resource.
var LogsGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "logs"}

// Writer keeps log files and Logs objects in step with the pods.
type Writer struct {
	// Dir holds the log files: <Dir>/<namespace>/<pod>/<uid>.log.
	Dir     string
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	Logger  *slog.Logger
	// Resync is how often every pod is looked at again (retries after
	// errors). Default 30 s.
	Resync time.Duration
}

// Run watches the pods until ctx is done. Errors on one pod are logged and
// retried with back-off; Run returns only ctx's error or a setup error.
func (w *Writer) Run(ctx context.Context) error {
	if w.Logger == nil {
		w.Logger = slog.New(slog.DiscardHandler)
	}
	if w.Resync == 0 {
		w.Resync = 30 * time.Second
	}
	if err := os.MkdirAll(w.Dir, 0o755); err != nil {
		return fmt.Errorf("podlogs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(w.Dir, EmptyLog), nil, 0o644); err != nil {
		return fmt.Errorf("podlogs: %w", err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(w.Client, w.Resync, informers.WithTransform(strip))
	inf := factory.Core().V1().Pods().Informer()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer queue.ShutDown()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if annotated(obj) {
				enqueue(obj)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			if annotated(oldObj) || annotated(newObj) {
				enqueue(newObj)
			}
		},
		DeleteFunc: func(obj any) {
			if annotated(obj) {
				enqueue(obj)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("podlogs: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return ctx.Err()
	}
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for w.processNext(ctx, queue, inf.GetIndexer()) {
	}
	return ctx.Err()
}

func (w *Writer) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string], idx cache.Indexer) bool {
	key, quit := queue.Get()
	if quit {
		return false
	}
	defer queue.Done(key)
	obj, exists, err := idx.GetByKey(key)
	var pod *corev1.Pod
	if err == nil && exists {
		pod, _ = obj.(*corev1.Pod)
	}
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	if err := w.Sync(ctx, ns, name, pod); err != nil {
		w.Logger.Warn("pod log", slog.String("namespace", ns), slog.String("pod", name), slog.Any("err", err))
		queue.AddRateLimited(key)
		return true
	}
	queue.Forget(key)
	return true
}

// Sync makes the log of one pod match its annotation; pod is nil when it
// no longer exists.
func (w *Writer) Sync(ctx context.Context, namespace, name string, pod *corev1.Pod) error {
	podDir := filepath.Join(w.Dir, namespace, name)
	text, ok := "", false
	if pod != nil && pod.DeletionTimestamp == nil && len(pod.Spec.Containers) > 0 {
		text, ok = pod.Annotations[Annotation]
	}
	if !ok {
		// Gone or no longer annotated: the pod shows the empty log again.
		// A deleted pod's Logs object goes with it (owner reference).
		if err := os.RemoveAll(podDir); err != nil {
			return err
		}
		if pod == nil {
			return nil
		}
		err := w.Dynamic.Resource(LogsGVR).Namespace(namespace).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete logs object: %w", err)
		}
		return nil
	}
	file := filepath.Join(podDir, string(pod.UID)+".log")
	if err := writeIfChanged(file, Render(text, pod.CreationTimestamp.Time, "stderr")); err != nil {
		return err
	}
	return w.ensureLogsObject(ctx, pod, file)
}

// ensureLogsObject creates or updates the kwok Logs object of pod.
func (w *Writer) ensureLogsObject(ctx context.Context, pod *corev1.Pod, file string) error {
	c0 := pod.Spec.Containers[0].Name
	previous := ""
	if willRestart(pod) {
		previous = file
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == c0 && cs.LastTerminationState.Terminated != nil {
			previous = file // a kubelet has the last run's log only once it ended
		}
	}
	first := map[string]any{"containers": []any{c0}, "logsFile": file}
	if previous != "" {
		first["previousLogsFile"] = previous
	}
	spec := map[string]any{"logs": []any{
		first,
		map[string]any{"logsFile": filepath.Join(w.Dir, EmptyLog)}, // every other container
	}}
	owner := []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "name": pod.Name, "uid": string(pod.UID)}}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": LogsGVR.GroupVersion().String(),
		"kind":       "Logs",
		"metadata": map[string]any{
			"name":            pod.Name,
			"namespace":       pod.Namespace,
			"labels":          map[string]any{"app.kubernetes.io/managed-by": managedBy},
			"ownerReferences": owner,
		},
		"spec": spec,
	}}
	client := w.Dynamic.Resource(LogsGVR).Namespace(pod.Namespace)
	cur, err := client.Get(ctx, pod.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = client.Create(ctx, obj, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create logs object: %w", err)
		}
		return err // AlreadyExists: retried, then updated
	}
	if err != nil {
		return fmt.Errorf("get logs object: %w", err)
	}
	curOwner, _, _ := unstructured.NestedSlice(cur.Object, "metadata", "ownerReferences")
	if reflect.DeepEqual(cur.Object["spec"], spec) && ownerUID(curOwner) == string(pod.UID) {
		return nil
	}
	cur.Object["spec"] = spec
	if err := unstructured.SetNestedSlice(cur.Object, owner, "metadata", "ownerReferences"); err != nil {
		return err
	}
	if _, err := client.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update logs object: %w", err)
	}
	return nil
}

// willRestart says whether the sandbox's stages will end and restart
// pod's first container: it crashes, fails its liveness probe, or uses
// more memory than its limit.
func willRestart(pod *corev1.Pod) bool {
	a := pod.Annotations
	if _, ok := a[AnnotationCrashExitCode]; ok || a[AnnotationLiveness] == "fail" {
		return true
	}
	usage, err := resource.ParseQuantity(a[AnnotationMemoryUsage])
	if err != nil {
		return false
	}
	limit, ok := pod.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]
	return ok && usage.Cmp(limit) > 0
}

func ownerUID(refs []any) string {
	if len(refs) != 1 {
		return ""
	}
	m, _ := refs[0].(map[string]any)
	uid, _ := m["uid"].(string)
	return uid
}

// Render returns text as a CRI container log (the format containerd
// writes and the kubelet reads): one "<RFC3339Nano> <stream> F <line>"
// per line, the lines a millisecond apart from start.
func Render(text string, start time.Time, stream string) []byte {
	text = strings.TrimRight(text, "\n")
	if text == "" {
		return nil
	}
	var b strings.Builder
	for i, line := range strings.Split(text, "\n") {
		ts := start.UTC().Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano)
		fmt.Fprintf(&b, "%s %s F %s\n", ts, stream, strings.TrimRight(line, "\r"))
	}
	return []byte(b.String())
}

func writeIfChanged(path string, content []byte) error {
	if cur, err := os.ReadFile(path); err == nil && string(cur) == string(content) {
		return nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func annotated(obj any) bool {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return false
	}
	_, has := pod.Annotations[Annotation]
	return has
}

// strip keeps only what Sync reads, so that the writer costs little next
// to kwok in a cluster of many pods.
func strip(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
		CreationTimestamp: pod.CreationTimestamp, DeletionTimestamp: pod.DeletionTimestamp,
	}}
	for _, k := range []string{Annotation, AnnotationCrashExitCode, AnnotationMemoryUsage, AnnotationLiveness} {
		if v, ok := pod.Annotations[k]; ok {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	for i, c := range pod.Spec.Containers {
		keep := corev1.Container{Name: c.Name}
		if i == 0 {
			if m, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
				keep.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: m}
			}
		}
		out.Spec.Containers = append(out.Spec.Containers, keep)
	}
	for _, cs := range pod.Status.ContainerStatuses {
		out.Status.ContainerStatuses = append(out.Status.ContainerStatuses,
			corev1.ContainerStatus{Name: cs.Name, LastTerminationState: cs.LastTerminationState})
	}
	return out, nil
}
