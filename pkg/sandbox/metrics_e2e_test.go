package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// metricsUsage is a container's or node's usage in metrics.k8s.io
// v1beta1 (k8s.io/metrics is not a dependency: the JSON is read as is).
type metricsUsage struct {
	CPU    resource.Quantity `json:"cpu"`
	Memory resource.Quantity `json:"memory"`
}

type podMetricsV1beta1 struct {
	Timestamp  metav1.Time `json:"timestamp"`
	Containers []struct {
		Name  string       `json:"name"`
		Usage metricsUsage `json:"usage"`
	} `json:"containers"`
}

type nodeMetricsListV1beta1 struct {
	Items []struct {
		Metadata  metav1.ObjectMeta `json:"metadata"`
		Timestamp metav1.Time       `json:"timestamp"`
		Usage     metricsUsage      `json:"usage"`
	} `json:"items"`
}

// requireMetricsAPI fails t, saying why, on a sandbox started before it
// served the resource metrics API.
func requireMetricsAPI(t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	if _, err := cs.Discovery().ServerResourcesForGroupVersion("metrics.k8s.io/v1beta1"); err != nil {
		t.Fatalf("this sandbox does not serve metrics.k8s.io/v1beta1 (%v): it predates metrics-server; restart it (kaar-sandbox down, then up)", err)
	}
}

// getMetrics GETs path of the metrics API into out.
func getMetrics(ctx context.Context, cs kubernetes.Interface, path string, out any) error {
	b, err := cs.Discovery().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1" + path).DoRaw(ctx)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// waitPodMetrics polls the metrics of pod ns/name until check accepts them.
func waitPodMetrics(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string, check func(podMetricsV1beta1) (bool, string)) podMetricsV1beta1 {
	t.Helper()
	var m podMetricsV1beta1
	err := poll(ctx, 2*time.Minute, "metrics of pod "+name, func(ctx context.Context) (bool, string, error) {
		m = podMetricsV1beta1{}
		if err := getMetrics(ctx, cs, "/namespaces/"+ns+"/pods/"+name, &m); err != nil {
			return false, err.Error(), nil // NotFound until metrics-server has two samples
		}
		ok, state := check(m)
		return ok, state, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (m podMetricsV1beta1) container(name string) (metricsUsage, bool) {
	for _, c := range m.Containers {
		if c.Name == name {
			return c.Usage, true
		}
	}
	return metricsUsage{}, false
}

func mib(q resource.Quantity) float64 { return float64(q.Value()) / (1 << 20) }

// near reports whether got is within tol of want.
func near(got, want, tol float64) bool { return got >= want-tol && got <= want+tol }

// A user runs `kubectl top pods`: every pod reports usage, the one the
// spec asks for (memory-usage, cpu-usage), growing when memory-growth says
// so and never above the memory limit; nodes report the sum.
func TestResourceMetricsFollowThePodSpec(t *testing.T) {
	t.Parallel()
	c := ForTest(t)
	cs := c.Clientset()
	requireMetricsAPI(t, cs)
	ns := NewNamespace(t, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	limit := func(mem string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(mem)}}
	}
	pods := []struct {
		name string
		ann  map[string]string
		res  corev1.ResourceRequirements
	}{
		{"steady", map[string]string{AnnotationMemoryUsage: "100Mi", AnnotationCPUUsage: "250m"}, limit("200Mi")},
		{"growing", map[string]string{AnnotationMemoryGrowth: "60Mi"}, limit("1Gi")}, // 1Mi a second
		{"capped", map[string]string{AnnotationMemoryUsage: "100Mi", AnnotationMemoryGrowth: "600Mi"}, limit("128Mi")},
		{"plain", nil, corev1.ResourceRequirements{}},
	}
	created := map[string]time.Time{}
	for _, p := range pods {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: ns, Annotations: p.ann},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "ghcr.io/kaar-dev/demo/app:1.0", Resources: p.res},
				{Name: "sidecar", Image: "ghcr.io/kaar-dev/demo/proxy:1.0"}}}}
		got, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created[p.name] = got.CreationTimestamp.Time
	}

	steady := waitPodMetrics(ctx, t, cs, ns, "steady", func(m podMetricsV1beta1) (bool, string) {
		app, _ := m.container("app")
		return app.CPU.MilliValue() >= 200, fmt.Sprintf("%+v", m.Containers) // the first window may start at zero CPU
	})
	t.Logf("metrics of a new pod appeared %s after its creation", time.Since(created["steady"]).Round(time.Second))
	app, _ := steady.container("app")
	side, ok := steady.container("sidecar")
	if !near(mib(app.Memory), 100, 0.5) || !near(float64(app.CPU.MilliValue()), 250, 10) || !ok || !near(mib(side.Memory), 10, 0.5) {
		t.Errorf("steady: app %s %s, sidecar %s %s (found %v); want app 100Mi 250m, sidecar 10Mi (the default)",
			app.Memory.String(), app.CPU.String(), side.Memory.String(), side.CPU.String(), ok)
	}

	plain := waitPodMetrics(ctx, t, cs, ns, "plain", func(m podMetricsV1beta1) (bool, string) {
		return len(m.Containers) == 2, fmt.Sprintf("%+v", m.Containers)
	})
	for _, name := range []string{"app", "sidecar"} {
		u, _ := plain.container(name)
		if !near(mib(u.Memory), 10, 0.5) || u.CPU.MilliValue() > 3 {
			t.Errorf("plain %s: %s %s, want the defaults %s and %s", name, u.Memory.String(), u.CPU.String(), DefaultMemoryUsage, DefaultCPUUsage)
		}
	}

	capped := waitPodMetrics(ctx, t, cs, ns, "capped", func(m podMetricsV1beta1) (bool, string) { return len(m.Containers) == 2, "" })
	if u, _ := capped.container("app"); !near(mib(u.Memory), 128, 0.5) {
		t.Errorf("capped: %s, want the 128Mi limit (100Mi growing 10Mi/s)", u.Memory.String())
	}

	// Growth: 10Mi at creation plus 1Mi a second since, sample after sample.
	first := waitPodMetrics(ctx, t, cs, ns, "growing", func(m podMetricsV1beta1) (bool, string) { return len(m.Containers) == 2, "" })
	later := waitPodMetrics(ctx, t, cs, ns, "growing", func(m podMetricsV1beta1) (bool, string) {
		return m.Timestamp.After(first.Timestamp.Time), "same sample as " + first.Timestamp.String()
	})
	for _, m := range []podMetricsV1beta1{first, later} {
		u, _ := m.container("app")
		// The sample's timestamp is the end of metrics-server's window;
		// kwok computed the usage when it was scraped, within a second.
		want := 10 + m.Timestamp.Sub(created["growing"]).Seconds()
		if !near(mib(u.Memory), want, 3) {
			t.Errorf("growing at %s: %.1fMi, want about %.1fMi (10Mi + 1Mi/s since creation)", m.Timestamp.Format(time.RFC3339), mib(u.Memory), want)
		}
	}
	u1, _ := first.container("app")
	u2, _ := later.container("app")
	if u2.Memory.Cmp(u1.Memory) <= 0 {
		t.Errorf("growing: %s then %s, want growth", u1.Memory.String(), u2.Memory.String())
	}

	// Nodes: kwok sums the usage of the pods on each node.
	pod, err := cs.CoreV1().Pods(ns).Get(ctx, "steady", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var nodes nodeMetricsListV1beta1
	if err := getMetrics(ctx, cs, "/nodes", &nodes); err != nil {
		t.Fatal(err)
	}
	seen := map[string]metricsUsage{}
	for _, n := range nodes.Items {
		seen[n.Metadata.Name] = n.Usage
	}
	for i := range DefaultNodes {
		u, ok := seen[NodeName(i)]
		if !ok || mib(u.Memory) < 256 || u.CPU.MilliValue() < 45 {
			t.Errorf("node %s: %s %s (found %v), want at least its system usage %s and %s", NodeName(i), u.Memory.String(), u.CPU.String(), ok,
				NodeSystemMemoryUsage, NodeSystemCPUUsage)
		}
	}
	// Other tests' pods may run there too: at least the system usage plus
	// the steady pod (100Mi and 10Mi, 250m and 1m).
	if u := seen[pod.Spec.NodeName]; mib(u.Memory) < 256+110 || u.CPU.MilliValue() < 290 {
		t.Errorf("node %s: %s %s, want at least 366Mi and 300m (its system usage and the steady pod's)", pod.Spec.NodeName, u.Memory.String(), u.CPU.String())
	}
}

// HorizontalPodAutoscalers compute their replica count from the simulated
// CPU: one whose target requests 100m and uses 250m (250% of a 50% target)
// scales up to its maximum (ScalingLimited TooManyReplicas); one whose
// target requests no CPU says so, as on a cluster with metrics-server.
func TestHPAsReadTheSimulatedCPU(t *testing.T) {
	t.Parallel()
	c := ForTest(t)
	cs := c.Clientset()
	requireMetricsAPI(t, cs)
	ns := NewNamespace(t, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	busy := TestDeployment(ns, "busy", "ghcr.io/kaar-dev/demo/app:1.0", 1, map[string]string{AnnotationCPUUsage: "250m"})
	busy.Spec.Template.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
	noreq := TestDeployment(ns, "noreq", "ghcr.io/kaar-dev/demo/app:1.0", 1, nil)
	for _, d := range []string{"busy", "noreq"} {
		dep := busy
		if d == "noreq" {
			dep = noreq
		}
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: d, Namespace: ns},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: d},
				MinReplicas:    new(int32(1)), MaxReplicas: 3,
				Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
					Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: new(int32(50))}}}}}}
		if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cond := func(h *autoscalingv2.HorizontalPodAutoscaler, typ autoscalingv2.HorizontalPodAutoscalerConditionType) autoscalingv2.HorizontalPodAutoscalerCondition {
		for _, c := range h.Status.Conditions {
			if c.Type == typ {
				return c
			}
		}
		return autoscalingv2.HorizontalPodAutoscalerCondition{}
	}
	getHPA := func(name string) func(context.Context) (*autoscalingv2.HorizontalPodAutoscaler, error) {
		return func(ctx context.Context) (*autoscalingv2.HorizontalPodAutoscaler, error) {
			return cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		}
	}
	start := time.Now()
	var h *autoscalingv2.HorizontalPodAutoscaler
	err := poll(ctx, 3*time.Minute, "HPA busy at its maximum", func(ctx context.Context) (bool, string, error) {
		var err error
		if h, err = getHPA("busy")(ctx); err != nil {
			return false, "", err
		}
		return h.Status.DesiredReplicas == 3 && cond(h, autoscalingv2.ScalingLimited).Reason == "TooManyReplicas",
			fmt.Sprintf("desired %d, conditions %+v", h.Status.DesiredReplicas, h.Status.Conditions), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("HPA at its maximum %s after creation", time.Since(start).Round(time.Second))
	if a := cond(h, autoscalingv2.ScalingActive); a.Status != corev1.ConditionTrue || a.Reason != "ValidMetricFound" {
		t.Errorf("busy ScalingActive = %+v, want True ValidMetricFound", a)
	}
	if l := cond(h, autoscalingv2.ScalingLimited); l.Status != corev1.ConditionTrue {
		t.Errorf("busy ScalingLimited = %+v, want True TooManyReplicas", l)
	}
	if u := h.Status.CurrentMetrics; len(u) != 1 || u[0].Resource == nil || u[0].Resource.Current.AverageUtilization == nil ||
		!near(float64(*u[0].Resource.Current.AverageUtilization), 250, 10) {
		t.Errorf("busy current metrics = %+v, want about 250%% utilisation", u)
	}
	waitObject(ctx, t, "deployment busy scaled to 3", func(ctx context.Context) (int32, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "busy", metav1.GetOptions{})
		if err != nil {
			return 0, err
		}
		return *d.Spec.Replicas, nil
	}, func(n int32) (bool, string) { return n == 3, fmt.Sprintf("%d replicas", n) })

	waitObject(ctx, t, "HPA noreq says its target has no cpu request", getHPA("noreq"), func(h *autoscalingv2.HorizontalPodAutoscaler) (bool, string) {
		a := cond(h, autoscalingv2.ScalingActive)
		return a.Status == corev1.ConditionFalse && a.Reason == "FailedGetResourceMetric" &&
			strings.Contains(a.Message, "failed to get cpu utilization: missing request for cpu in container app of Pod noreq-"), fmt.Sprintf("%+v", a)
	})
}

// A node a test adds (AddNode) reports metrics like the default ones: its
// system usage while it runs no pod.
func TestExtraNodeReportsMetrics(t *testing.T) {
	t.Parallel()
	c := ForTest(t)
	cs := c.Clientset()
	requireMetricsAPI(t, cs)
	ns := NewNamespace(t, cs) // names the node after the test, uniquely
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	node, err := AddNode(ctx, cs, ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cs.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete node %s: %v", node.Name, err)
		}
	})
	err = poll(ctx, time.Minute, "metrics of node "+node.Name, func(ctx context.Context) (bool, string, error) {
		var nodes nodeMetricsListV1beta1
		if err := getMetrics(ctx, cs, "/nodes", &nodes); err != nil {
			return false, err.Error(), nil
		}
		for _, n := range nodes.Items {
			if n.Metadata.Name == node.Name {
				return near(mib(n.Usage.Memory), 256, 0.5) && near(float64(n.Usage.CPU.MilliValue()), 50, 3),
					n.Usage.Memory.String() + " " + n.Usage.CPU.String(), nil
			}
		}
		return false, "not listed", nil
	})
	if err != nil {
		t.Error(err)
	}
}
