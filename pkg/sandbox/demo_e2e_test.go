package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// kubectlStatuses runs the sandbox's kubectl `get pods` in ns and returns
// the STATUS column by pod name: what a user sees.
func kubectlStatuses(t *testing.T, c *Cluster, ns string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.Kubectl, "--kubeconfig", c.KubeconfigPath, "get", "pods", "-n", ns, "--no-headers").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get pods: %v\n%s", err, out)
	}
	got := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text()) // NAME READY STATUS RESTARTS AGE
		if len(f) < 5 {
			t.Fatalf("unexpected kubectl line %q", sc.Text())
		}
		got[f[0]] = f[2]
	}
	return got
}

func podsOf(t *testing.T, cs kubernetes.Interface, ns, app string) []corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

// failing returns the pods of app that show w's failure.
func failing(t *testing.T, cs kubernetes.Interface, ns string, w DemoWorkload) []corev1.Pod {
	t.Helper()
	var out []corev1.Pod
	for _, p := range podsOf(t, cs, ns, w.Name) {
		if w.Shows(&p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s %s: no pod shows %s", w.Kind, w.Name, w.Status)
	}
	return out
}

func demoWorkload(name string) DemoWorkload {
	for _, w := range append(append([]DemoWorkload{}, DemoBroken...), DemoHealthy...) {
		if w.Name == name {
			return w
		}
	}
	panic("no demo workload " + name)
}

// TestDemoShowsEveryFailureAndTheFixesHealIt is the sandbox's user story:
// the demo shop shows each failure as kubectl shows it on a real cluster,
// with rollout history for the case study, and changing the spec the way
// a remediation would heals each workload, verified by the real
// controllers.
func TestDemoShowsEveryFailureAndTheFixesHealIt(t *testing.T) {
	testStart := time.Now()
	c := ForTest(t)
	t.Logf("sandbox ready in %s (up or attach)", TestStartup().Round(100*time.Millisecond))
	cs := c.Clientset()
	ns := NewNamespace(t, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t0 := time.Now()
	if err := ApplyDemo(ctx, cs, DemoOptions{Namespace: ns, Extras: true}, testLogWriter{t}); err != nil {
		t.Fatal(err)
	}
	t.Logf("demo applied and every failure visible in %s", time.Since(t0).Round(100*time.Millisecond))
	// Idempotent: a second run converges without changes.
	if err := ApplyDemo(ctx, cs, DemoOptions{Namespace: ns, Extras: true}, nil); err != nil {
		t.Fatalf("second ApplyDemo: %v", err)
	}

	t.Run("kubectl shows each state", func(t *testing.T) {
		shown := kubectlStatuses(t, c, ns)
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if got, ok := shown[p.Name]; ok && got != PodStatus(p) {
				t.Errorf("pod %s: kubectl shows %s, PodStatus says %s", p.Name, got, PodStatus(p))
			}
		}
		for _, w := range append(append([]DemoWorkload{}, DemoBroken...), DemoHealthy...) {
			found := false
			for _, p := range podsOf(t, cs, ns, w.Name) {
				if w.Shows(&p) && shown[p.Name] == w.Status {
					found = true
				}
			}
			if !found {
				t.Errorf("%s %s: kubectl shows no pod in %s (kubectl: %v)", w.Kind, w.Name, w.Status, shown)
			}
		}
	})

	t.Run("CrashLoopBackOff", func(t *testing.T) {
		for _, p := range failing(t, cs, ns, demoWorkload("payments-api")) {
			st := p.Status.ContainerStatuses[0]
			wantMsg := fmt.Sprintf("back-off 40s restarting failed container=app pod=%s_%s(%s)", p.Name, ns, p.UID)
			if st.State.Waiting.Message != wantMsg {
				t.Errorf("waiting message %q, want %q", st.State.Waiting.Message, wantMsg)
			}
			last := st.LastTerminationState.Terminated
			if last == nil || last.ExitCode != 1 || last.Reason != "Error" || last.StartedAt.IsZero() || last.FinishedAt.IsZero() {
				t.Errorf("lastState.terminated = %+v, want exit 1, reason Error, with times", last)
			}
			if st.RestartCount < 3 || p.Status.Phase != corev1.PodRunning || conditionTrue(&p, corev1.PodReady) {
				t.Errorf("restarts %d phase %s ready %v, want >=3 Running not ready", st.RestartCount, p.Status.Phase, conditionTrue(&p, corev1.PodReady))
			}
			wantEvent(t, cs, ns, p.Name, "Warning", "BackOff", fmt.Sprintf("Back-off restarting failed container app in pod %s_%s(%s)", p.Name, ns, p.UID))
			// The crashed run's log says why (kubectl logs --previous).
			requireCurrentSandbox(t, cs)
			w := demoWorkload("payments-api")
			err := poll(ctx, 30*time.Second, "the crash line in the log of "+p.Name, func(ctx context.Context) (bool, string, error) {
				got, err := podLog(ctx, cs, ns, p.Name, true)
				return err == nil && strings.Contains(got, w.Log), fmt.Sprintf("%q, %v", got, err), nil
			})
			if w.Log == "" || err != nil {
				t.Errorf("log %q: %v", w.Log, err)
			}
		}
	})

	t.Run("OOMKilled", func(t *testing.T) {
		for _, p := range failing(t, cs, ns, demoWorkload("recommender")) {
			st := p.Status.ContainerStatuses[0]
			last := st.LastTerminationState.Terminated
			if st.State.Waiting == nil || st.State.Waiting.Reason != "CrashLoopBackOff" || last == nil || last.Reason != "OOMKilled" || last.ExitCode != 137 || st.RestartCount < 3 {
				t.Errorf("container status %+v, want CrashLoopBackOff after OOMKilled (137), restarts >= 3", st)
			}
		}
	})

	t.Run("ImagePullBackOff", func(t *testing.T) {
		img := "nginx:1.27-nonexistent"
		full := "docker.io/library/" + img
		for _, p := range failing(t, cs, ns, demoWorkload("frontend")) {
			w := p.Status.ContainerStatuses[0].State.Waiting
			if w.Message != fmt.Sprintf("Back-off pulling image %q", img) || p.Status.Phase != corev1.PodPending {
				t.Errorf("waiting %+v phase %s, want the back-off message and Pending", w, p.Status.Phase)
			}
			wantEvent(t, cs, ns, p.Name, "Warning", "Failed", fmt.Sprintf(
				"Failed to pull image %q: rpc error: code = NotFound desc = failed to pull and unpack image %q: failed to resolve reference %q: %s: not found", img, full, full, full))
			wantEvent(t, cs, ns, p.Name, "Normal", "BackOff", fmt.Sprintf("Back-off pulling image %q", img))
		}
		running := 0
		for _, p := range podsOf(t, cs, ns, "frontend") {
			if PodStatus(&p) == "Running" && p.Spec.Containers[0].Image == "nginx:1.27" {
				running++
			}
		}
		if running != 2 {
			t.Errorf("%d pods of the old frontend ReplicaSet Running, want 2", running)
		}
	})

	t.Run("Pending", func(t *testing.T) {
		for _, p := range failing(t, cs, ns, demoWorkload("analytics")) {
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodScheduled && !strings.Contains(cond.Message, "Insufficient cpu") {
					t.Errorf("PodScheduled message %q, want Insufficient cpu", cond.Message)
				}
			}
		}
	})

	t.Run("Evicted", func(t *testing.T) {
		evicted := failing(t, cs, ns, demoWorkload("cache"))
		if len(evicted) != 2 {
			t.Errorf("%d evicted cache pods, want 2", len(evicted))
		}
		want := "The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi. Container app was using 310Mi, request is 0, has larger consumption of memory."
		for _, p := range evicted {
			if p.Status.Message != want {
				t.Errorf("message %q, want %q", p.Status.Message, want)
			}
			if ts := p.Status.ContainerStatuses[0].State.Terminated; ts == nil || ts.ExitCode != 137 {
				t.Errorf("container state %+v, want terminated with 137", p.Status.ContainerStatuses[0].State)
			}
			wantEvent(t, cs, ns, p.Name, "Warning", "Evicted", want)
		}
		ready := 0
		for _, p := range podsOf(t, cs, ns, "cache") {
			if conditionTrue(&p, corev1.PodReady) {
				ready++
			}
		}
		if ready != 2 {
			t.Errorf("%d cache replacements Ready, want 2", ready)
		}
	})

	t.Run("CreateContainerConfigError", func(t *testing.T) {
		for _, p := range failing(t, cs, ns, demoWorkload("notifier")) {
			w := p.Status.ContainerStatuses[0].State.Waiting
			if w.Message != `configmap "missing-notifier-config" not found` || p.Status.Phase != corev1.PodPending {
				t.Errorf("waiting %+v phase %s", w, p.Status.Phase)
			}
			wantEvent(t, cs, ns, p.Name, "Warning", "Failed", `Error: configmap "missing-notifier-config" not found`)
		}
	})

	t.Run("rollout history", func(t *testing.T) {
		for _, w := range DemoBroken {
			if !w.RolledOut {
				continue
			}
			rss, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + w.Name})
			if err != nil {
				t.Fatal(err)
			}
			revs := map[string]bool{}
			for _, rs := range rss.Items {
				revs[rs.Annotations["deployment.kubernetes.io/revision"]] = true
			}
			if len(rss.Items) != 2 || !revs["1"] || !revs["2"] {
				t.Errorf("%s: %d ReplicaSets with revisions %v, want revisions 1 and 2", w.Name, len(rss.Items), revs)
			}
		}
	})

	t.Run("fixes heal", func(t *testing.T) {
		t0 := time.Now()
		d := &demo{cs: cs, ns: ns}
		// payments-api: back to the good spec (what a rollback restores).
		if err := d.apply(ctx, paymentsDeployment(ns, false)); err != nil {
			t.Fatal(err)
		}
		strategic := func(name, patch string) {
			if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatalf("patch %s: %v", name, err)
			}
		}
		strategic("recommender", `{"spec":{"template":{"spec":{"containers":[{"name":"app","resources":{"limits":{"memory":"256Mi"}}}]}}}}`)
		strategic("frontend", `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1.27"}]}}}}`)
		strategic("analytics", `{"spec":{"template":{"spec":{"containers":[{"name":"app","resources":{"requests":{"cpu":"500m"}}}]}}}}`)
		strategic("notifier", `{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"WEBHOOK_URL","valueFrom":{"configMapKeyRef":{"name":"notifier-config","key":"webhook-url"}}}]}]}}}}`)
		for _, p := range podsOf(t, cs, ns, "cache") {
			if p.Status.Reason == "Evicted" {
				if err := cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, w := range DemoBroken {
			waitHealthy(t, ctx, cs, ns, w.Name)
		}
		t.Logf("every workload healthy %s after the fixes", time.Since(t0).Round(100*time.Millisecond))
		for name, status := range kubectlStatuses(t, c, ns) {
			if status != "Running" && !(strings.HasPrefix(name, "db-migrate-") && status == "Completed") {
				t.Errorf("after the fixes kubectl shows %s %s", name, status)
			}
		}
	})
	t.Logf("total test time %s", time.Since(testStart).Round(100*time.Millisecond))
}

// waitHealthy waits until the Deployment name is rolled out and every one
// of its pods is Running and Ready (the failing ones are gone).
func waitHealthy(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	err := poll(ctx, 2*time.Minute, "wait for "+name+" to heal", func(ctx context.Context) (bool, string, error) {
		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, "", err
		}
		var states []string
		healthy := 0
		for i := range pods.Items {
			p := &pods.Items[i]
			states = append(states, p.Name+":"+PodStatus(p))
			if PodStatus(p) == "Running" && conditionTrue(p, corev1.PodReady) {
				healthy++
			}
		}
		return DeploymentAvailable(dep) && healthy == len(pods.Items) && healthy == int(*dep.Spec.Replicas), fmt.Sprintf("%v", states), nil
	})
	if err != nil {
		t.Error(err)
	}
}

// wantEvent asserts that an event about pod exists with this type, reason
// and message.
func wantEvent(t *testing.T, cs kubernetes.Interface, ns, pod, typ, reason, message string) {
	t.Helper()
	evs, err := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, e := range evs.Items {
		if e.Type == typ && e.Reason == reason && e.Message == message {
			return
		}
		seen = append(seen, e.Type+"/"+e.Reason+": "+e.Message)
	}
	t.Errorf("pod %s: no %s %s event %q; events: %q", pod, typ, reason, message, seen)
}

// testLogWriter sends progress lines to the test log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// The service users exist and have no permissions until RBAC grants them.
// The sandbox is shared: tests beside this one grant kaar-planner its
// chart role cluster-wide for a while (pods among it), so the read tried
// is one that no kaar role ever has, Secrets, in a namespace of its own.
func TestServiceUsersAuthenticateWithoutPermissions(t *testing.T) {
	c := ForTest(t)
	ns := NewNamespace(t, c.Clientset())
	for _, u := range ServiceUsers {
		cfg, err := c.RESTConfigFor(u)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cs.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s listing secrets: %v, want Forbidden", u, err)
		} else if !strings.Contains(err.Error(), `"`+u+`"`) {
			t.Errorf("%s: forbidden for another user: %v", u, err)
		}
		if path, err := c.KubeconfigFor(u); err != nil || path == "" {
			t.Errorf("KubeconfigFor(%s) = %q, %v", u, path, err)
		}
	}
	if _, err := c.RESTConfigFor("mallory"); err == nil {
		t.Error("RESTConfigFor(mallory) succeeded")
	}
	// The admin can do anything.
	if _, err := c.Clientset().CoreV1().Nodes().List(context.Background(), metav1.ListOptions{}); err != nil {
		t.Errorf("admin listing nodes: %v", err)
	}
}

// Up on a state directory with a healthy sandbox returns it.
func TestUpReturnsTheRunningSandbox(t *testing.T) {
	c := ForTest(t)
	if c.StateDir == "" {
		t.Fatalf("the shared sandbox has no state directory (kubeconfig %s)", c.KubeconfigPath)
	}
	t0 := time.Now()
	again, err := Up(context.Background(), Options{StateDir: c.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	if again.Server != c.Server || again.KubeconfigPath != c.KubeconfigPath {
		t.Errorf("second Up: server %s kubeconfig %s, want %s %s", again.Server, again.KubeconfigPath, c.Server, c.KubeconfigPath)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("second Up took %s: it should not start anything", d)
	}
	s, err := StatusOf(context.Background(), c.StateDir)
	// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
	// and metrics-server.
	if err != nil || !s.Healthy || len(s.Components) != 6 {
		t.Errorf("status %+v, %v: want healthy with 6 components", s, err)
	}
}

// A detached sandbox's lifecycle: up, status, down, down again.
func TestUpStatusDownLifecycle(t *testing.T) {
	ForTest(t) // the binaries are built (or cached) by the shared sandbox
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t0 := time.Now()
	c, err := Up(ctx, Options{StateDir: dir, Nodes: 1, Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Down(context.Background(), dir) })
	t.Logf("warm Up (1 node, detached) in %s", time.Since(t0).Round(100*time.Millisecond))
	s, err := StatusOf(ctx, dir)
	if err != nil || !s.Healthy || !s.Running || !s.Detached {
		t.Fatalf("status after up: %+v, %v", s, err)
	}
	nodes, err := c.Clientset().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		t.Fatalf("nodes: %v, %v", nodes, err)
	}
	st, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := Down(ctx, dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Processes {
		if isOurProcess(p.PID, p.Binary) {
			t.Errorf("%s (pid %d) still runs after Down", p.Name, p.PID)
		}
	}
	s, err = StatusOf(ctx, dir)
	if err != nil || s.Running || s.Healthy {
		t.Errorf("status after down: %+v, %v", s, err)
	}
	if err := Down(ctx, dir); err != nil {
		t.Errorf("second Down: %v", err)
	}
}
