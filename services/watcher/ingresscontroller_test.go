package watcher

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func withAddress(ing *networkingv1.Ingress, ip, hostname string) *networkingv1.Ingress {
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: ip, Hostname: hostname}}
	return ing
}

func TestClassifyIngressController(t *testing.T) {
	nginx := IngressClassState{Name: "nginx", Controller: "k8s.io/ingress-nginx"}
	served := nginx
	served.Addressed = true
	deleting := testIngress("nginx", backend("web", 80))
	deleting.DeletionTimestamp = &metav1.Time{Time: fixtureNow}
	for name, tc := range map[string]struct {
		ing       *networkingv1.Ingress
		class     IngressClassState
		want      bool
		inMessage string
	}{
		"no controller": {testIngress("nginx", backend("web", 80)), nginx, true,
			`ingress shop: IngressClass "nginx" (spec.controller k8s.io/ingress-nginx) exists, but no Ingress of that class has an address (status.loadBalancer) and this one has had none for 1h0m0s, so its controller does not seem to run`},
		"class without controller": {testIngress("nginx", backend("web", 80)), IngressClassState{Name: "nginx"}, true, "(spec.controller none)"},
		// The controller serves the class's other Ingresses: this one's
		// own events say why not, no class-wide blame.
		"another Ingress of the class has an address": {testIngress("nginx", backend("web", 80)), served, false, ""},
		"it has an IP":       {withAddress(testIngress("nginx", backend("web", 80)), "203.0.113.10", ""), nginx, false, ""},
		"it has a hostname":  {withAddress(testIngress("nginx", backend("web", 80)), "", "lb.example.com"), nginx, false, ""},
		"an empty address":   {withAddress(testIngress("nginx", backend("web", 80)), "", ""), nginx, true, "has had none"},
		"class not resolved": {testIngress("nginx", backend("web", 80)), IngressClassState{}, false, ""},
		"being deleted":      {deleting, nginx, false, ""},
	} {
		t.Run(name, func(t *testing.T) {
			got, recheck := ClassifyIngressController(tc.ing, tc.class, fixtureNow, 15*time.Minute)
			if !recheck.IsZero() {
				t.Errorf("recheck %v for an Ingress past its grace", recheck)
			}
			if !tc.want {
				if len(got) != 0 {
					t.Errorf("issues = %+v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].Type != events.IssueIngressUnavailable || got[0].Reason != reasonIngressNoController ||
				!strings.Contains(got[0].Message, tc.inMessage) {
				t.Fatalf("issues = %+v\nwant no_controller, message with %q", got, tc.inMessage)
			}
			// The trimmed object the informer caches classifies the same.
			trimmed, _ := ingressTransform(tc.ing)
			if again, _ := ClassifyIngressController(trimmed.(*networkingv1.Ingress), tc.class, fixtureNow, 15*time.Minute); len(again) != 1 || again[0] != got[0] {
				t.Errorf("trimmed Ingress classifies as %+v", again)
			}
		})
	}
}

func TestNewIngressWaitsForItsControllerWithinTheGrace(t *testing.T) {
	ing := testIngress("nginx", backend("web", 80))
	ing.CreationTimestamp = metav1.NewTime(fixtureNow.Add(-time.Minute))
	got, recheck := ClassifyIngressController(ing, IngressClassState{Name: "nginx"}, fixtureNow, 15*time.Minute)
	if len(got) != 0 || !recheck.Equal(ing.CreationTimestamp.Add(15*time.Minute)) {
		t.Errorf("new Ingress: %+v, recheck %v; want none until its grace ends", got, recheck)
	}
}

func TestIngressTransformKeepsOneAddress(t *testing.T) {
	ing := testIngress("nginx", backend("web", 80))
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{}, {IP: "203.0.113.10",
		Ports: []networkingv1.IngressPortStatus{{Port: 80}}}, {Hostname: "lb.example.com"}}
	out, _ := ingressTransform(ing)
	if got := out.(*networkingv1.Ingress).Status.LoadBalancer.Ingress; len(got) != 1 || got[0].IP != "203.0.113.10" || got[0].Ports != nil {
		t.Errorf("trimmed addresses = %+v, want the first non-empty one alone", got)
	}
}

// ingressClassState resolves the class serving an Ingress (its own, or
// the default for one without) and whether any Ingress of it, in any
// namespace the watcher sees, has an address.
func TestIngressClassStateLooksAtTheWholeClass(t *testing.T) {
	iw := newIngressWatch(fake.NewClientset(), "", 0)
	if err := iw.ingresses.AddIndexers(cache.Indexers{indexIngressClass: indexByIngressClass}); err != nil {
		t.Fatal(err)
	}
	s := &Service{ingress: iw}
	add := func(name, ns, class string, addressed bool) *networkingv1.Ingress {
		ing := testIngress(class, backend("web", 80))
		ing.Name, ing.Namespace = name, ns
		if addressed {
			withAddress(ing, "203.0.113.10", "")
		}
		if err := iw.ingresses.GetIndexer().Add(ing); err != nil {
			t.Fatal(err)
		}
		return ing
	}
	classes := IngressClasses{Known: true, Names: []string{"nginx", "internal"}, Default: true, DefaultName: "nginx",
		Controllers: map[string]string{"nginx": "k8s.io/ingress-nginx", "internal": "example.com/internal"}}
	shop := add("shop", "a", "internal", false)
	add("api", "b", "internal", false)
	noClass := add("plain", "a", "", false)
	legacy := add("old", "a", "", false)
	legacy.Annotations = map[string]string{annotationIngressClass: "nginx"}
	missing := add("lost", "a", "gone", false)

	if got := s.ingressClassState(shop, classes); got != (IngressClassState{Name: "internal", Controller: "example.com/internal"}) {
		t.Errorf("internal, nothing addressed: %+v", got)
	}
	if got := s.ingressClassState(noClass, classes); got.Name != "nginx" || got.Addressed {
		t.Errorf("without class: %+v, want the default nginx, not addressed", got)
	}
	if got := s.ingressClassState(legacy, classes); got.Name != "" {
		t.Errorf("legacy annotation: %+v, want not judged", got)
	}
	if got := s.ingressClassState(missing, classes); got.Name != "" {
		t.Errorf("missing class: %+v, want not judged (ingress_class_not_found says it)", got)
	}
	if got := s.ingressClassState(shop, IngressClasses{}); got.Name != "" {
		t.Errorf("classes not readable: %+v, want not judged", got)
	}
	add("web", "c", "internal", true) // another namespace, served
	if got := s.ingressClassState(shop, classes); !got.Addressed {
		t.Errorf("internal with a served Ingress: %+v, want addressed", got)
	}
	add("served", "c", "nginx", true) // the default class serves the Ingresses without class
	if got := s.ingressClassState(noClass, classes); !got.Addressed {
		t.Errorf("without class, the default class served: %+v, want addressed", got)
	}
}
