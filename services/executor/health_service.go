package executor

import (
	"cmp"
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ServiceHealth says whether a Service routes traffic again after a
// selector or targetPort fix: its selector selects pods, every port's
// targetPort is one those pods declare (a name any of them has, or a
// number; a number is not checked against pods that declare no port,
// as the watcher does), and its EndpointSlices list a ready endpoint.
// Desired counts the selected pods, Ready the ready endpoints.
func ServiceHealth(svc *corev1.Service, slices []discoveryv1.EndpointSlice, pods []corev1.Pod) Health {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var selected []*corev1.Pod
	for i := range pods {
		p := &pods[i]
		if len(svc.Spec.Selector) > 0 && sel.Matches(labels.Set(p.Labels)) && p.DeletionTimestamp == nil &&
			p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			selected = append(selected, p)
		}
	}
	h := Health{Desired: int32(len(selected))} //nolint:gosec // a list of pods
	var unmet []string
	if len(selected) == 0 {
		unmet = append(unmet, fmt.Sprintf("selector %s selects no pod", sel.String()))
	}
	declares := false
	for _, p := range selected {
		for _, c := range p.Spec.Containers {
			declares = declares || len(c.Ports) > 0
		}
	}
	for _, sp := range svc.Spec.Ports {
		tp := sp.TargetPort
		if tp.Type == intstr.Int && tp.IntVal == 0 {
			tp = intstr.FromInt32(sp.Port)
		}
		if len(selected) == 0 || (tp.Type == intstr.Int && !declares) {
			continue
		}
		found := false
		for _, p := range selected {
			found = found || declaresPort(p, tp, cmp.Or(sp.Protocol, corev1.ProtocolTCP))
		}
		if !found {
			unmet = append(unmet, fmt.Sprintf("port %d targets %s, which no selected pod declares", sp.Port, tp.String()))
		}
	}
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				h.Ready++
			}
		}
	}
	h.Available = h.Ready
	if h.Ready == 0 {
		unmet = append(unmet, "no ready endpoint in its EndpointSlices")
	}
	return h.verdict(unmet)
}

func declaresPort(p *corev1.Pod, tp intstr.IntOrString, proto corev1.Protocol) bool {
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cmp.Or(cp.Protocol, corev1.ProtocolTCP) != proto {
				continue
			}
			if tp.Type == intstr.String && cp.Name == tp.StrVal || tp.Type == intstr.Int && cp.ContainerPort == tp.IntVal {
				return true
			}
		}
	}
	return false
}

// serviceHealth reads a Service, its EndpointSlices and the pods of its
// namespace that its selector matches.
func (s *Service) serviceHealth(ctx context.Context, namespace, name string) (Health, error) {
	svc, err := s.kube.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Health{}, err
	}
	es, err := s.kube.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return Health{}, err
	}
	var mine []discoveryv1.EndpointSlice
	for _, e := range es.Items {
		if e.Labels[discoveryv1.LabelServiceName] == name { // the fake clientset ignores selectors
			mine = append(mine, e)
		}
	}
	var pods []corev1.Pod
	if len(svc.Spec.Selector) > 0 {
		l, err := s.kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
		if err != nil {
			return Health{}, err
		}
		pods = l.Items
	}
	return ServiceHealth(svc, mine, pods), nil
}
