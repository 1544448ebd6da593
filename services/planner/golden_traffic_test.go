package planner

import (
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Plans of a Service that routes to no ready pod: diagnostic by design
// (the executor's catalogue has no step that patches a Service), with the
// Service, its endpoints, its pods' ports and the workloads whose pod
// labels nearly match as evidence.
func init() { planCases = append(planCases, trafficCases...) }

var trafficCases = []planCase{
	{name: "service-selector-matches-nothing-diagnostic", id: 60, workload: "service:" + trafficSelectorMatchesNothing, typ: events.IssueServiceUnavailable,
		strategies: []Strategy{{Name: "rollout_restart"}},
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			risk: events.RiskNone, notes: []string{"kaar does not change Services yet"},
			summary: []string{"ServiceUnavailable in service/web (selector matches nothing); diagnostic only: kaar does not change Services yet"},
			fields: []fieldCheck{
				eq("/target/kind", "Service"),
				has("/steps/0/title", "The selector of service/web (app=wbe) matches no pod of namespace apps"),
				eq("/steps/0/kubectl", "kubectl -n apps get pods -l app=wbe --show-labels"), eq("/steps/0/target/kind", "Service"),
				has("/steps/1/title", "deployment/web has pod labels app=web (differs on app)"),
				eq("/steps/2/kubectl", "kubectl -n apps describe service web"),
				eq("/steps/3/kubectl", "kubectl -n apps get endpointslices -l kubernetes.io/service-name=web -o wide"),
				eq("/evidence/0/kind", "traffic"), eq("/evidence/0/data/selector", "app=wbe"), eq("/evidence/0/data/selected_pods", "0"),
				has("/evidence/0/lines/4", "deployment/web pod labels app=web (differs on app), replicas 2, container ports http=8080"),
			}}},
	{name: "service-target-port-named-diagnostic", id: 61, workload: "service:" + trafficTargetPortMismatch, typ: events.IssueServiceUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", "service/web: http 80/TCP -> targetPort web, which no container port of its 2 pods declares (their ports: http=8080)"),
				has("/steps/1/kubectl", "get pods -l app=web -o"), eq("/steps/2/kubectl", "kubectl -n apps edit service web"),
				eq("/evidence/0/data/selected_pods", "2"), has("/evidence/0/lines/1", "port http 80/TCP -> targetPort web"),
				has("/evidence/0/lines/4", "pod/web-5d4f-a phase Running, ready true, container ports http=8080"),
			}}},
	{name: "service-target-port-numeric-diagnostic", id: 62, workload: "service:" + trafficTargetPortMismatch + ":numeric", typ: events.IssueServiceUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			fields: []fieldCheck{has("/steps/0/title", "http 80/TCP -> targetPort 9090, which no container port")}}},
	{name: "service-no-ready-endpoints-diagnostic", id: 63, workload: "service:" + trafficNoReadyEndpoints, typ: events.IssueServiceUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			summary: []string{"ServiceUnavailable in service/web (no ready endpoints, 2 pods)"},
			fields: []fieldCheck{
				has("/steps/0/title", "service/web has 0 of 2 endpoints ready"),
				eq("/steps/0/kubectl", "kubectl -n apps get endpointslices -l kubernetes.io/service-name=web -o wide"),
				eq("/steps/1/kubectl", "kubectl -n apps get pods -l app=web -o wide"),
				eq("/evidence/0/data/ready_endpoints", "0"), eq("/evidence/0/data/endpoints", "2"),
				has("/evidence/0/lines/2", "endpointslice/web-x1: pod/web-5d4f-a not ready, pod/web-5d4f-b not ready; ports http=8080"),
			}}},
}

// trafficInput: Service apps/web (port http 80) beside Deployment web
// (2 replicas, pods labelled app=web with container port http=8080), for
// a ServiceUnavailable incident of reason (a numeric targetPort when
// numeric).
func trafficInput(t *testing.T, cfg Config, reason string, numeric bool) planInput {
	t.Helper()
	created := metav1.NewTime(goldenLastSeen.Add(-time.Hour))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps", UID: "svc-uid", ResourceVersion: "501", CreationTimestamp: created},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}}}}
	http := []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:2", Ports: http}}}}
	near := nearWorkload{Ref: "deployment/web", Labels: map[string]string{"app": "web"}, Replicas: 2, Ports: []string{"http=8080"}}
	pod := func(name string, ready bool) corev1.Pod {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", Labels: tmpl.Labels}, Spec: tmpl.Spec,
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
	}
	endpoints := func(ready bool, pods ...string) discoveryv1.EndpointSlice {
		es := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-x1", Namespace: "apps", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080))}}}
		for i, p := range pods {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.244.0." + string(rune('1'+i))},
				Conditions: discoveryv1.EndpointConditions{Ready: new(ready)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: p}})
		}
		return es
	}
	tr := &trafficRead{Service: svc}
	var inc events.Incident
	switch reason {
	case trafficSelectorMatchesNothing:
		svc.Spec.Selector = map[string]string{"app": "wbe"}
		near.Differs = []string{"app"}
		tr.Near = []nearWorkload{near}
		inc = noPodIncident(kindRef(KindService, "v1", svc.ObjectMeta), events.IssueServiceUnavailable, reason,
			"service web selects app=wbe, which matches no pod and no workload in the namespace: no endpoint receives its traffic")
	case trafficTargetPortMismatch:
		target := "web"
		if numeric {
			svc.Spec.Ports[0].TargetPort, target = intstr.FromInt32(9090), "9090"
		} else {
			svc.Spec.Ports[0].TargetPort = intstr.FromString("web")
		}
		tr.Pods = []corev1.Pod{pod("web-5d4f-a", true), pod("web-5d4f-b", true)}
		tr.Near = []nearWorkload{near}
		inc = noPodIncident(kindRef(KindService, "v1", svc.ObjectMeta), events.IssueServiceUnavailable, reason,
			"service web: port http (80) targets "+target+", which none of its 2 pods has (their container ports: http=8080)")
		inc.PodCount = 2
	case trafficNoReadyEndpoints:
		tr.Pods = []corev1.Pod{pod("web-5d4f-a", false), pod("web-5d4f-b", false)}
		tr.Slices = []discoveryv1.EndpointSlice{endpoints(false, "web-5d4f-a", "web-5d4f-b")}
		tr.Near = []nearWorkload{near}
		inc = noPodIncident(kindRef(KindService, "v1", svc.ObjectMeta), events.IssueServiceUnavailable, reason,
			"service web selects 2 pods (web-5d4f-a, web-5d4f-b), none of them ready: no endpoint receives its traffic")
		inc.PodCount = 2
	default:
		t.Fatalf("no traffic input for reason %q", reason)
	}
	w, err := workloadOf(svc)
	if err != nil {
		t.Fatal(err)
	}
	return planInput{Cfg: cfg, Owner: w, Incident: inc, Traffic: tr, Now: goldenNow}
}
