package main

import (
	"context"
	"fmt"
	"time"

	"github.com/kaar-dev/kaar/pkg/sandbox"
	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// failure is one of the five failing workload kinds of the load.
type failure string

const (
	failCrash   failure = "crash"
	failImage   failure = "image"
	failOOM     failure = "oom"
	failPending failure = "pending"
	failEvict   failure = "evict"
)

var failures = []failure{failCrash, failImage, failOOM, failPending, failEvict}

// shape is the load: healthy Deployments, failing Deployments (5% of the
// pods, spread over the five failures) and bare pods the storm makes fail.
type shape struct {
	HealthyDeployments int
	HealthyReplicas    int32
	LastReplicas       int32 // replicas of the last healthy Deployment (the remainder)
	FailingDeployments int
	FailingReplicas    int32
	StormPods          int
}

func planLoad(pods, failPercent, storm int) (shape, error) {
	const healthyReplicas, failingReplicas = 50, 5
	failing := pods * failPercent / 100
	s := shape{HealthyReplicas: healthyReplicas, FailingReplicas: failingReplicas, StormPods: storm}
	s.FailingDeployments = max(len(failures), failing/failingReplicas)
	healthy := pods - storm - s.FailingDeployments*failingReplicas
	if healthy < 0 {
		return s, fmt.Errorf("-pods %d is too small for a storm of %d and %d%% failing", pods, storm, failPercent)
	}
	s.HealthyDeployments = (healthy + healthyReplicas - 1) / healthyReplicas
	s.LastReplicas = int32(healthy - (s.HealthyDeployments-1)*healthyReplicas)
	if s.HealthyDeployments == 0 {
		s.LastReplicas = 0
	}
	return s, nil
}

func (s shape) total() int {
	return max(s.HealthyDeployments-1, 0)*int(s.HealthyReplicas) + int(s.LastReplicas) + s.FailingDeployments*int(s.FailingReplicas) + s.StormPods
}

func failingName(i int) (string, failure) {
	f := failures[i%len(failures)]
	return fmt.Sprintf("fail-%s-%03d", f, i), f
}

func deployment(name string, replicas int32, f failure) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	c := corev1.Container{Name: "app", Image: "registry.example/bench/app:1.0"}
	var ann map[string]string
	switch f {
	case failCrash:
		ann = map[string]string{sandbox.AnnotationCrashExitCode: "1"}
	case failImage:
		c.Image = "registry.example/bench/app:1.0-nonexistent"
	case failOOM:
		ann = map[string]string{sandbox.AnnotationMemoryUsage: "200Mi"}
		c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
	case failPending:
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64")}
	}
	zero := int64(0)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: ann},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{c}, TerminationGracePeriodSeconds: &zero},
			},
		},
	}
}

func stormPodName(i int) string { return fmt.Sprintf("storm-%04d", i) }

func barePod(name string) *corev1.Pod {
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench": "storm"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/bench/app:1.0"}},
			TerminationGracePeriodSeconds: &zero},
	}
}

// createHealthy creates the healthy Deployments, the evict Deployments
// (healthy until their pods are evicted) and the storm's bare pods.
func createHealthy(ctx context.Context, cs kubernetes.Interface, ns string, s shape) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range s.HealthyDeployments {
		replicas := s.HealthyReplicas
		if i == s.HealthyDeployments-1 {
			replicas = s.LastReplicas
		}
		d := deployment(fmt.Sprintf("healthy-%03d", i), replicas, "")
		g.Go(func() error { return create(ctx, cs, ns, d) })
	}
	for i := range s.FailingDeployments {
		if name, f := failingName(i); f == failEvict {
			d := deployment(name, s.FailingReplicas, "")
			g.Go(func() error { return create(ctx, cs, ns, d) })
		}
	}
	for i := range s.StormPods {
		p := barePod(stormPodName(i))
		g.Go(func() error {
			_, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
			return err
		})
	}
	return g.Wait()
}

// createFailing makes 5% of the pods fail: new failing Deployments, and
// the eviction of the evict Deployments' running pods.
func createFailing(ctx context.Context, cs kubernetes.Interface, ns string, s shape) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range s.FailingDeployments {
		name, f := failingName(i)
		if f != failEvict {
			d := deployment(name, s.FailingReplicas, f)
			g.Go(func() error { return create(ctx, cs, ns, d) })
			continue
		}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			g.Go(func() error { return annotate(ctx, cs, ns, p.Name, sandbox.AnnotationEvict, "memory") })
		}
	}
	return g.Wait()
}

// storm makes the storm's bare pods crash, paced evenly over window.
func storm(ctx context.Context, cs kubernetes.Interface, ns string, n int, window time.Duration) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(window * time.Duration(i) / time.Duration(n))); d > 0 {
			time.Sleep(d)
		}
		name := stormPodName(i)
		g.Go(func() error { return annotate(ctx, cs, ns, name, sandbox.AnnotationCrashExitCode, "1") })
	}
	return g.Wait()
}

func create(ctx context.Context, cs kubernetes.Interface, ns string, d *appsv1.Deployment) error {
	_, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	return err
}

func annotate(ctx context.Context, cs kubernetes.Interface, ns, pod, key, value string) error {
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, key, value)
	_, err := cs.CoreV1().Pods(ns).Patch(ctx, pod, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}
