package sandbox

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/kaar-dev/kaar/pkg/sandbox/podlogs"
)

// requireCurrentSandbox fails t, saying why, on a sandbox started before
// container logs and the probe and node stages existed (a shared sandbox
// keeps the stages and kwok flags it was started with).
func requireCurrentSandbox(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	if _, err := cs.Discovery().ServerResourcesForGroupVersion(podlogs.LogsGVR.GroupVersion().String()); err != nil {
		t.Fatalf("this sandbox predates container logs and the probe and node stages (%v): restart it (kaar-sandbox down, then up)", err)
	}
}

// podLog returns the log client-go's GetLogs returns for the first
// container of ns/name.
func podLog(ctx context.Context, cs kubernetes.Interface, ns, name string, previous bool) (string, error) {
	b, err := cs.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: "app", Previous: previous}).DoRaw(ctx)
	return string(b), err
}

// waitObject gets an object until check says it is done, for up to a
// minute, and returns it; check also describes it for the timeout's
// message. An error from get fails t at once, as does the timeout.
func waitObject[T any](ctx context.Context, t *testing.T, what string, get func(context.Context) (T, error), check func(T) (bool, string)) T {
	t.Helper()
	var obj T
	err := poll(ctx, time.Minute, what, func(ctx context.Context) (bool, string, error) {
		var err error
		if obj, err = get(ctx); err != nil {
			return false, "", err
		}
		done, state := check(obj)
		return done, state, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func eventsOf(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string) []corev1.Event {
	t.Helper()
	evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	return evs.Items
}

func hasEvent(evs []corev1.Event, typ, reason, message string) bool {
	for _, e := range evs {
		if e.Type == typ && e.Reason == reason && e.Message == message && e.Source.Component == "kubelet" &&
			e.InvolvedObject.Kind == "Pod" && e.InvolvedObject.FieldPath == "spec.containers{app}" {
			return true
		}
	}
	return false
}

// A user debugging a crash loop reads the container's log: the line that
// says why it crashed, with and without --previous; a pod without a log
// annotation has an empty log, and a running container no previous one.
func TestContainerLogsFromTheAnnotation(t *testing.T) {
	c := ForTest(t)
	cs := c.Clientset()
	requireCurrentSandbox(t, cs)
	ns := NewNamespace(t, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const crashLog = "starting billing 1.4.0\nError: required environment variable DATABASE_URL is not set"
	pods := map[string]map[string]string{
		"crashing": {AnnotationCrashExitCode: "1", AnnotationLog: crashLog},
		"running":  {AnnotationLog: "listening on :8080"},
		"quiet":    nil,
	}
	for name, ann := range pods {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: ann},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "ghcr.io/kaar-dev/demo/app:1.0"},
				{Name: "sidecar", Image: "ghcr.io/kaar-dev/demo/proxy:1.0"}}}}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitLog := func(name string, previous bool, want string) {
		t.Helper()
		var last string
		err := poll(ctx, time.Minute, fmt.Sprintf("log of %s (previous=%v)", name, previous), func(ctx context.Context) (bool, string, error) {
			got, err := podLog(ctx, cs, ns, name, previous)
			last = fmt.Sprintf("%q, %v", got, err)
			return err == nil && got == want, last, nil
		})
		if err != nil {
			t.Error(err)
		}
	}
	waitLog("crashing", false, crashLog+"\n")
	waitLog("crashing", true, crashLog+"\n")
	waitLog("running", false, "listening on :8080\n")
	waitLog("quiet", false, "")
	if _, err := podLog(ctx, cs, ns, "running", true); err == nil {
		t.Error("a running container that never terminated has a previous log")
	}
	b, err := cs.CoreV1().Pods(ns).GetLogs("crashing", &corev1.PodLogOptions{Container: "sidecar"}).DoRaw(ctx)
	if err != nil || len(b) != 0 {
		t.Errorf("sidecar log %q, %v; want empty", b, err)
	}
	// Timestamps come from the log file, in the kubelet's format.
	b, err = cs.CoreV1().Pods(ns).GetLogs("crashing", &corev1.PodLogOptions{Container: "app", Timestamps: true}).DoRaw(ctx)
	if err != nil || !strings.Contains(string(b), "Z Error: required environment variable DATABASE_URL is not set") {
		t.Errorf("log with timestamps %q, %v", b, err)
	}
}

// Probe failures: a pod whose readiness probe fails runs but is never
// Ready; one whose liveness probe fails has been killed and restarted
// (137, Error: not an OOM kill), each with the kubelet's events.
func TestProbeFailures(t *testing.T) {
	c := ForTest(t)
	cs := c.Clientset()
	requireCurrentSandbox(t, cs)
	ns := NewNamespace(t, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}}
	mk := func(name, ann string, readiness bool) *corev1.Pod {
		app := corev1.Container{Name: "app", Image: "ghcr.io/kaar-dev/demo/app:1.0", LivenessProbe: probe}
		if readiness {
			app.ReadinessProbe = probe
		}
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{ann: "fail"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{app, {Name: "sidecar", Image: "ghcr.io/kaar-dev/demo/proxy:1.0"}}}}
	}
	for _, p := range []*corev1.Pod{mk("unready", AnnotationReadiness, true), mk("killed", AnnotationLiveness, false),
		mk("killed-unready", AnnotationLiveness, true)} {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(name string, ok func(p *corev1.Pod) bool) *corev1.Pod {
		t.Helper()
		return waitObject(ctx, t, "wait for "+name, func(ctx context.Context) (*corev1.Pod, error) {
			return cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		}, func(p *corev1.Pod) (bool, string) {
			return len(p.Status.ContainerStatuses) == 2 && ok(p), fmt.Sprintf("%s %+v", p.Status.Phase, p.Status.ContainerStatuses)
		})
	}
	podReady := func(p *corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}

	p := wait("unready", func(p *corev1.Pod) bool { return p.Status.ContainerStatuses[0].Started != nil })
	app := p.Status.ContainerStatuses[0]
	if p.Status.Phase != corev1.PodRunning || app.Ready || app.State.Running == nil || app.RestartCount != 0 || podReady(p) ||
		!p.Status.ContainerStatuses[1].Ready || PodStatus(p) != "Running" {
		t.Errorf("unready: phase %s, status %q, app %+v, want Running, not Ready, no restarts", p.Status.Phase, PodStatus(p), app)
	}
	if evs := eventsOf(ctx, t, cs, ns, "unready"); !hasEvent(evs, "Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503") {
		t.Errorf("unready: no Unhealthy readiness event: %+v", evs)
	}

	for _, name := range []string{"killed", "killed-unready"} {
		p := wait(name, func(p *corev1.Pod) bool { return p.Status.ContainerStatuses[0].RestartCount > 0 })
		app := p.Status.ContainerStatuses[0]
		last := app.LastTerminationState.Terminated
		if p.Status.Phase != corev1.PodRunning || app.RestartCount != 3 || app.State.Running == nil || last == nil ||
			last.ExitCode != 137 || last.Reason != "Error" || PodStatus(p) != "Running" {
			t.Errorf("%s: phase %s, status %q, app %+v, want Running after 3 restarts, last terminated 137 Error", name, p.Status.Phase, PodStatus(p), app)
		}
		if wantReady := name == "killed"; app.Ready != wantReady || podReady(p) != wantReady {
			t.Errorf("%s: ready %v, pod Ready %v, want %v (ready unless it has a readiness probe)", name, app.Ready, podReady(p), wantReady)
		}
		evs := eventsOf(ctx, t, cs, ns, name)
		if !hasEvent(evs, "Warning", "Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500") ||
			!hasEvent(evs, "Normal", "Killing", "Container app failed liveness probe, will be restarted") {
			t.Errorf("%s: want Unhealthy and Killing events: %+v", name, evs)
		}
	}
}

func nodeConditions(n *corev1.Node) map[corev1.NodeConditionType]corev1.NodeCondition {
	out := map[corev1.NodeConditionType]corev1.NodeCondition{}
	for _, c := range n.Status.Conditions {
		out[c.Type] = c
	}
	return out
}

func hasTaint(n *corev1.Node, key string, effect corev1.TaintEffect) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key && t.Effect == effect {
			return true
		}
	}
	return false
}

// A node goes NotReady, then Unknown, comes under memory and PID
// pressure, and is cordoned: the conditions hold (kwok does not heartbeat
// them away), the node lifecycle controller taints the node as it would a
// real one, and removing the annotations heals it.
func TestNodeConditionsFromAnnotations(t *testing.T) {
	c := ForTest(t)
	cs := c.Clientset()
	requireCurrentSandbox(t, cs)
	ns := NewNamespace(t, cs) // for its unique name
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	name := "extra-" + ns
	if _, err := AddNode(ctx, cs, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	waitNode := func(what string, ok func(n *corev1.Node) bool) *corev1.Node {
		t.Helper()
		return waitObject(ctx, t, what, func(ctx context.Context) (*corev1.Node, error) {
			return cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		}, func(n *corev1.Node) (bool, string) {
			return ok(n), fmt.Sprintf("conditions %+v taints %+v", n.Status.Conditions, n.Spec.Taints)
		})
	}
	annotate := func(k, v string) {
		t.Helper()
		val := "null"
		if v != "" {
			val = fmt.Sprintf("%q", v)
		}
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%s}}}`, k, val)
		if _, err := cs.CoreV1().Nodes().Patch(ctx, name, "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ready := func(status corev1.ConditionStatus) func(n *corev1.Node) bool {
		return func(n *corev1.Node) bool { return nodeConditions(n)[corev1.NodeReady].Status == status }
	}
	waitNode("the new node Ready", ready(corev1.ConditionTrue))

	annotate(AnnotationNodeReady, "False")
	n := waitNode("NotReady and tainted", func(n *corev1.Node) bool {
		return ready(corev1.ConditionFalse)(n) && hasTaint(n, "node.kubernetes.io/not-ready", corev1.TaintEffectNoExecute)
	})
	if r := nodeConditions(n)[corev1.NodeReady]; r.Reason != "KubeletNotReady" || !strings.Contains(r.Message, "cni plugin not initialized") {
		t.Errorf("Ready condition %+v", r)
	}
	time.Sleep(3 * time.Second) // kwok has had time to overwrite it, if it would
	waitNode("still NotReady", ready(corev1.ConditionFalse))

	annotate(AnnotationNodeReady, "Unknown")
	n = waitNode("Unknown and unreachable", func(n *corev1.Node) bool {
		return ready(corev1.ConditionUnknown)(n) && hasTaint(n, "node.kubernetes.io/unreachable", corev1.TaintEffectNoExecute)
	})
	for _, typ := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		if c := nodeConditions(n)[typ]; c.Status != corev1.ConditionUnknown || c.Reason != "NodeStatusUnknown" || c.Message != "Kubelet stopped posting node status." {
			t.Errorf("%s = %+v, want Unknown NodeStatusUnknown", typ, c)
		}
	}

	annotate(AnnotationNodeReady, "")
	annotate(AnnotationNodePressure, "memory,pid")
	n = waitNode("Ready under memory and PID pressure", func(n *corev1.Node) bool {
		cs := nodeConditions(n)
		return ready(corev1.ConditionTrue)(n) && cs[corev1.NodeMemoryPressure].Status == corev1.ConditionTrue &&
			cs[corev1.NodePIDPressure].Status == corev1.ConditionTrue && hasTaint(n, "node.kubernetes.io/memory-pressure", corev1.TaintEffectNoSchedule)
	})
	if cs := nodeConditions(n); cs[corev1.NodeDiskPressure].Status != corev1.ConditionFalse || cs[corev1.NodeMemoryPressure].Reason != "KubeletHasInsufficientMemory" ||
		cs[corev1.NodePIDPressure].Reason != "KubeletHasInsufficientPID" {
		t.Errorf("conditions %+v", n.Status.Conditions)
	}

	// Cordon: the real controller's unschedulable taint.
	if _, err := cs.CoreV1().Nodes().Patch(ctx, name, "application/merge-patch+json", []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitNode("cordoned", func(n *corev1.Node) bool {
		return n.Spec.Unschedulable && hasTaint(n, "node.kubernetes.io/unschedulable", corev1.TaintEffectNoSchedule)
	})

	annotate(AnnotationNodePressure, "")
	waitNode("healed", func(n *corev1.Node) bool {
		cs := nodeConditions(n)
		return ready(corev1.ConditionTrue)(n) && cs[corev1.NodeMemoryPressure].Status == corev1.ConditionFalse &&
			cs[corev1.NodePIDPressure].Status == corev1.ConditionFalse && !hasTaint(n, "node.kubernetes.io/memory-pressure", corev1.TaintEffectNoSchedule)
	})
}
