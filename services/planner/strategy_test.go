package planner

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// mutatingStep returns the plan's mutating step, failing if there is not
// exactly one.
func mutatingStep(t *testing.T, out outcome) events.Step {
	t.Helper()
	var found []events.Step
	for _, s := range out.Steps {
		if s.Mutating {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly 1 mutating step, got %d: %+v", len(found), out.Steps)
	}
	return found[0]
}

func actions(out outcome) []events.ActionType {
	var a []events.ActionType
	for _, s := range out.Steps {
		a = append(a, s.Action)
	}
	return a
}

func hasNote(out outcome, substr string) bool {
	return slices.ContainsFunc(out.Notes, func(n string) bool { return strings.Contains(n, substr) })
}

// checkGuard checks the invariant of every mutating patch: its first
// operation tests the owner's generation.
func checkGuard(t *testing.T, s events.Step, gen int64) {
	t.Helper()
	if s.PatchType != events.PatchJSON {
		t.Fatalf("patch type %q, want json", s.PatchType)
	}
	ops := decodeOps(t, s.Patch)
	if ops[0]["op"] != "test" || ops[0]["path"] != "/metadata/generation" || ops[0]["value"] != float64(gen) {
		t.Fatalf("first op %v, want test /metadata/generation %d", ops[0], gen)
	}
	if len(s.UndoPatch) > 0 {
		undo := decodeOps(t, s.UndoPatch)
		if undo[0]["op"] != "test" || undo[0]["value"] != float64(gen+1) {
			t.Fatalf("undo first op %v, want test generation %d", undo[0], gen+1)
		}
	}
}

func strategies(typ events.IssueType, names ...string) map[events.IssueType][]Strategy {
	var s []Strategy
	for _, n := range names {
		s = append(s, Strategy{Name: n})
	}
	return map[events.IssueType][]Strategy{typ: s}
}

// setMemory sets the first container's memory limit (and request).
func setMemory(in *planInput, limit, request string) {
	c := &in.Owner.Spec.Containers[0]
	c.Resources.Limits[corev1.ResourceMemory] = resource.MustParse(limit)
	if request == "" {
		delete(c.Resources.Requests, corev1.ResourceMemory)
	} else {
		c.Resources.Requests[corev1.ResourceMemory] = resource.MustParse(request)
	}
}

func mustJSON(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

func TestRollbackTarget(t *testing.T) {
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", UID: "dep-uid", Annotations: map[string]string{annotationRevision: "3"}}}
	rs := func(rev string, ready int32, owner types.UID) appsv1.ReplicaSet {
		return appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "web-" + rev, Annotations: map[string]string{annotationRevision: rev},
				OwnerReferences: []metav1.OwnerReference{{Kind: KindDeployment, Name: "web", UID: owner, Controller: new(true)}}},
			Status: appsv1.ReplicaSetStatus{ReadyReplicas: ready},
		}
	}
	tests := []struct {
		name        string
		rss         []appsv1.ReplicaSet
		wantRev     int64
		wantHealthy bool
		wantOK      bool
	}{
		{"newest older ready revision", []appsv1.ReplicaSet{rs("1", 2, "dep-uid"), rs("2", 1, "dep-uid"), rs("3", 0, "dep-uid")}, 2, true, true},
		{"skips an older revision without ready pods", []appsv1.ReplicaSet{rs("1", 2, "dep-uid"), rs("2", 0, "dep-uid"), rs("3", 0, "dep-uid")}, 1, true, true},
		{"previous revision when none is ready", []appsv1.ReplicaSet{rs("1", 0, "dep-uid"), rs("2", 0, "dep-uid"), rs("3", 0, "dep-uid")}, 2, false, true},
		{"no older revision", []appsv1.ReplicaSet{rs("3", 0, "dep-uid")}, 0, false, false},
		{"ignores ReplicaSets of another Deployment", []appsv1.ReplicaSet{rs("2", 3, "other-uid"), rs("3", 0, "dep-uid")}, 0, false, false},
		// The Deployment's annotation (3) lags the ReplicaSet the
		// controller just created (4): 4 is current, 3 the previous.
		{"the newest ReplicaSet is current when the annotation lags", []appsv1.ReplicaSet{rs("4", 0, "dep-uid"), rs("3", 0, "dep-uid"), rs("1", 0, "dep-uid")}, 3, false, true},
		{"the newest ReplicaSet is current, its ready predecessor the target", []appsv1.ReplicaSet{rs("4", 0, "dep-uid"), rs("3", 2, "dep-uid")}, 3, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			revs, current := rolloutHistory(dep, tt.rss)
			wantCurrent := int64(3)
			if len(revs) > 0 && revs[0].Number > 3 {
				wantCurrent = revs[0].Number
			}
			if current != wantCurrent {
				t.Fatalf("current %d, want %d", current, wantCurrent)
			}
			target, healthy, ok := rollbackTarget(revs, current)
			if ok != tt.wantOK || target.Number != tt.wantRev || healthy != tt.wantHealthy {
				t.Errorf("got rev %d healthy %t ok %t, want %d %t %t", target.Number, healthy, ok, tt.wantRev, tt.wantHealthy, tt.wantOK)
			}
		})
	}
}

// A pod without a controller is never deleted: neither to restart it nor
// by delete_pod, since nothing would bring it back.
func TestBarePodIsNeverDeleted(t *testing.T) {
	cfg := testConfig(t)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "debug", Namespace: "ops", UID: "pod-uid", ResourceVersion: "42"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sh", Image: "busybox"}}}}
	w, err := workloadOf(pod)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"restart_pod", "rollout_restart", "delete_pod"} {
		cfg.Strategies = strategies(events.IssueCrashLoopBackOff, "check_logs", name)
		inc := events.Incident{Namespace: "ops", Owner: w.Ref, Container: "sh", Type: events.IssueCrashLoopBackOff, Pods: []string{"debug"}}
		out := finalize(draftPlan(planInput{Cfg: cfg, Incident: inc, Owner: w, Pod: pod, Pods: []corev1.Pod{*pod}}), acceptAll)
		if !out.DiagnosticOnly || !hasNote(out, "pod debug has no controller") {
			t.Errorf("%s: diagnostic %t notes %v", name, out.DiagnosticOnly, out.Notes)
		}
	}
}

// delete_pod (and restart_pod of a controller without a rollout restart)
// deletes the incident's pods the owner controls, one step per pod with
// its UID, at most max_pods.
func TestDeletePodsOfAController(t *testing.T) {
	cfg := testConfig(t)
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "migrate", Namespace: "apps", UID: "job-uid", Generation: 1, ResourceVersion: "9"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "migrate:1"}}}}}}
	w, err := workloadOf(job)
	if err != nil {
		t.Fatal(err)
	}
	pod := func(name string, controller types.UID) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps", UID: types.UID(name + "-uid"),
			OwnerReferences: []metav1.OwnerReference{{Kind: KindJob, Name: "migrate", UID: controller, Controller: new(true)}}}}
	}
	pods := []corev1.Pod{pod("migrate-a", "job-uid"), pod("migrate-b", "job-uid"), pod("stranger", "other-uid")}
	inc := events.Incident{Namespace: "apps", Owner: w.Ref, Container: "app", Type: events.IssueCrashLoopBackOff, PodCount: 2,
		Pods: []string{"migrate-a", "migrate-b", "stranger"}}
	for _, name := range []string{"delete_pod", "restart_pod"} {
		c := cfg
		c.Strategies = strategies(events.IssueCrashLoopBackOff, name)
		out := finalize(draftPlan(planInput{Cfg: c, Incident: inc, Owner: w, Pod: &pods[0], Pods: pods}), acceptAll)
		if got := actions(out); !slices.Equal(got, []events.ActionType{events.ActionDeletePod, events.ActionDeletePod}) {
			t.Fatalf("%s: actions %v notes %v", name, got, out.Notes)
		}
		for i, s := range out.Steps {
			if s.Target.Kind != KindPod || s.Target.Name != pods[i].Name || s.Target.UID != string(pods[i].UID) ||
				s.Params["uid"] != string(pods[i].UID) || s.Kubectl != "kubectl -n apps delete pod "+pods[i].Name || s.DryRun == nil {
				t.Errorf("%s: step %d %s", name, i, mustJSON(s))
			}
		}
		p := assemblePlan(uuid.Must(uuid.NewV7()).String(), time.Now(), c, planInput{Cfg: c, Incident: inc, Owner: w}, out)
		if err := p.Validate(); err != nil {
			t.Errorf("%s: plan: %v", name, err)
		}
	}
	c := cfg
	c.MaxPods = 1
	c.Strategies = strategies(events.IssueCrashLoopBackOff, "delete_pod")
	out := finalize(draftPlan(planInput{Cfg: c, Incident: inc, Owner: w, Pods: pods}), acceptAll)
	if !out.DiagnosticOnly || !hasNote(out, "2 failing pods, more than remediation.max_pods (1)") {
		t.Errorf("max_pods: diagnostic %t notes %v", out.DiagnosticOnly, out.Notes)
	}
}

func TestFinalizeFallsThroughRejectedDryRuns(t *testing.T) {
	cfg := testConfig(t)
	f := loadShop(t, "payments-api")
	in := f.input(t, cfg, events.IssueCrashLoopBackOff, "app")
	reject := func(action events.ActionType) func(events.Step) events.DryRunResult {
		return func(s events.Step) events.DryRunResult {
			if action == "" || s.Action == action {
				return events.DryRunResult{Message: fmt.Sprintf("%s rejected", s.Action), At: in.Now}
			}
			return acceptAll(s)
		}
	}
	out := finalize(draftPlan(in), reject(events.ActionRollback))
	if got := actions(out); !slices.Equal(got, []events.ActionType{events.ActionCheckLogs, events.ActionRolloutRestart}) {
		t.Fatalf("actions %v", got)
	}
	if !hasNote(out, "strategy rollback was not proposed: the API server rejected the dry run: rollback rejected") ||
		!slices.Equal(out.DryRunFailures, []string{"rollback"}) {
		t.Errorf("notes %v failures %v", out.Notes, out.DryRunFailures)
	}
	if s := mutatingStep(t, out); s.DryRun == nil || !s.DryRun.OK {
		t.Errorf("chosen step dry run %+v", s.DryRun)
	}

	out = finalize(draftPlan(in), reject(""))
	if !out.DiagnosticOnly || len(out.DryRunFailures) != 2 || !strings.Contains(out.Summary, "rejected every applicable fix") {
		t.Errorf("all rejected: diagnostic %t failures %v summary %q", out.DiagnosticOnly, out.DryRunFailures, out.Summary)
	}
}

func TestEquivalent(t *testing.T) {
	cfg := testConfig(t)
	f := loadShop(t, "frontend")
	in := f.input(t, cfg, events.IssueImagePullBackOff, "app")
	out := finalize(draftPlan(in), acceptAll)
	a := assemblePlan(uuid.Must(uuid.NewV7()).String(), in.Now, cfg, in, out)
	b := assemblePlan(uuid.Must(uuid.NewV7()).String(), in.Now.Add(time.Minute), cfg, in, out)
	if !equivalent(a, b) {
		t.Error("same content, other id and time: want equivalent")
	}
	moved := in
	w0 := *in.Owner
	w0.ResourceVersion = "999999"
	moved.Owner = &w0
	c := assemblePlan(uuid.Must(uuid.NewV7()).String(), in.Now, cfg, moved, out)
	if a.Digest == c.Digest || !equivalent(a, c) {
		t.Error("resourceVersion moved: want another digest, but an equivalent plan")
	}
	gen := in
	w := *in.Owner
	w.Generation++
	gen.Owner = &w
	out2 := finalize(draftPlan(gen), acceptAll)
	d := assemblePlan(uuid.Must(uuid.NewV7()).String(), in.Now, cfg, gen, out2)
	if equivalent(a, d) {
		t.Error("generation changed: want a new plan")
	}
}

func TestQuoteRedactsCredentials(t *testing.T) {
	tests := []struct {
		line   string
		redact bool
	}{
		{"connecting with password=hunter2", true},
		{`{"user":"app","password": "s3cret"}`, true},
		{"Authorization: Bearer eyJhbGciOi.abc.def", true},
		{"using key AKIAIOSFODNN7EXAMPLE", true},
		{"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG", true},
		{"refresh token expired for user 42", true},
		{"API_KEY=abc123", true},
		{"-----BEGIN RSA PRIVATE KEY-----", true},
		{"db url postgres://app:s3cr3t@db:5432/shop", true},
		{"header eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig", true},
		{"using ghp_0123456789abcdefghijABCDEFGHIJ012345", true},
		{"posting with xoxb-1234567890-abcdefghij", true},
		{"client_secret: abc", true},
		{"GET https://example.com/health 200", false},
		{"config file /etc/payments/settings.yaml not found", false},
		{"listening on :8080", false},
	}
	for _, tt := range tests {
		got := quote(tt.line)
		if (got == redactedLine) != tt.redact {
			t.Errorf("quote(%q) = %q, redact want %t", tt.line, got, tt.redact)
		}
	}
	long := strings.Repeat("é", maxLineLen)
	if q := quote(long); len(q) > maxLineLen+len("…") || !strings.HasSuffix(q, "…") {
		t.Errorf("long line not bounded: %d bytes", len(q))
	}
	if q := quote("a\x1b[31mred\x00\x1b]0;title\x07\tb"); q != "ared b" {
		t.Errorf("escape sequences or control characters kept: %q", q)
	}
}

func TestClassifyPull(t *testing.T) {
	tests := map[string]pullCause{
		`failed to resolve reference "docker.io/library/nginx:1.27-nonexistent": not found`:                              pullNotFound,
		`pull access denied for private/app, repository does not exist or may require authorization: insufficient_scope`: pullAuth,
		`dial tcp: lookup registry.example.com: no such host`:                                                            pullUnreachable,
		`toomanyrequests: You have reached your pull rate limit`:                                                         pullRateLimit,
		`something else`: pullUnknown,
	}
	for msg, want := range tests {
		if got := classifyPull(msg); got != want {
			t.Errorf("classifyPull(%q) = %s, want %s", msg, got, want)
		}
	}
}

func TestOtherWorkloadKinds(t *testing.T) {
	cfg := testConfig(t)
	limits := corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}}
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "db:1", Resources: limits}}}
	meta := metav1.ObjectMeta{Name: "w", Namespace: "apps", UID: "w-uid", Generation: 7, ResourceVersion: "100"}
	tmpl := corev1.PodTemplateSpec{Spec: spec}
	tests := []struct {
		name     string
		obj      any
		typ      events.IssueType
		strategy string
		protect  bool
		want     events.ActionType // "" = no mutating step
		path     string            // the path of the last patch operation
		note     string
	}{
		{name: "statefulset restart adds the annotations map", obj: &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Template: tmpl}},
			typ: events.IssueCrashLoopBackOff, strategy: "rollout_restart", want: events.ActionRolloutRestart, path: "/spec/template/metadata/annotations"},
		{name: "daemonset memory", obj: &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: tmpl}},
			typ: events.IssueOOMKilled, strategy: "increase_memory", want: events.ActionSetMemoryLimit, path: "/spec/template/spec/containers/0/resources/limits/memory"},
		{name: "cronjob memory patches the job template", obj: &batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}},
			typ: events.IssueOOMKilled, strategy: "increase_memory", want: events.ActionSetMemoryLimit, path: "/spec/jobTemplate/spec/template/spec/containers/0/resources/limits/memory"},
		{name: "job template is immutable", obj: &batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: tmpl}},
			typ: events.IssueOOMKilled, strategy: "increase_memory", note: "cannot be changed in place"},
		{name: "job has no rollout restart", obj: &batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: tmpl}},
			typ: events.IssueCrashLoopBackOff, strategy: "restart_pod", note: "has no rollout restart"},
		{name: "rollback is for Deployments", obj: &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Template: tmpl}},
			typ: events.IssueCrashLoopBackOff, strategy: "rollback", note: "Deployments only"},
		{name: "incident marked protected", obj: &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: tmpl}},
			typ: events.IssueOOMKilled, strategy: "increase_memory", protect: true, note: "marked daemonset/w as protected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := workloadOf(tt.obj)
			if err != nil {
				t.Fatal(err)
			}
			c := cfg
			c.Strategies = strategies(tt.typ, tt.strategy)
			inc := events.Incident{Namespace: "apps", Owner: w.Ref, Container: "app", Type: tt.typ, Protected: tt.protect,
				LastSeen: time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)}
			out := finalize(draftPlan(planInput{Cfg: c, Incident: inc, Owner: w}), acceptAll)
			if tt.want == "" {
				if !out.DiagnosticOnly || !hasNote(out, tt.note) {
					t.Errorf("diagnostic %t notes %v, want a note with %q", out.DiagnosticOnly, out.Notes, tt.note)
				}
				return
			}
			s := mutatingStep(t, out)
			if s.Action != tt.want {
				t.Fatalf("action %s, want %s", s.Action, tt.want)
			}
			checkGuard(t, s, 7)
			ops := decodeOps(t, s.Patch)
			if last := ops[len(ops)-1]; last["path"] != tt.path {
				t.Errorf("last op %v, want path %s", last, tt.path)
			}
		})
	}
}
