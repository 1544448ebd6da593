package sandbox

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"text/template"

	"github.com/itchyny/gojq"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// stageDoc is the part of a kwok Stage the tests look at.
type stageDoc struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchExpressions []struct {
				Key      string   `json:"key"`
				Operator string   `json:"operator"`
				Values   []string `json:"values"`
				JQ       *struct {
					Key      string   `json:"key"`
					Operator string   `json:"operator"`
					Values   []string `json:"values"`
				} `json:"jq"`
			} `json:"matchExpressions"`
		} `json:"selector"`
		Next *struct {
			StatusTemplate string `json:"statusTemplate"`
		} `json:"next"`
		Steps []struct {
			Apply *struct {
				Template string `json:"template"`
			} `json:"apply"`
			Patch *struct {
				Template string `json:"template"`
			} `json:"patch"`
		} `json:"steps"`
	} `json:"spec"`
}

func renderedStages(t *testing.T) []stageDoc {
	t.Helper()
	b, err := RenderStages()
	if err != nil {
		t.Fatal(err)
	}
	var docs []stageDoc
	for _, part := range strings.Split(string(b), "\n---\n") {
		if strings.TrimSpace(stripComments(part)) == "" {
			continue
		}
		var d stageDoc // only the fields above are modelled
		if err := yaml.Unmarshal([]byte(part), &d); err != nil {
			t.Fatalf("stage document is not YAML: %v\n%s", err, part)
		}
		docs = append(docs, d)
	}
	return docs
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestRenderStagesIsValid(t *testing.T) {
	docs := renderedStages(t)
	want := []string{"node-initialize", "node-heartbeat-with-lease", "pod-ready", "pod-complete", "pod-delete",
		"kaar-sandbox-failed-mount", "kaar-sandbox-err-image-pull", "kaar-sandbox-image-pull-back-off", "kaar-sandbox-create-container-config-error",
		"kaar-sandbox-crash-loop-back-off", "kaar-sandbox-init-crash-loop-back-off", "kaar-sandbox-oom-killed", "kaar-sandbox-liveness-failure",
		"kaar-sandbox-readiness-failure", "kaar-sandbox-node-conditions", "kaar-sandbox-evicted"}
	var got []string
	for _, d := range docs {
		if d.Kind != "Stage" {
			t.Errorf("document %q has kind %q, want Stage", d.Metadata.Name, d.Kind)
		}
		got = append(got, d.Metadata.Name)
		for _, me := range d.Spec.Selector.MatchExpressions {
			key := me.Key
			if me.JQ != nil {
				key = me.JQ.Key
			}
			if _, err := compileJQ(key); err != nil {
				t.Errorf("stage %s: jq %q: %v", d.Metadata.Name, key, err)
			}
		}
		// kwok's templates must at least parse as Go templates (with
		// kwok's function names stubbed).
		var tmpls []string
		if d.Spec.Next != nil {
			tmpls = append(tmpls, d.Spec.Next.StatusTemplate)
		}
		for _, s := range d.Spec.Steps {
			if s.Apply != nil {
				tmpls = append(tmpls, s.Apply.Template)
			}
			if s.Patch != nil {
				tmpls = append(tmpls, s.Patch.Template)
			}
		}
		for _, tx := range tmpls {
			if _, err := template.New("x").Funcs(kwokFuncStubs).Parse(tx); err != nil {
				t.Errorf("stage %s: template does not parse: %v\n%s", d.Metadata.Name, err, tx)
			}
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("stages = %v\nwant %v", got, want)
	}
}

// kwokFuncStubs names the template functions kwok provides (sprig and its
// own), so that the templates can be parsed here.
var kwokFuncStubs = func() template.FuncMap {
	m := template.FuncMap{}
	for _, n := range []string{"Quote", "Now", "YAML", "Version", "NodeConditions", "NodeIP", "NodeName", "NodePort",
		"NodeIPWith", "NodeIPsWith", "PodIPWith", "PodIPsWith", "splitList", "contains", "regexMatch", "hasPrefix",
		"dict", "list", "set", "toString", "sha256sum", "trim", "atoi", "has", "append", "join"} {
		m[n] = func(...any) any { return nil }
	}
	return m
}()

func compileJQ(src string) (*gojq.Code, error) {
	q, err := gojq.Parse(src)
	if err != nil {
		return nil, err
	}
	return gojq.Compile(q)
}

// evalJQ evaluates a predicate the way kwok does: an error means no value.
func evalJQ(t *testing.T, expr string, pod *corev1.Pod) []any {
	t.Helper()
	code, err := compileJQ(expr)
	if err != nil {
		t.Fatalf("jq %q: %v", expr, err)
	}
	b, _ := json.Marshal(pod)
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var out []any
	it := code.Run(v)
	for {
		r, ok := it.Next()
		if !ok {
			break
		}
		if _, isErr := r.(error); isErr {
			return nil
		}
		out = append(out, r)
	}
	return out
}

func isTrue(out []any) bool {
	for _, o := range out {
		if b, ok := o.(bool); ok && b {
			return true
		}
	}
	return false
}

func podWith(mut func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
	}
	if mut != nil {
		mut(p)
	}
	return p
}

func annotate(k, v string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[k] = v
	}
}

func both(fs ...func(*corev1.Pod)) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for _, f := range fs {
			f(p)
		}
	}
}

func limit(mem string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(mem)}
	}
}

// initContainer appends an init container (a sidecar: restartPolicy
// Always).
func initContainer(name string, sidecar bool) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		c := corev1.Container{Name: name, Image: "busybox:1.37"}
		if sidecar {
			c.RestartPolicy = ptrTo(corev1.ContainerRestartPolicyAlways)
		}
		p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	}
}

func image(img string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Image = img }
}

func envFromConfigMap(name string, optional bool) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "k", Optional: &optional}}})
	}
}

func volume(src corev1.VolumeSource) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "v", VolumeSource: src})
	}
}

func ptrTo[T any](v T) *T { return &v }

func TestStagePredicates(t *testing.T) {
	tests := []struct {
		name string
		pod  *corev1.Pod
		want string // the predicate that must be true; all others false
	}{
		{"healthy pod", podWith(nil), ""},
		{"crash exit code 1", podWith(annotate(AnnotationCrashExitCode, "1")), "crash"},
		{"crash exit code 0", podWith(annotate(AnnotationCrashExitCode, "0")), "crash"},
		{"crash code not a number", podWith(annotate(AnnotationCrashExitCode, "boom")), ""},
		{"init exit code 1", podWith(both(annotate(AnnotationInitExitCode, "1"), initContainer("migrate", false))), "init-crash"},
		{"init exit code 1 after a sidecar", podWith(both(annotate(AnnotationInitExitCode, "1"), initContainer("proxy", true), initContainer("migrate", false))), "init-crash"},
		{"init exit code 0 is a success", podWith(both(annotate(AnnotationInitExitCode, "0"), initContainer("migrate", false))), ""},
		{"init exit code not a number", podWith(both(annotate(AnnotationInitExitCode, "x"), initContainer("migrate", false))), ""},
		{"init exit code without init container", podWith(annotate(AnnotationInitExitCode, "1")), ""},
		{"init exit code with a sidecar only", podWith(both(annotate(AnnotationInitExitCode, "1"), initContainer("proxy", true))), ""},
		{"usage above limit", podWith(both(annotate(AnnotationMemoryUsage, "200Mi"), limit("64Mi"))), "oom"},
		{"usage equal to limit", podWith(both(annotate(AnnotationMemoryUsage, "200Mi"), limit("200Mi"))), ""},
		{"usage below limit", podWith(both(annotate(AnnotationMemoryUsage, "200Mi"), limit("512Mi"))), ""},
		{"usage above limit, Gi vs Mi", podWith(both(annotate(AnnotationMemoryUsage, "1Gi"), limit("1000Mi"))), "oom"},
		{"usage above limit, decimal units", podWith(both(annotate(AnnotationMemoryUsage, "300M"), limit("256Mi"))), "oom"},
		{"usage above limit, K", podWith(both(annotate(AnnotationMemoryUsage, "2000K"), limit("1M"))), "oom"},
		{"usage without limit", podWith(annotate(AnnotationMemoryUsage, "200Mi")), ""},
		{"usage unparsable", podWith(both(annotate(AnnotationMemoryUsage, "lots"), limit("64Mi"))), ""},
		{"nonexistent tag", podWith(image("nginx:1.27-nonexistent")), "image-pull"},
		{"nonexistent tag with registry port", podWith(image("localhost:5000/team/app:v2-nonexistent")), "image-pull"},
		{"nonexistent only in repository", podWith(image("nonexistent/app:1.0")), ""},
		{"nonexistent only in host", podWith(image("nonexistent.example:5000/app:1.0")), ""},
		{"private registry without secret", podWith(image(PrivateRegistry + "/team/app:1.0")), "image-pull"},
		{"private registry with secret", podWith(both(image(PrivateRegistry+"/team/app:1.0"), func(p *corev1.Pod) {
			p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
		})), ""},
		{"missing configmap", podWith(envFromConfigMap("missing-config", false)), "config-missing"},
		{"missing configmap optional", podWith(envFromConfigMap("missing-config", true)), ""},
		{"existing configmap", podWith(envFromConfigMap("app-config", false)), ""},
		{"missing secret in envFrom", podWith(func(p *corev1.Pod) {
			p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "missing-creds"}}}}
		}), "config-missing"},
		{"configmap volume missing", podWith(volume(corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "missing-cfg"}}})), "volume-missing"},
		{"configmap volume missing but optional", podWith(volume(corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "missing-cfg"}, Optional: ptrTo(true)}})), ""},
		{"configmap volume present", podWith(volume(corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "app-cfg"}}})), ""},
		{"secret volume missing", podWith(volume(corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "missing-tls"}})), "volume-missing"},
		{"secret volume missing but optional", podWith(volume(corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "missing-tls", Optional: ptrTo(true)}})), ""},
		{"projected secret missing", podWith(volume(corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "missing-token"}}}}}})), "volume-missing"},
		{"projected sources present", podWith(volume(corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}}}}})), ""},
		{"a claim volume is the scheduler's business", podWith(volume(corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
			ClaimName: "missing-data"}})), ""},
		{"evict memory", podWith(annotate(AnnotationEvict, "memory")), "evict"},
		{"evict other resource", podWith(annotate(AnnotationEvict, "disk")), ""},
		{"readiness fails", podWith(annotate(AnnotationReadiness, "fail")), "readiness"},
		{"readiness other value", podWith(annotate(AnnotationReadiness, "pass")), ""},
		{"liveness fails", podWith(annotate(AnnotationLiveness, "fail")), "liveness"},
		{"liveness other value", podWith(annotate(AnnotationLiveness, "yes")), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range predicates {
				got := isTrue(evalJQ(t, p.Expr, tt.pod))
				if got != (p.Name == tt.want) {
					t.Errorf("predicate %s = %v, want %v", p.Name, got, p.Name == tt.want)
				}
			}
		})
	}
}

// The narrowed stock stages must exclude exactly the failing pods: the
// pod-ready stage carries one NotIn expression per predicate.
func TestPodReadyExcludesEveryFailure(t *testing.T) {
	for _, d := range renderedStages(t) {
		if d.Metadata.Name != "pod-ready" && d.Metadata.Name != "pod-complete" {
			continue
		}
		var keys bytes.Buffer
		for _, me := range d.Spec.Selector.MatchExpressions {
			keys.WriteString(me.Key + "\n")
		}
		for _, p := range predicates {
			if !strings.Contains(keys.String(), p.Expr) {
				t.Errorf("%s does not exclude %s pods", d.Metadata.Name, p.Name)
			}
		}
	}
}

func evalJQNode(t *testing.T, name string, node *corev1.Node) bool {
	t.Helper()
	expr, err := predicateExpr(name)
	if err != nil {
		t.Fatal(err)
	}
	code, err := compileJQ(expr)
	if err != nil {
		t.Fatalf("jq %q: %v", expr, err)
	}
	b, _ := json.Marshal(node)
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	r, ok := code.Run(v).Next()
	if _, isErr := r.(error); isErr || !ok {
		return false
	}
	got, _ := r.(bool)
	return got
}

func TestNodePredicates(t *testing.T) {
	conds := func(ready, mem, disk, pid corev1.ConditionStatus) []corev1.NodeCondition {
		return []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}, {Type: corev1.NodeMemoryPressure, Status: mem},
			{Type: corev1.NodeDiskPressure, Status: disk}, {Type: corev1.NodePIDPressure, Status: pid},
			{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse}}
	}
	const T, F, U = corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown
	tests := []struct {
		name      string
		ann       map[string]string
		conds     []corev1.NodeCondition
		held      bool // node-condition: kwok's stock stages must skip it
		wantedNow bool // node-conditions-wanted
	}{
		{"healthy", nil, conds(T, F, F, F), false, true},
		{"new node", nil, nil, false, false},
		{"not ready asked", map[string]string{AnnotationNodeReady: "False"}, conds(T, F, F, F), true, false},
		{"not ready held", map[string]string{AnnotationNodeReady: "False"}, conds(F, F, F, F), true, true},
		{"unknown held", map[string]string{AnnotationNodeReady: "Unknown"}, conds(U, U, U, U), true, true},
		{"unknown half done", map[string]string{AnnotationNodeReady: "Unknown"}, conds(U, F, F, F), true, false},
		{"ready True is no hold", map[string]string{AnnotationNodeReady: "True"}, conds(T, F, F, F), false, true},
		{"memory and pid pressure", map[string]string{AnnotationNodePressure: "memory,pid"}, conds(T, T, F, T), true, true},
		{"pressure asked", map[string]string{AnnotationNodePressure: "disk"}, conds(T, F, F, F), true, false},
		{"pressure not a resource", map[string]string{AnnotationNodePressure: "cpu"}, conds(T, F, F, F), false, true},
		{"annotation removed, pressure left", nil, conds(T, T, F, F), true, false},
		{"annotation removed, not ready and pressure left", nil, conds(U, U, U, U), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: tt.ann}, Status: corev1.NodeStatus{Conditions: tt.conds}}
			if got := evalJQNode(t, "node-condition", n); got != tt.held {
				t.Errorf("node-condition = %v, want %v", got, tt.held)
			}
			if got := evalJQNode(t, "node-conditions-wanted", n); got != tt.wantedNow {
				t.Errorf("node-conditions-wanted = %v, want %v", got, tt.wantedNow)
			}
		})
	}
}
