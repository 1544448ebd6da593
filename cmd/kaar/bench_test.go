package main_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/kaar-dev/kaar/pkg/sandbox"
)

// BenchmarkFailureToPlan measures the whole detection-to-plan path of
// "kaar serve" on the sandbox: from the moment a pod's status first shows
// a failure (written by the simulated kubelet, seen by this benchmark's own
// watch) to the moment the plan for its workload is stored (the plan's
// created_at): watcher informer, classification, the bus, the planner's
// evidence gathering and server-side dry run, the KV write.
//
// Every iteration creates one new failing Deployment, cycling through
// CrashLoopBackOff, OOMKilled and ImagePullBackOff, and waits for its plan.
// The latency percentiles are reported as custom metrics (ms):
//
//	make bench-pipeline   (go test -run '^$' -bench FailureToPlan -benchtime 30x ./cmd/kaar)
func BenchmarkFailureToPlan(b *testing.B) {
	c := sandbox.ForTest(b)
	cs := c.Clientset()
	ns := sandbox.NewNamespace(b, cs)
	inst := startServe(b, c, ns, "")
	failures := watchFailures(b, cs, ns)
	rest := restCaller{base: inst.base}

	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("w%d", i)
		createFailing(b, cs, ns, name, i%3)
		p := waitPlanFor(b, rest, ns, name, 2*time.Minute)
		failed, ok := failures.first(name)
		if !ok {
			b.Fatalf("plan %s for %s, but no failing pod status was seen", p.PlanID, name)
		}
		lat = append(lat, p.CreatedAt.Sub(failed))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.9), "p90-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(0, "ns/op")
}

// failureLog remembers, per "app" label, when a pod of it was first seen
// failing.
type failureLog struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (f *failureLog) first(app string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.seen[app]
	return t, ok
}

// watchFailures watches the pods of ns and records the first time each
// app's pod status shows a failure: a waiting reason other than the
// start-up ones, or a terminated state (now or last) that is not a clean
// exit.
func watchFailures(b *testing.B, cs kubernetes.Interface, ns string) *failureLog {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	log := &failureLog{seen: map[string]time.Time{}}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			now := time.Now()
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted || !podFailing(pod) {
				continue
			}
			app := pod.Labels["app"]
			log.mu.Lock()
			if _, ok := log.seen[app]; !ok {
				log.seen[app] = now
			}
			log.mu.Unlock()
		}
	}()
	return log
}

func podFailing(p *corev1.Pod) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" && w.Reason != "PodInitializing" {
			return true
		}
		for _, t := range []*corev1.ContainerStateTerminated{cs.State.Terminated, cs.LastTerminationState.Terminated} {
			if t != nil && (t.ExitCode != 0 || t.Reason == "OOMKilled") {
				return true
			}
		}
	}
	return false
}

// createFailing creates a one-replica Deployment that fails as kind says:
// 0 CrashLoopBackOff (exit 1), 1 OOMKilled, 2 ImagePullBackOff.
func createFailing(b *testing.B, cs kubernetes.Interface, ns, name string, kind int) {
	ann := map[string]string{}
	image := "ghcr.io/kaar-dev/demo/bench:1.0.0"
	switch kind {
	case 0:
		ann[sandbox.AnnotationCrashExitCode] = strconv.Itoa(1)
	case 1:
		ann[sandbox.AnnotationMemoryUsage] = "200Mi"
	default:
		image += "-" + sandbox.NonexistentTag
	}
	dep := sandbox.TestDeployment(ns, name, image, 1, ann)
	dep.Spec.Template.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
	if _, err := cs.AppsV1().Deployments(ns).Create(context.Background(), dep, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
}

type planSummary struct {
	PlanID    string    `json:"plan_id"`
	CreatedAt time.Time `json:"created_at"`
	Target    struct {
		Kind, Name string
	} `json:"target"`
}

// waitPlanFor polls list_remediation_plans (the poll only decides when to
// look; the latency comes from the plan's own created_at).
func waitPlanFor(b *testing.B, c toolCaller, ns, name string, timeout time.Duration) planSummary {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		list := call[struct {
			Plans []planSummary `json:"plans"`
		}](b, c, "list_remediation_plans", map[string]any{"namespace": ns})
		for _, p := range list.Plans {
			if p.Target.Name == name {
				return p
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Fatalf("no plan for %s/%s within %s", ns, name, timeout)
	return planSummary{}
}
