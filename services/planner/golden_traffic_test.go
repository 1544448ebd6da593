package planner

import (
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Plans of a Service that routes to no ready pod, with the Service, its
// endpoints, its pods' ports and the workloads whose pod labels nearly
// match as evidence: a typed selector or targetPort fix when exactly one
// answer fits (actions_service.go), diagnostic otherwise.
func init() { planCases = append(planCases, trafficCases...) }

var trafficCases = []planCase{
	{name: "service-selector-matches-nothing-diagnostic", id: 60, workload: "service:" + trafficSelectorMatchesNothing, typ: events.IssueServiceUnavailable,
		strategies: []Strategy{{Name: "rollout_restart"}},
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			risk: events.RiskNone, notes: []string{"strategy rollout_restart does not apply"},
			summary: []string{"ServiceUnavailable in service/web (selector matches nothing); no configured strategy applies"},
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
	{name: "service-selector-fix", id: 160, workload: "service:" + trafficSelectorMatchesNothing, typ: events.IssueServiceUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionSetServiceSelector}, risk: events.RiskMedium,
			notes:   []string{"deployment/web is the only workload with replicas whose pod labels carry every key of the selector app=wbe"},
			summary: []string{"set its selector to app=web, the pod labels of deployment/web"},
			fields: []fieldCheck{
				eq("/steps/0/target/kind", "Service"), eq("/steps/0/params/selector", "app=web"), eq("/steps/0/params/from", "app=wbe"),
				eq("/steps/0/patch/0/path", "/metadata/resourceVersion"), eq("/steps/0/patch/0/value", "501"),
				eq("/steps/0/patch/1/op", "test"), eq("/steps/0/patch/1/path", "/spec/selector"), eq("/steps/0/patch/1/value/app", "wbe"),
				eq("/steps/0/patch/2/op", "replace"), eq("/steps/0/patch/2/path", "/spec/selector"), eq("/steps/0/patch/2/value/app", "web"),
				length("/steps/0/patch", 3),
				eq("/steps/0/undo_patch/0/op", "test"), eq("/steps/0/undo_patch/0/value/app", "web"),
				eq("/steps/0/undo_patch/1/op", "replace"), eq("/steps/0/undo_patch/1/value/app", "wbe"),
				has("/steps/0/kubectl", "kubectl -n apps patch service/web --type=json -p"),
				eq("/steps/0/dry_run/ok", true),
			}}},
	{name: "service-selector-ambiguous-diagnostic", id: 161, workload: "service:" + trafficSelectorMatchesNothing + ":ambiguous", typ: events.IssueServiceUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true, risk: events.RiskNone,
			notes: []string{"strategy set_service_selector does not apply: deployment/web and deployment/web-canary have pod labels on every key of the selector"}}},
	{name: "service-selector-missing-key-diagnostic", id: 162, workload: "service:" + trafficSelectorMatchesNothing + ":extra-key", typ: events.IssueServiceUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			notes: []string{"strategy set_service_selector does not apply: no workload with replicas has pod labels on every key of the selector"}}},
	{name: "service-selector-foreign-pods-diagnostic", id: 163, workload: "service:" + trafficSelectorMatchesNothing + ":foreign", typ: events.IssueServiceUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			notes: []string{"the corrected selector app=web would also select pod/stray, which deployment/web's selector does not"}}},
	{name: "service-target-port-named-fix", id: 61, workload: "service:" + trafficTargetPortMismatch, typ: events.IssueServiceUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionSetServiceTargetPort}, risk: events.RiskMedium,
			summary: []string{"set the targetPort of port 80 to http, the only TCP port its pods declare (http=8080)"},
			fields: []fieldCheck{
				eq("/steps/0/params/port", "80"), eq("/steps/0/params/target_port", "http"), eq("/steps/0/params/from", "web"),
				eq("/steps/0/patch/0/path", "/metadata/resourceVersion"),
				eq("/steps/0/patch/1/path", "/spec/ports/0/port"), eq("/steps/0/patch/1/value", 80),
				eq("/steps/0/patch/2/path", "/spec/ports/0/targetPort"), eq("/steps/0/patch/2/value", "web"),
				eq("/steps/0/patch/3/op", "replace"), eq("/steps/0/patch/3/value", "http"),
				eq("/steps/0/undo_patch/0/path", "/spec/ports/0/targetPort"), eq("/steps/0/undo_patch/0/value", "http"),
				eq("/steps/0/undo_patch/2/value", "web"),
			}}},
	{name: "service-target-port-numeric-fix", id: 62, workload: "service:" + trafficTargetPortMismatch + ":numeric", typ: events.IssueServiceUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionSetServiceTargetPort},
			fields: []fieldCheck{eq("/steps/0/params/target_port", "8080"), eq("/steps/0/patch/3/value", 8080), eq("/steps/0/patch/2/value", 9090)}}},
	{name: "service-target-port-two-ports-diagnostic", id: 164, workload: "service:" + trafficTargetPortMismatch + ":two-ports", typ: events.IssueServiceUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			notes: []string{"strategy set_service_target_port does not apply: pod web-5d4f-a declares 2 TCP container ports"},
			fields: []fieldCheck{
				has("/steps/0/title", "service/web: http 80/TCP -> targetPort web, which no container port of its 2 pods declares (their ports: http=8080, metrics=9090)"),
				eq("/steps/2/kubectl", "kubectl -n apps edit service web"),
			}}},
	{name: "service-no-ready-endpoints-diagnostic", id: 63, workload: "service:" + trafficNoReadyEndpoints, typ: events.IssueServiceUnavailable,
		expect: expect{actions: []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}, diagnosticOnly: true,
			summary: []string{"ServiceUnavailable in service/web (no ready endpoints, 2 pods)"},
			notes:   []string{"no change of the Service makes them ready"},
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
// a ServiceUnavailable incident of reason. variant: "numeric" (a numeric
// targetPort), "two-ports" (the pods also declare metrics=9090),
// "ambiguous" (a second Deployment web-canary labelled app=canary),
// "extra-key" (the selector also has tier=front, which no pod label has),
// "foreign" (a bare pod stray labelled app=web).
func trafficInput(t *testing.T, cfg Config, reason, variant string) planInput {
	numeric := variant == "numeric"
	t.Helper()
	created := metav1.NewTime(goldenLastSeen.Add(-time.Hour))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps", UID: "svc-uid", ResourceVersion: "501", CreationTimestamp: created},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}}}}
	http := []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}
	if variant == "two-ports" {
		http = append(http, corev1.ContainerPort{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP})
	}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:2", Ports: http}}}}
	near := nearWorkload{Ref: "deployment/web", Labels: map[string]string{"app": "web"}, Replicas: 2, Ports: portNames(http),
		Selector: labels.SelectorFromSet(labels.Set{"app": "web"})}
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
		switch variant {
		case "ambiguous":
			canary := near
			canary.Ref, canary.Labels, canary.Replicas = "deployment/web-canary", map[string]string{"app": "canary"}, 1
			tr.Near = append(tr.Near, canary)
		case "extra-key":
			svc.Spec.Selector["tier"] = "front"
			tr.Near[0].Differs = []string{"app", "tier"}
		case "foreign":
			tr.ProposedForeign = []string{"pod/stray"}
		}
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
