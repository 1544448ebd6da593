package watcher

import (
	"cmp"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// probeWatch is the watcher's view of probe failures: the kubelet's
// Warning Unhealthy events of pods (their own informer, filtered by the
// API server, trimmed like the other events) and, per pod, the last
// failure of each container's probes. Optional like the pull failure
// events: without them a liveness kill is reported by its exit code.
type probeWatch struct {
	factory informers.SharedInformerFactory
	events  cache.SharedIndexInformer
	// failures are the pods' probe failures by container name.
	failures *uidMemory[map[string]ContainerProbes]
}

// watchProbes builds the probe events informer and registers its
// handlers; New calls it before anything runs.
func (s *Service) watchProbes(cs kubernetes.Interface) error {
	opts := []informers.SharedInformerOption{informers.WithTransform(transform),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = probeEventFieldSelector })}
	if s.cfg.Namespace != "" {
		opts = append(opts, informers.WithNamespace(s.cfg.Namespace))
	}
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, opts...)
	s.probes = &probeWatch{factory: f, events: f.Core().V1().Events().Informer(), failures: newUIDMemory[map[string]ContainerProbes]()}
	if _, err := s.probes.events.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.probeEventChanged,
		UpdateFunc: func(_, obj any) { s.probeEventChanged(obj) },
	}); err != nil {
		return fmt.Errorf("watcher: probe event handler: %w", err)
	}
	// What is remembered about a pod goes with it.
	if _, err := s.cl.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if p := podOf(obj); p != nil {
			s.probes.failures.forget(p.UID)
		}
	}}); err != nil {
		return fmt.Errorf("watcher: pod handler: %w", err)
	}
	return nil
}

// probeEventChanged remembers a probe failure of a cached pod and
// re-evaluates the pod's owner when it is news. Failures of pods the
// cache does not have (deleted, or outside the scope) are not kept, so
// nothing needs pruning.
func (s *Service) probeEventChanged(obj any) {
	ev, _ := obj.(*corev1.Event)
	container, f, ok := ProbeFailureOf(ev)
	if !ok || ev.InvolvedObject.UID == "" {
		return
	}
	ns := cmp.Or(ev.InvolvedObject.Namespace, ev.Namespace)
	pod := get[corev1.Pod](s.cl.pods, ns, ev.InvolvedObject.Name)
	if !s.filter.watched(ns) || pod == nil || pod.UID != ev.InvolvedObject.UID {
		return
	}
	prev, _ := s.probes.failures.get(pod.UID)
	next, changed := mergeProbe(clonedProbes(prev), container, f)
	if !changed || !s.probes.failures.observe(pod.UID, ns, pod.Name, next, func(_, _ map[string]ContainerProbes) bool { return true }) {
		return
	}
	s.podChanged(nil, pod)
}

// probeFailures returns a copy of what is remembered about the pod uid.
func (s *Service) probeFailures(uid types.UID) map[string]ContainerProbes {
	m, _ := s.probes.failures.get(uid)
	return clonedProbes(m)
}

func clonedProbes(m map[string]ContainerProbes) map[string]ContainerProbes {
	if m == nil {
		return nil
	}
	out := make(map[string]ContainerProbes, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
