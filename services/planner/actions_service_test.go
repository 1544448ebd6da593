package planner

import (
	"context"
	"strings"
	"testing"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text/texttest"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
)

// The rule for a selector fix: exactly one workload with replicas whose
// pod labels carry every key of the selector, only values differing.
func TestSelectorFixIsProposedOnlyWhenOneWorkloadFits(t *testing.T) {
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "wbe", "tier": "front"}}}
	near := func(ref string, replicas int32, lbls map[string]string, differs ...string) nearWorkload {
		return nearWorkload{Ref: ref, Labels: lbls, Differs: differs, Replicas: replicas}
	}
	web := near("deployment/web", 2, map[string]string{"app": "web", "tier": "front"}, "app")
	for _, c := range []struct {
		name    string
		read    trafficRead
		want    string // the selector proposed, or "" for none
		whyNone string
	}{
		{"one workload, one value differs", trafficRead{Near: []nearWorkload{web}}, "app=web,tier=front", ""},
		{"both values differ", trafficRead{Near: []nearWorkload{near("statefulset/db", 1, map[string]string{"app": "db", "tier": "back"}, "app", "tier")}}, "app=db,tier=back", ""},
		{"a second workload fits too", trafficRead{Near: []nearWorkload{web, near("deployment/web-canary", 1, map[string]string{"app": "canary", "tier": "front"}, "app")}},
			"", "deployment/web and deployment/web-canary have pod labels on every key"},
		{"the only candidate lacks a key", trafficRead{Near: []nearWorkload{near("deployment/web", 2, map[string]string{"tier": "front"}, "app")}},
			"", "no workload with replicas has pod labels on every key"},
		{"the only candidate is scaled to zero", trafficRead{Near: []nearWorkload{near("deployment/web", 0, web.Labels, "app")}},
			"", "no workload with replicas"},
		{"a workload matches already", trafficRead{Near: []nearWorkload{web, near("deployment/old", 0, svc.Spec.Selector)}},
			"", "deployment/old already has pod labels matching the selector"},
		{"a candidate that lacks a key does not make it ambiguous", trafficRead{Near: []nearWorkload{web, near("deployment/api", 3, map[string]string{"tier": "front"}, "app")}},
			"app=web,tier=front", ""},
		{"the correction would select a stray pod", trafficRead{Near: []nearWorkload{web}, ProposedForeign: []string{"pod/stray"}},
			"", "would also select pod/stray"},
		{"the pods it would select could not be read", trafficRead{Near: []nearWorkload{web}, ProposedErr: "pods: forbidden"},
			"", "could not be read: pods: forbidden"},
		{"no workload at all", trafficRead{}, "", "not evident"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fix, why := selectorFix(svc, &c.read)
			got := ""
			if why == "" {
				got = labelsString(fix.Selector)
			}
			if got != c.want || (c.whyNone != "" && !strings.Contains(why, c.whyNone)) {
				t.Errorf("selector %q, why %q; want %q, why containing %q", got, why, c.want, c.whyNone)
			}
		})
	}
}

// The rule for a targetPort fix: exactly one wrong port, and one port of
// its protocol declared the same way by every selected pod.
func TestTargetPortFixIsProposedOnlyWhenThePortIsEvident(t *testing.T) {
	port := func(name string, n int32, target intstr.IntOrString) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: n, Protocol: corev1.ProtocolTCP, TargetPort: target}
	}
	pod := func(name string, ports ...corev1.ContainerPort) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Ports: ports}}}}
	}
	http := corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}
	unnamed := corev1.ContainerPort{ContainerPort: 8080, Protocol: corev1.ProtocolTCP}
	metrics := corev1.ContainerPort{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}
	dns := corev1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}
	for _, c := range []struct {
		name    string
		ports   []corev1.ServicePort
		pods    []corev1.Pod
		want    string // index:target, or ""
		whyNone string
	}{
		{"named target, one named port", []corev1.ServicePort{port("http", 80, intstr.FromString("web"))}, []corev1.Pod{pod("a", http), pod("b", http)}, "0:http", ""},
		{"numeric target stays numeric", []corev1.ServicePort{port("http", 80, intstr.FromInt32(9999))}, []corev1.Pod{pod("a", http)}, "0:8080", ""},
		{"named target, unnamed port: the number", []corev1.ServicePort{port("http", 80, intstr.FromString("web"))}, []corev1.Pod{pod("a", unnamed)}, "0:8080", ""},
		{"a UDP port beside does not count", []corev1.ServicePort{port("http", 80, intstr.FromString("web"))}, []corev1.Pod{pod("a", http, dns)}, "0:http", ""},
		{"second port wrong, first right", []corev1.ServicePort{port("http", 80, intstr.FromString("http")), port("admin", 81, intstr.FromString("adm"))},
			[]corev1.Pod{pod("a", http)}, "", "already targets the pods' only TCP port http=8080"},
		{"two TCP ports", []corev1.ServicePort{port("http", 80, intstr.FromString("web"))}, []corev1.Pod{pod("a", http, metrics)}, "", "declares 2 TCP container ports"},
		{"pods differ", []corev1.ServicePort{port("http", 80, intstr.FromString("web"))}, []corev1.Pod{pod("a", http), pod("b", metrics)}, "", "declare different TCP ports"},
		{"a pod without ports", []corev1.ServicePort{port("http", 80, intstr.FromString("web"))}, []corev1.Pod{pod("a", http), pod("b")}, "", "pod b declares 0 TCP"},
		{"two wrong ports", []corev1.ServicePort{port("http", 80, intstr.FromString("web")), port("https", 443, intstr.FromString("tls"))},
			[]corev1.Pod{pod("a", http)}, "", "2 ports of the Service target a port its pods do not declare"},
		{"no pod", []corev1.ServicePort{port("http", 80, intstr.FromString("web"))}, nil, "", "selects no pod"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fix, why := targetPortFix(&corev1.Service{Spec: corev1.ServiceSpec{Ports: c.ports}}, c.pods)
			got := ""
			if why == "" {
				got = strings.Join([]string{string(rune('0' + fix.Index)), fix.To.String()}, ":")
			}
			if got != c.want || (c.whyNone != "" && !strings.Contains(why, c.whyNone)) {
				t.Errorf("fix %q, why %q; want %q, why containing %q", got, why, c.want, c.whyNone)
			}
		})
	}
}

// The pods a corrected selector would select are read, and those the
// workload's own selector does not match are named.
func TestProposedSelectionNamesStrayPods(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "wbe"}}}
	replicas := int32(2)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps"}, Spec: appsv1.DeploymentSpec{Replicas: &replicas,
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "track": "stable"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "track": "stable"}}}}}
	pod := func(name string, lbls map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", Labels: lbls}}
	}
	kube := fake.NewClientset(svc, dep, pod("web-1", map[string]string{"app": "web", "track": "stable"}),
		pod("debug", map[string]string{"app": "web"}), pod("api-1", map[string]string{"app": "api"}))
	r := reader{kube: kube}
	in := planInput{Incident: events.Incident{Reason: trafficSelectorMatchesNothing}, Owner: &workload{Object: svc}}
	tr := r.traffic(context.Background(), in)
	if len(tr.Near) != 1 || tr.Near[0].Selector == nil || !tr.Near[0].Selector.Matches(labels.Set{"app": "web", "track": "stable"}) {
		t.Fatalf("near = %+v", tr.Near)
	}
	if len(tr.ProposedForeign) != 1 || tr.ProposedForeign[0] != "pod/debug" || tr.ProposedErr != "" {
		t.Errorf("proposed foreign %v, err %q; want [pod/debug]", tr.ProposedForeign, tr.ProposedErr)
	}
	if _, why := selectorFix(svc, tr); !strings.Contains(why, "would also select pod/debug") {
		t.Errorf("why = %q", why)
	}
}

// Selector values and port names are cluster text: a hostile one (what a
// fake or a compromised API could return) is never carried by a step,
// and the plan's titles and notes stay one line without control
// characters.
func TestServiceFixKeepsClusterTextAsData(t *testing.T) {
	cfg := testConfig(t)
	hostile := "web\x1b[2J\x1b]0;kaar: approved\x07" + texttest.Injection
	for _, c := range []struct {
		name    string
		reason  string
		edit    func(in *planInput)
		wantWhy string
	}{
		{"selector value", trafficSelectorMatchesNothing, func(in *planInput) {
			in.Traffic.Near[0].Labels = map[string]string{"app": hostile}
		}, "the selector is not one a step can carry"},
		{"port name", trafficTargetPortMismatch, func(in *planInput) {
			for i := range in.Traffic.Pods {
				in.Traffic.Pods[i].Spec.Containers[0].Ports[0].Name = hostile
			}
		}, "the targetPort is not one a step can carry"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := trafficInput(t, cfg, c.reason, "")
			c.edit(&in)
			out := finalize(draftPlan(in), acceptAll)
			p := assemblePlan("01900000-0000-7000-8000-000000000999", in.Now, in.Cfg, in, out)
			if err := p.Validate(); err != nil {
				t.Fatalf("plan invalid: %v", err)
			}
			if !p.DiagnosticOnly {
				t.Fatalf("a hostile value was proposed: %+v", p.Steps)
			}
			found := false
			for _, n := range p.Notes {
				found = found || strings.Contains(n, c.wantWhy)
				if strings.ContainsAny(n, "\x1b\x07\n") {
					t.Errorf("note carries control characters: %q", n)
				}
			}
			if !found {
				t.Errorf("notes %q lack %q", p.Notes, c.wantWhy)
			}
			for _, s := range p.Steps {
				if strings.ContainsAny(s.Title, "\x1b\x07\n") {
					t.Errorf("title carries control characters: %q", s.Title)
				}
			}
		})
	}
}
