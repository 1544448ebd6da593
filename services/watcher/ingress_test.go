package watcher

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testIngress(class string, backends ...networkingv1.IngressServiceBackend) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "ns", UID: "ing-uid",
		CreationTimestamp: metav1.NewTime(fixtureNow.Add(-time.Hour)), ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
	if class != "" {
		ing.Spec.IngressClassName = &class
	}
	rule := networkingv1.IngressRule{Host: "shop.example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}
	for i, b := range backends {
		prefix := networkingv1.PathTypePrefix
		rule.HTTP.Paths = append(rule.HTTP.Paths, networkingv1.HTTPIngressPath{Path: []string{"/", "/api", "/admin"}[i%3], PathType: &prefix,
			Backend: networkingv1.IngressBackend{Service: &b}})
	}
	ing.Spec.Rules = []networkingv1.IngressRule{rule}
	return ing
}

func backend(svc string, port any) networkingv1.IngressServiceBackend {
	b := networkingv1.IngressServiceBackend{Name: svc}
	switch p := port.(type) {
	case int:
		b.Port.Number = int32(p)
	case string:
		b.Port.Name = p
	}
	return b
}

func webService(name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Spec: corev1.ServiceSpec{Ports: ports}}
}

func TestClassifyIngress(t *testing.T) {
	web := webService("web", corev1.ServicePort{Name: "http", Port: 80})
	external := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName}}
	nginx := IngressClasses{Known: true, Names: []string{"nginx"}}
	withDefault := IngressClasses{Known: true, Names: []string{"nginx"}, Default: true}
	legacy := testIngress("", backend("web", 80))
	legacy.Annotations = map[string]string{annotationIngressClass: "nginx"}
	withDefaultBackend := testIngress("nginx")
	withDefaultBackend.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "fallback",
		Port: networkingv1.ServiceBackendPort{Number: 8080}}}
	for name, tc := range map[string]struct {
		ing       *networkingv1.Ingress
		classes   IngressClasses
		reason    string // "" for no issue
		inMessage string
	}{
		"healthy by port number":       {testIngress("nginx", backend("web", 80)), nginx, "", ""},
		"healthy by port name":         {testIngress("nginx", backend("web", "http")), nginx, "", ""},
		"no class, a default class":    {testIngress("", backend("web", 80)), withDefault, "", ""},
		"legacy class annotation":      {legacy, nginx, "", ""},
		"classes not readable":         {testIngress("missing", backend("web", 80)), IngressClasses{}, "", ""},
		"ExternalName ports not known": {testIngress("nginx", backend("ext", 443)), nginx, "", ""},
		"missing service": {testIngress("nginx", backend("web", 80), backend("api", 8080)), nginx, reasonIngressServiceNotFound,
			"ingress shop: rule shop.example.com/api routes to service api, which does not exist"},
		"missing port number": {testIngress("nginx", backend("web", 8080)), nginx, reasonIngressPortNotFound,
			"rule shop.example.com/ routes to port 8080 of service web, which has no such port (its ports: http=80)"},
		"missing port name": {testIngress("nginx", backend("web", "https")), nginx, reasonIngressPortNotFound,
			"routes to port https of service web, which has no such port"},
		"missing class": {testIngress("nginx-internal", backend("web", 80)), nginx, reasonIngressClassNotFound,
			`ingressClassName "nginx-internal" names no IngressClass (the cluster has: nginx), so no ingress controller serves it`},
		"no class and no default": {testIngress("", backend("web", 80)), IngressClasses{Known: true}, reasonNoIngressClass,
			"no IngressClass is the default (the cluster has: none)"},
		"class before services": {testIngress("x", backend("api", 80), backend("web", 81)), nginx, reasonIngressClassNotFound,
			"routes to service api, which does not exist; rule shop.example.com/api routes to port 81 of service web"},
		"default backend": {withDefaultBackend, nginx, reasonIngressServiceNotFound,
			"default backend routes to service fallback, which does not exist"},
	} {
		t.Run(name, func(t *testing.T) {
			services := map[string]*corev1.Service{"web": web, "ext": external}
			got, recheck := ClassifyIngress(tc.ing, services, tc.classes, fixtureNow, time.Minute)
			if !recheck.IsZero() {
				t.Errorf("recheck %v for an old Ingress", recheck)
			}
			if tc.reason == "" {
				if len(got) != 0 {
					t.Fatalf("issues = %+v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Type != events.IssueIngressUnavailable || got[0].Reason != tc.reason || !strings.Contains(got[0].Message, tc.inMessage) {
				t.Fatalf("issues = %+v\nwant reason %s, message with %q", got, tc.reason, tc.inMessage)
			}
			// The trimmed objects the informers cache classify the same.
			trimmed, _ := ingressTransform(tc.ing)
			if again, _ := ClassifyIngress(trimmed.(*networkingv1.Ingress), services, tc.classes, fixtureNow, time.Minute); len(again) != 1 || again[0] != got[0] {
				t.Errorf("trimmed Ingress classifies as %+v", again)
			}
		})
	}
}

func TestYoungIngressWaitsForItsService(t *testing.T) {
	ing := testIngress("nginx", backend("api", 80))
	ing.CreationTimestamp = metav1.NewTime(fixtureNow.Add(-10 * time.Second))
	got, recheck := ClassifyIngress(ing, nil, IngressClasses{Known: true, Names: []string{"nginx"}}, fixtureNow, time.Minute)
	if len(got) != 0 || !recheck.Equal(ing.CreationTimestamp.Add(time.Minute)) {
		t.Errorf("young Ingress: %+v, recheck %v; want none until its grace ends", got, recheck)
	}
}

func TestIngressTransformKeepsOnlyWhatIsRead(t *testing.T) {
	ing := testIngress("nginx", backend("web", 80))
	ing.Annotations = map[string]string{"nginx.ingress.kubernetes.io/rewrite-target": "/", annotationIngressClass: "nginx"}
	ing.Spec.TLS = []networkingv1.IngressTLS{{SecretName: "tls"}}
	out, _ := ingressTransform(ing)
	got := out.(*networkingv1.Ingress)
	if got.ManagedFields != nil || len(got.Annotations) != 1 || got.Spec.TLS != nil || len(got.Spec.Rules[0].HTTP.Paths) != 1 {
		t.Errorf("trimmed = %+v", got)
	}
	class := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx",
		Annotations: map[string]string{annotationDefaultClass: "true", "other": "x"}}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}}
	co, _ := ingressTransform(class)
	// The controller names what should serve the class (ingresscontroller.go).
	if c := co.(*networkingv1.IngressClass); len(c.Annotations) != 1 || c.Spec.Controller != "k8s.io/ingress-nginx" {
		t.Errorf("trimmed class = %+v", c)
	}
}
