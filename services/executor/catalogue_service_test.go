package executor

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The Service steps of the planner's goldens, tampered with as a writer
// of the plans bucket could: each variant is refused before the claim,
// naming the step and what is wrong.
func TestCatalogueRefusesTamperedServicePlans(t *testing.T) {
	const sel, port = "service-selector-fix", "service-target-port-named-fix"
	setOps := func(undo bool, o []map[string]any) func(t *testing.T, p *events.Plan) {
		return func(t *testing.T, p *events.Plan) {
			st := mutating(t, p)
			if undo {
				st.UndoPatch = enc(t, o)
			} else {
				st.Patch = enc(t, o)
			}
		}
	}
	rv := map[string]any{"op": "test", "path": "/metadata/resourceVersion", "value": "501"}
	testSel := func(v map[string]any) map[string]any {
		return map[string]any{"op": "test", "path": "/spec/selector", "value": v}
	}
	replSel := func(v map[string]any) map[string]any {
		return map[string]any{"op": "replace", "path": "/spec/selector", "value": v}
	}
	wbe, web := map[string]any{"app": "wbe"}, map[string]any{"app": "web"}
	tests := []struct {
		name   string
		plan   string
		cfg    func(*catalogueConfig)
		edit   func(t *testing.T, p *events.Plan)
		want   []string
		reason events.RefusalReason
	}{
		{name: "selector: no resourceVersion guard", plan: sel, edit: setOps(false, []map[string]any{testSel(wbe), replSel(web)}),
			want: []string{"step 0 (set_service_selector)", `first operation must be {"op":"test","path":"/metadata/resourceVersion","value":"501"}`}},
		{name: "selector: guard of another resourceVersion", plan: sel,
			edit: setOps(false, []map[string]any{{"op": "test", "path": "/metadata/resourceVersion", "value": "400"}, testSel(wbe), replSel(web)}),
			want: []string{"(target_resource_version)", "not test /metadata/resourceVersion"}},
		{name: "selector: replaced without testing the current one", plan: sel, edit: setOps(false, []map[string]any{rv, replSel(web)}),
			want: []string{"not preceded by a test of /spec/selector"}},
		{name: "selector: tested against another value", plan: sel, edit: setOps(false, []map[string]any{rv, testSel(web), replSel(web)}),
			want: []string{"not preceded by a test of /spec/selector"}},
		{name: "selector: value other than the params'", plan: sel,
			edit: setOps(false, []map[string]any{rv, testSel(wbe), replSel(map[string]any{"app": "payments"})}),
			want: []string{`value {"app":"payments"} is not the params'`}},
		{name: "selector: a key added (params and patch agree)", plan: sel,
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Params[events.ParamSelector] = "app=web,tier=admin"
				st.Patch = enc(t, []map[string]any{rv, testSel(wbe), replSel(map[string]any{"app": "web", "tier": "admin"})})
			},
			want: []string{"has other keys than params.from", "changes values only"}},
		{name: "selector: another field written too", plan: sel,
			edit: setOps(false, []map[string]any{rv, testSel(wbe), replSel(web), {"op": "replace", "path": "/spec/type", "value": "NodePort"}}),
			want: []string{"replace /spec/type", "replaces /spec/selector only"}},
		{name: "selector: written twice", plan: sel,
			edit: setOps(false, []map[string]any{rv, testSel(wbe), replSel(web), replSel(web)}),
			want: []string{"replaces /spec/selector only, once"}},
		{name: "selector: removed instead of replaced", plan: sel,
			edit: setOps(false, []map[string]any{rv, testSel(wbe), {"op": "remove", "path": "/spec/selector"}}),
			want: []string{"remove /spec/selector"}},
		{name: "selector: undo patch without its guard", plan: sel, edit: setOps(true, []map[string]any{replSel(wbe)}),
			want: []string{"undo_patch: first operation must test /spec/selector"}},
		{name: "selector: undo patch puts back something else", plan: sel,
			edit: setOps(true, []map[string]any{testSel(web), replSel(map[string]any{"app": "admin"})}),
			want: []string{"undo_patch", "is not the params'"}},
		{name: "selector: no undo patch", plan: sel, edit: func(t *testing.T, p *events.Plan) { mutating(t, p).UndoPatch = nil },
			want: []string{"undo_patch: required"}},
		{name: "selector: a merge patch", plan: sel,
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.PatchType, st.Patch, st.UndoPatch = events.PatchMerge, json.RawMessage(`{"spec":{"selector":{"app":"web"}}}`), nil
			},
			want: []string{`patch_type "merge"`}},
		{name: "selector: on a Deployment", plan: "deployment-set-image",
			edit: func(t *testing.T, p *events.Plan) {
				st := mutating(t, p)
				st.Action, st.Params = events.ActionSetServiceSelector, map[string]string{events.ParamSelector: "app=web", events.ParamFrom: "app=wbe"}
			},
			want: []string{"set_service_selector is not planned for a Deployment"}},
		{name: "selector: step on another Service", plan: sel, edit: func(t *testing.T, p *events.Plan) { mutating(t, p).Target.Name = "admin" },
			want: []string{"Service/apps/admin is not the plan's target Service/apps/web"}},
		{name: "selector: hostile param", plan: sel,
			edit: func(t *testing.T, p *events.Plan) {
				mutating(t, p).Params[events.ParamSelector] = "app=web\x1b]0;pwned\x07"
			},
			want: []string{"params.selector"}},
		{name: "selector: protected namespace", plan: sel, reason: events.RefusalNotApproved,
			cfg:  func(c *catalogueConfig) { c.ProtectedNamespaces = append(c.ProtectedNamespaces, "apps") },
			want: []string{"step 0 (set_service_selector)", "changes protected namespace apps"}},

		{name: "targetPort: port number not tested", plan: port,
			edit: setOps(false, []map[string]any{rv, {"op": "test", "path": "/spec/ports/0/targetPort", "value": "web"},
				{"op": "replace", "path": "/spec/ports/0/targetPort", "value": "http"}}),
			want: []string{"not preceded by a test of /spec/ports/0/targetPort", "and of /spec/ports/0/port = 80"}},
		{name: "targetPort: tests one port, writes another", plan: port,
			edit: setOps(false, []map[string]any{rv, {"op": "test", "path": "/spec/ports/0/port", "value": 80},
				{"op": "test", "path": "/spec/ports/0/targetPort", "value": "web"},
				{"op": "replace", "path": "/spec/ports/1/targetPort", "value": "http"}}),
			want: []string{"replace /spec/ports/1/targetPort", "replaces /spec/ports/0/targetPort only"}},
		{name: "targetPort: the port number written", plan: port,
			edit: setOps(false, []map[string]any{rv, {"op": "test", "path": "/spec/ports/0/port", "value": 80},
				{"op": "test", "path": "/spec/ports/0/targetPort", "value": "web"},
				{"op": "replace", "path": "/spec/ports/0/port", "value": 8080}}),
			want: []string{"replace /spec/ports/0/port"}},
		{name: "targetPort: a number where the params say a name", plan: port,
			edit: setOps(false, []map[string]any{rv, {"op": "test", "path": "/spec/ports/0/port", "value": 80},
				{"op": "test", "path": "/spec/ports/0/targetPort", "value": "web"},
				{"op": "replace", "path": "/spec/ports/0/targetPort", "value": 8080}}),
			want: []string{`value 8080 is not the params' "http"`}},
		{name: "targetPort: params out of range", plan: port,
			edit: func(t *testing.T, p *events.Plan) { mutating(t, p).Params[events.ParamTargetPort] = "70000" },
			want: []string{"params.target_port", "1 to 65535"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := plannerPlan(t, tt.plan)
			cfg := catalogueTestConfig
			cfg.ProtectedNamespaces = slices.Clone(cfg.ProtectedNamespaces)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			if tt.edit != nil {
				tt.edit(t, &p)
			}
			p.Seal()
			r := validatePlanSteps(p, cfg)
			if r == nil {
				t.Fatal("accepted")
			}
			reason := cmpOr(tt.reason, events.RefusalInvalidStep)
			if r.Reason != reason {
				t.Errorf("reason %s, want %s (%s)", r.Reason, reason, r.Message)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.Message, w) {
					t.Errorf("message %q lacks %q", r.Message, w)
				}
			}
		})
	}
}

func cmpOr(a, b events.RefusalReason) events.RefusalReason {
	if a != "" {
		return a
	}
	return b
}

// At the moment of the API call a Service patch must start with one of
// its guards, and nothing else passes for one.
func TestRequireGuardOfServicePatches(t *testing.T) {
	for _, c := range []struct {
		patch string
		kind  string
		ok    bool
	}{
		{`[{"op":"test","path":"/metadata/resourceVersion","value":"5"},{"op":"replace","path":"/spec/selector","value":{"a":"b"}}]`, kindService, true},
		{`[{"op":"test","path":"/spec/selector","value":{"a":"b"}},{"op":"replace","path":"/spec/selector","value":{"a":"c"}}]`, kindService, true},
		{`[{"op":"test","path":"/spec/ports/2/targetPort","value":8080},{"op":"replace","path":"/spec/ports/2/targetPort","value":80}]`, kindService, true},
		{`[{"op":"test","path":"/spec/ports/0/port","value":80},{"op":"replace","path":"/spec/ports/0/targetPort","value":80}]`, kindService, false},
		{`[{"op":"replace","path":"/spec/selector","value":{"a":"c"}}]`, kindService, false},
		{`[{"op":"test","path":"/spec/type","value":"ClusterIP"}]`, kindService, false},
		// A Deployment's patch is not guarded by a Service field test.
		{`[{"op":"test","path":"/spec/selector","value":{"a":"b"}},{"op":"replace","path":"/spec/replicas","value":0}]`, kindDeployment, false},
	} {
		if err := requireGuard([]byte(c.patch), c.kind); (err == nil) != c.ok {
			t.Errorf("%s %s: err %v, want ok=%t", c.kind, c.patch, err, c.ok)
		}
	}
}

func TestWritesAsTests(t *testing.T) {
	got, err := writesAsTests([]byte(`[{"op":"test","path":"/metadata/resourceVersion","value":"5"},{"op":"test","path":"/spec/selector","value":{"a":"b"}},{"op":"replace","path":"/spec/selector","value":{"a":"c"}}]`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"op":"test","path":"/spec/selector","value":{"a":"c"}}]`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := writesAsTests([]byte(`[{"op":"test","path":"/spec/selector","value":{}}]`)); err == nil {
		t.Error("a patch that writes nothing has no tests of its writes")
	}
}

func TestServiceHealth(t *testing.T) {
	ready, notReady := true, false
	svc := func(target intstr.IntOrString) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: target}}}}
	}
	pod := func(name string, ports ...corev1.ContainerPort) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}},
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Ports: ports}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	}
	slice := func(r ...*bool) []discoveryv1.EndpointSlice {
		s := discoveryv1.EndpointSlice{}
		for _, x := range r {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: x}})
		}
		return []discoveryv1.EndpointSlice{s}
	}
	http := corev1.ContainerPort{Name: "http", ContainerPort: 8080}
	stray := pod("stray", http)
	stray.Labels = map[string]string{"app": "admin"}
	for _, c := range []struct {
		name    string
		svc     *corev1.Service
		slices  []discoveryv1.EndpointSlice
		pods    []corev1.Pod
		healthy bool
		msg     string
	}{
		{"named target, ready endpoint", svc(intstr.FromString("http")), slice(&ready), []corev1.Pod{pod("a", http)}, true, "healthy"},
		{"ready condition unknown counts as ready", svc(intstr.FromInt32(8080)), slice(nil), []corev1.Pod{pod("a", http)}, true, "healthy"},
		{"no ready endpoint", svc(intstr.FromString("http")), slice(&notReady), []corev1.Pod{pod("a", http)}, false, "no ready endpoint"},
		{"no slice", svc(intstr.FromString("http")), nil, []corev1.Pod{pod("a", http)}, false, "no ready endpoint"},
		{"numeric target still wrong (endpoints ready all the same)", svc(intstr.FromInt32(9090)), slice(&ready), []corev1.Pod{pod("a", http)}, false, "port 80 targets 9090, which no selected pod declares"},
		{"numeric target, pods declare no port", svc(intstr.FromInt32(9090)), slice(&ready), []corev1.Pod{pod("a")}, true, "healthy"},
		{"named target still wrong", svc(intstr.FromString("web")), slice(&ready), []corev1.Pod{pod("a", http)}, false, "targets web"},
		{"selector selects no pod", svc(intstr.FromString("http")), slice(&ready), []corev1.Pod{stray}, false, "selects no pod"},
	} {
		h := ServiceHealth(c.svc, c.slices, c.pods)
		if h.Healthy != c.healthy || !strings.Contains(h.Message, c.msg) {
			t.Errorf("%s: healthy %t %q, want %t %q", c.name, h.Healthy, h.Message, c.healthy, c.msg)
		}
	}
}
