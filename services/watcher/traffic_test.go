package watcher

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestClassifyService(t *testing.T) {
	now := fixtureNow
	old := metav1.NewTime(now.Add(-time.Hour))
	recent := metav1.NewTime(now.Add(-30 * time.Second))
	service := func(mut ...func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", CreationTimestamp: old},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
		for _, m := range mut {
			m(s)
		}
		return s
	}
	pod := func(name string, ready bool, created metav1.Time, ports ...corev1.ContainerPort) *corev1.Pod {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", CreationTimestamp: created, Labels: map[string]string{"app": "web"}},
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Ports: ports}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
	}
	http := corev1.ContainerPort{Name: "http", ContainerPort: 8080}
	slice := func(ready ...bool) *discoveryv1.EndpointSlice {
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-x", Labels: map[string]string{labelServiceName: "web"}}}
		for _, r := range ready {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: &r}})
		}
		return es
	}
	cases := []struct {
		name    string
		svc     *corev1.Service
		b       ServiceBackends
		reason  string // "" for no issue
		pods    int
		inMsg   string
		recheck time.Time
	}{
		{name: "healthy", svc: service(), b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", true, old, http)}, Slices: []*discoveryv1.EndpointSlice{slice(true)}}},
		{name: "one of two ready", svc: service(), b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", true, old, http), pod("web-2", false, old, http)},
			Slices: []*discoveryv1.EndpointSlice{slice(true, false)}}},
		{name: "selector matches nothing", svc: service(), reason: reasonSelectorMatchesNothing, inMsg: "selects app=web, which matches no pod"},
		{name: "selector matches nothing, service new", svc: service(func(s *corev1.Service) { s.CreationTimestamp = recent }),
			recheck: recent.Add(ServiceGrace)},
		{name: "workload scaled to zero", svc: service(), b: ServiceBackends{Workloads: []SelectedWorkload{{Kind: "Deployment", Name: "web", Created: old.Time}}}},
		{name: "workload wants pods it has not", svc: service(), b: ServiceBackends{Workloads: []SelectedWorkload{{Kind: "Deployment", Name: "web", Replicas: 2, Created: old.Time}}},
			reason: reasonNoReadyEndpoints, inMsg: "deployment web (2 replicas), but none exists"},
		{name: "workload just created", svc: service(), b: ServiceBackends{Workloads: []SelectedWorkload{{Kind: "Deployment", Name: "web", Replicas: 2, Created: recent.Time}}},
			recheck: recent.Add(ServiceGrace)},
		{name: "external name", svc: service(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName; s.Spec.Selector = nil })},
		{name: "external name with a selector", svc: service(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName })},
		{name: "no selector", svc: service(func(s *corev1.Service) { s.Spec.Selector = nil })},
		{name: "deleted", svc: service(func(s *corev1.Service) { s.DeletionTimestamp = &old })},
		{name: "named target port missing", svc: service(func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("web") }),
			b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", true, old, http)}}, reason: reasonTargetPortMismatch, pods: 1,
			inMsg: "port http (80) targets web, which none of its 1 pods has (their container ports: http=8080)"},
		{name: "named target port present", svc: service(func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("http") }),
			b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", true, old, http)}, Slices: []*discoveryv1.EndpointSlice{slice(true)}}},
		{name: "named target port without declared ports", svc: service(func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("http") }),
			b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", true, old)}}, reason: reasonTargetPortMismatch, pods: 1, inMsg: "container ports: none"},
		{name: "numeric target port missing", svc: service(func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(9090) }),
			b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", true, old, http), pod("web-2", true, old, http)}}, reason: reasonTargetPortMismatch, pods: 2,
			inMsg: "targets 9090"},
		{name: "numeric target port defaults to port", svc: service(func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.IntOrString{} }),
			b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", true, old, http)}}, reason: reasonTargetPortMismatch, pods: 1, inMsg: "targets 80"},
		{name: "numeric target port, pods declare no port", svc: service(func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(9090) }),
			b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", true, old)}, Slices: []*discoveryv1.EndpointSlice{slice(true)}}},
		{name: "protocol differs", svc: service(func(s *corev1.Service) { s.Spec.Ports[0].Protocol = corev1.ProtocolUDP }),
			b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", true, old, http)}}, reason: reasonTargetPortMismatch, pods: 1},
		{name: "no ready endpoint", svc: service(), b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", false, old, http), pod("web-2", false, old, http)},
			Slices: []*discoveryv1.EndpointSlice{slice(false, false)}}, reason: reasonNoReadyEndpoints, pods: 2,
			inMsg: "selects 2 pods (web-1, web-2), none of them ready"},
		{name: "no ready endpoint, no slice: the pods say", svc: service(), b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", false, old, http)}},
			reason: reasonNoReadyEndpoints, pods: 1},
		{name: "no slice, pod ready", svc: service(), b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", true, old, http)}}},
		{name: "pods still starting", svc: service(), b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", false, old, http), pod("web-2", false, recent, http)},
			Slices: []*discoveryv1.EndpointSlice{slice(false)}}, reason: reasonNoReadyEndpoints, pods: 2},
		{name: "all pods starting", svc: service(), b: ServiceBackends{Pods: []*corev1.Pod{pod("web-2", false, recent, http)},
			Slices: []*discoveryv1.EndpointSlice{slice(false)}}, recheck: recent.Add(ServiceGrace)},
		{name: "publishes not-ready addresses", svc: service(func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }),
			b: ServiceBackends{Pods: []*corev1.Pod{pod("web-1", false, old, http)}, Slices: []*discoveryv1.EndpointSlice{slice(false)}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, recheck := ClassifyService(tc.svc, tc.b, now, ServiceGrace)
			if !recheck.Equal(tc.recheck) {
				t.Errorf("recheck = %v, want %v", recheck, tc.recheck)
			}
			if tc.reason == "" {
				if len(got) != 0 {
					t.Fatalf("issues = %+v, want none", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("issues = %+v, want one %s", got, tc.reason)
			}
			g := got[0]
			if g.Type != events.IssueServiceUnavailable || g.Reason != tc.reason || g.PodCount != tc.pods || !strings.Contains(g.Message, tc.inMsg) {
				t.Errorf("issue = %+v, want %s %s pods=%d with %q", g, events.IssueServiceUnavailable, tc.reason, tc.pods, tc.inMsg)
			}
			in := events.Incident{ID: events.IncidentID("c", "shop", "Service", "web", "", g.Type), Cluster: "c", Namespace: "shop",
				Owner: events.ObjectRef{Kind: "Service", Name: "web"}, Type: g.Type, Reason: g.Reason, PodCount: g.PodCount,
				FirstSeen: now, LastSeen: now, Severity: g.Type.DefaultSeverity()}
			if err := in.Validate(); err != nil {
				t.Errorf("issue does not make a valid incident: %v", err)
			}
		})
	}
}

// The informers' trimmed Services, EndpointSlices and pods keep what
// ClassifyService reads.
func TestTrimKeepsWhatServicesNeed(t *testing.T) {
	ready := false
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: map[string]string{"a": "b"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, ClusterIP: "10.0.0.1",
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}}}}
	es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-x", Labels: map[string]string{labelServiceName: "web", "app": "web"}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.1.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "web-1"}}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, HostPort: 80}}}}}}
	ts, _ := transform(svc)
	tes, _ := transform(es)
	tp, _ := transform(pod)
	s, e, p := ts.(*corev1.Service), tes.(*discoveryv1.EndpointSlice), tp.(*corev1.Pod)
	if s.Spec.Selector["app"] != "web" || len(s.Spec.Ports) != 1 || s.Spec.Ports[0].TargetPort.StrVal != "http" || s.Spec.ClusterIP != "" || s.Annotations != nil {
		t.Errorf("trimmed service = %+v", s)
	}
	if e.Labels[labelServiceName] != "web" || len(e.Labels) != 1 || len(e.Endpoints) != 1 || *e.Endpoints[0].Conditions.Ready ||
		e.Endpoints[0].Addresses != nil || e.Endpoints[0].TargetRef.Name != "web-1" {
		t.Errorf("trimmed slice = %+v", e)
	}
	if p.Labels["app"] != "web" || len(p.Spec.Containers[0].Ports) != 1 || p.Spec.Containers[0].Ports[0].Name != "http" || p.Spec.Containers[0].Ports[0].HostPort != 0 {
		t.Errorf("trimmed pod = %+v", p)
	}
}
