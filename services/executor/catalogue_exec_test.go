package executor

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The second line of the catalogue's defence, at execution time: even a
// step that got past validatePlanSteps is never sent as a merge,
// strategic or unguarded patch, an evicted-pod cleanup never runs without
// its uid list, and no pod the target does not control is deleted.

// bareService is a Service with what the step runner needs: no bus.
func bareService(t *testing.T, kube *fake.Clientset) *Service {
	t.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Service{cfg: Config{Cluster: testCluster, MaxPods: 2, StepTimeout: 2 * time.Second}.withDefaults(),
		kube: kube, log: testLogger(t), now: time.Now, metrics: m}
}

// writes lists the mutating calls the fake cluster received.
func writes(kube *fake.Clientset) []string {
	var out []string
	for _, a := range kube.Actions() {
		if v := a.GetVerb(); v != "get" && v != "list" && v != "watch" {
			out = append(out, v+" "+a.GetResource().Resource)
		}
	}
	return out
}

func TestExecutorSendsOnlyGuardedJSONPatches(t *testing.T) {
	t.Parallel()
	restart := `{"op":"add","path":"/spec/template/metadata/annotations","value":{"kubectl.kubernetes.io/restartedAt":"now"}}`
	tests := []struct {
		name  string
		pt    events.PatchType
		patch string
		ok    bool
	}{
		{"guarded JSON patch", events.PatchJSON, string(generationPatch(2, restart)), true},
		{"merge patch", events.PatchMerge, `{"spec":{"replicas":0}}`, false},
		{"strategic patch", events.PatchStrategic, `{"spec":{"replicas":0}}`, false},
		{"unguarded JSON patch", events.PatchJSON, `[` + restart + `]`, false},
		{"guard after the change", events.PatchJSON, `[` + restart + `,{"op":"test","path":"/metadata/generation","value":2}]`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kube := healthyFake()
			target := events.ObjectRef{Kind: kindDeployment, Namespace: "shop", Name: "web", UID: "dep"}
			st := events.Step{Index: 0, Action: events.ActionRolloutRestart, Title: "restart", Target: target, Risk: events.RiskLow,
				Mutating: true, PatchType: tt.pt, Patch: json.RawMessage(tt.patch)}
			p := events.Plan{ID: "p", Namespace: "shop", Target: target, TargetGeneration: 2, Steps: []events.Step{st}}
			status, summary, err := newStepRunner(bareService(t, kube), p).apply(context.Background(), st)
			if tt.ok {
				if err != nil || status != events.StepSucceeded {
					t.Fatalf("%s %q: %v", status, summary, err)
				}
				if w := writes(kube); len(w) != 1 || w[0] != "patch deployments" {
					t.Fatalf("writes %v, want the one patch", w)
				}
				return
			}
			if !errors.Is(err, ErrUnsupportedStep) || status != events.StepFailed {
				t.Fatalf("%s %q: %v, want %v", status, summary, err, ErrUnsupportedStep)
			}
			if w := writes(kube); len(w) != 0 {
				t.Fatalf("the cluster was written: %v", w)
			}
		})
	}
}

// evictedPod is a Failed, Evicted pod with label app=web controlled by
// owner (none when ownerUID is "").
func evictedPod(name, ownerKind, ownerName, ownerUID string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: typesUID(name), Labels: map[string]string{"app": "web"}},
		Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted"}}
	if ownerUID != "" {
		p.OwnerReferences = controller(ownerKind, ownerName, ownerUID)
	}
	return p
}

func typesUID(name string) types.UID { return types.UID(name + "-uid") }

// clusterWithStrangers is healthyFake (Deployment web, uid dep, with its
// ReplicaSet web-2, uid rs) plus another Deployment's ReplicaSet and pods
// that carry web's labels: one of web's, one of the other Deployment's, one
// without a controller, one of a Job.
func clusterWithStrangers() *fake.Clientset {
	kube := healthyFake()
	other := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "other-1", Namespace: "shop", UID: "rs-other",
		Labels: map[string]string{"app": "web"}, OwnerReferences: controller(kindDeployment, "other", "other")}}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "migrate", Namespace: "shop", UID: "job"}}
	for _, o := range []runtime.Object{other, job,
		evictedPod("mine", kindReplicaSet, "web-2", "rs"),
		evictedPod("stranger", kindReplicaSet, "other-1", "rs-other"),
		evictedPod("orphan", "", "", ""),
		evictedPod("jobs", kindJob, "migrate", "job"),
	} {
		if err := kube.Tracker().Add(o); err != nil {
			panic(err)
		}
	}
	kube.ClearActions()
	return kube
}

func TestPodsToDeleteMustBeControlledByTheTarget(t *testing.T) {
	t.Parallel()
	web := events.ObjectRef{Kind: kindDeployment, Namespace: "shop", Name: "web", UID: "dep"}
	job := events.ObjectRef{Kind: kindJob, Namespace: "shop", Name: "migrate", UID: "job"}
	deletePod := func(i int, name string) events.Step {
		return events.Step{Index: i, Action: events.ActionDeletePod, Title: "delete " + name, Risk: events.RiskLow, Mutating: true,
			Target: events.ObjectRef{Kind: kindPod, Namespace: "shop", Name: name, UID: name + "-uid"}, Params: map[string]string{"uid": name + "-uid"}}
	}
	tests := []struct {
		name   string
		target events.ObjectRef
		steps  []events.Step
		want   string // "" = allowed
	}{
		{"the Deployment's pod, through its ReplicaSet", web, []events.Step{deletePod(0, "mine")}, ""},
		{"the Job's own pod", job, []events.Step{deletePod(0, "jobs")}, ""},
		{"a pod already gone", web, []events.Step{deletePod(0, "gone")}, ""},
		{"another Deployment's pod with the same labels", web, []events.Step{deletePod(0, "mine"), deletePod(1, "stranger")},
			"step 1 (delete_pod) of plan p: pod Pod/shop/stranger is not controlled by the plan's target Deployment/shop/web (controller: ReplicaSet/other-1 uid rs-other)"},
		{"a pod without a controller", web, []events.Step{deletePod(0, "orphan")}, "pod Pod/shop/orphan is not controlled by the plan's target Deployment/shop/web (controller: none)"},
		{"a Job's pod in a Deployment's plan", web, []events.Step{deletePod(0, "jobs")}, "controller: Job/migrate uid job"},
		{"the Deployment's pod in a Job's plan", job, []events.Step{deletePod(0, "mine")}, "controller: ReplicaSet/web-2 uid rs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kube := clusterWithStrangers()
			p := events.Plan{ID: "p", Namespace: "shop", Target: tt.target, Steps: tt.steps}
			r, err := bareService(t, kube).checkPodsControlled(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.want == "" && r != nil:
				t.Fatalf("refused: %v", r)
			case tt.want != "" && r == nil:
				t.Fatal("allowed")
			case tt.want != "" && (r.Reason != events.RefusalInvalidStep || !strings.Contains(r.Message, tt.want)):
				t.Fatalf("refusal %v, want invalid_step and %q", r, tt.want)
			}
			if w := writes(kube); len(w) != 0 {
				t.Fatalf("the check wrote to the cluster: %v", w)
			}
		})
	}
}

// The evicted pods of a cleanup are found by the target's label selector;
// labels are not ownership: pods of other controllers that carry them are
// left, even when the plan lists them. A step without its uid list, or
// with more than max_pods, deletes nothing.
func TestEvictedPodCleanupDeletesOnlyListedPodsOfTheTarget(t *testing.T) {
	t.Parallel()
	web := events.ObjectRef{Kind: kindDeployment, Namespace: "shop", Name: "web", UID: "dep"}
	tests := []struct {
		name    string
		uids    string
		deleted []string
		err     error
	}{
		{"listed pods of the target and of others", "mine-uid,stranger-uid", []string{"mine"}, nil},
		{"only others' pods", "orphan-uid,jobs-uid", nil, nil},
		{"no uid list", "", nil, ErrUnsupportedStep},
		{"more uids than max_pods (2)", "mine-uid,stranger-uid,orphan-uid", nil, ErrUnsupportedStep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kube := clusterWithStrangers()
			st := events.Step{Index: 0, Action: events.ActionDeleteEvictedPods, Title: "cleanup", Target: web, Risk: events.RiskLow, Mutating: true,
				Params: map[string]string{"uids": tt.uids}}
			p := events.Plan{ID: "p", Namespace: "shop", Target: web, TargetGeneration: 2, Steps: []events.Step{st}}
			_, summary, err := newStepRunner(bareService(t, kube), p).apply(context.Background(), st)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("error %v, want %v (%s)", err, tt.err, summary)
			}
			var deleted []string
			for _, a := range kube.Actions() {
				if a.GetVerb() == "delete" {
					deleted = append(deleted, a.(k8stesting.DeleteAction).GetName())
				}
			}
			if strings.Join(deleted, ",") != strings.Join(tt.deleted, ",") {
				t.Fatalf("deleted %v, want %v (%s)", deleted, tt.deleted, summary)
			}
			if tt.err == nil && strings.Contains(tt.uids, "stranger") && !strings.Contains(summary, "not controlled by Deployment/shop/web: stranger") {
				t.Errorf("summary %q does not say which pod was left and why", summary)
			}
		})
	}
}

// A delete_pod step of a pod the target does not control fails at the
// step itself too (a resumed execution skips the check before the first
// step): nothing is deleted.
func TestDeletePodStepChecksTheController(t *testing.T) {
	t.Parallel()
	web := events.ObjectRef{Kind: kindDeployment, Namespace: "shop", Name: "web", UID: "dep"}
	for _, tt := range []struct {
		pod     string
		deleted bool
	}{{"mine", true}, {"stranger", false}, {"orphan", false}} {
		t.Run(tt.pod, func(t *testing.T) {
			kube := clusterWithStrangers()
			st := events.Step{Index: 0, Action: events.ActionDeletePod, Title: "delete", Risk: events.RiskLow, Mutating: true,
				Target: events.ObjectRef{Kind: kindPod, Namespace: "shop", Name: tt.pod, UID: tt.pod + "-uid"}}
			p := events.Plan{ID: "p", Namespace: "shop", Target: web, Steps: []events.Step{st}}
			_, summary, err := newStepRunner(bareService(t, kube), p).apply(context.Background(), st)
			if w := writes(kube); tt.deleted != (len(w) == 1) {
				t.Fatalf("writes %v (%s, %v), want deleted=%t", w, summary, err, tt.deleted)
			}
			if !tt.deleted && (!errors.Is(err, ErrInvalidStep) || !strings.Contains(err.Error(), "is not controlled by the plan's target Deployment/shop/web")) {
				t.Fatalf("error %v, want %v naming the target", err, ErrInvalidStep)
			}
		})
	}
}

// An execution interrupted by a crash is resumed from its record; a plan
// outside the catalogue (claimed, say, by an executor without it) runs
// no further step: it is refused when resumed.
func TestResumedPlanOutsideTheCatalogueRunsNoStep(t *testing.T) {
	t.Parallel()
	kube := clusterWithStrangers()
	e := startExecutor(t, startNATS(t), kube, Config{})
	web := events.ObjectRef{Kind: kindDeployment, Namespace: "shop", Name: "web", UID: "dep"}
	restart := events.Step{Action: events.ActionRolloutRestart, Title: "restart", Target: web, Risk: events.RiskLow, Mutating: true,
		PatchType: events.PatchJSON, Patch: generationPatch(2, `{"op":"add","path":"/spec/template/metadata/annotations","value":{"kubectl.kubernetes.io/restartedAt":"now"}}`)}
	scale := events.Step{Action: events.ActionRolloutRestart, Title: "restart (really: scale to zero)", Target: web, Risk: events.RiskLow, Mutating: true,
		PatchType: events.PatchMerge, Patch: json.RawMessage(`{"spec":{"replicas":0}}`)}
	p := newPlan(t, web, 2, "1", restart, scale)
	e.createPlan(p)
	env := decisionEnvelope(t, p)
	cur, rev, err := e.plans.Get(e.context(5*time.Second), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	cur.State = events.PlanExecuting
	cur.History = append(cur.History, claimNote(env.ID, decisionOf(t, env)))
	if _, err := e.plans.Update(e.context(5*time.Second), cur, rev); err != nil {
		t.Fatal(err)
	}
	done := started(p, 0)
	done.Status, done.FinishedAt, done.Generation = events.StepSucceeded, done.StartedAt, 3
	if err := e.svc.storeExecution(e.context(5*time.Second), executing(p, done)); err != nil {
		t.Fatal(err)
	}
	e.publishDecision(env, env.ID)
	trail := e.waitAudit(p.ID, events.AuditExecutionFinished, 1, 30*time.Second)
	want := []events.AuditKind{events.AuditRefused, events.AuditExecutionFinished}
	if got := kinds(trail); !slices.Equal(got, want) {
		t.Fatalf("audit trail %v, want %v (no step started)", got, want)
	}
	if !strings.Contains(trail[0].Message, "invalid_step") || !strings.Contains(trail[0].Message, `step 1 (rollout_restart)`) {
		t.Errorf("refusal %q", trail[0].Message)
	}
	if ex := e.execution(p.ID); ex == nil || ex.State != events.ExecutionRefused || ex.RefusalReason != events.RefusalInvalidStep {
		t.Errorf("execution %+v", ex)
	}
	if got := e.plan(p.ID).State; got != events.PlanFailed {
		t.Errorf("plan state %s, want failed", got)
	}
	if w := writes(kube); len(w) != 0 {
		t.Fatalf("the cluster was written: %v", w)
	}
}

// A rollback may replace the pod template and nothing else (the
// catalogue), and only with a template the Deployment ran: one of its
// ReplicaSets' (less the pod-template-hash label); its undo patch puts
// back the template it has now.
func TestRollbackRestoresARevisionTheDeploymentRan(t *testing.T) {
	t.Parallel()
	labels := map[string]string{"app": "web"}
	tmpl := func(image string, mut func(*corev1.PodTemplateSpec)) corev1.PodTemplateSpec {
		t := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
		if mut != nil {
			mut(&t)
		}
		return t
	}
	hashed := func(t corev1.PodTemplateSpec, hash string) corev1.PodTemplateSpec {
		t = *t.DeepCopy()
		t.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
		return t
	}
	good, current := tmpl("nginx:1.27", nil), tmpl("nginx:1.27-broken", nil)
	privileged := tmpl("nginx:1.27", func(t *corev1.PodTemplateSpec) {
		t.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr(true)}
	})
	kube := func() *fake.Clientset {
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "dep", Generation: 2},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: current}}
		rs := func(name, uid, owner, ownerUID string, t corev1.PodTemplateSpec) *appsv1.ReplicaSet {
			return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: typesUID(uid), Labels: t.Labels,
				OwnerReferences: controller(kindDeployment, owner, ownerUID)}, Spec: appsv1.ReplicaSetSpec{Template: t}}
		}
		return fake.NewClientset(dep,
			rs("web-1", "web-1", "web", "dep", hashed(good, "aaa")),
			rs("web-2", "web-2", "web", "dep", hashed(current, "bbb")),
			// Another Deployment's ReplicaSet, with web's labels.
			rs("other-1", "other-1", "other", "other", hashed(privileged, "ccc")))
	}
	target := events.ObjectRef{Kind: kindDeployment, Namespace: "shop", Name: "web", UID: "dep"}
	rollback := func(to, undo corev1.PodTemplateSpec) events.Plan {
		enc := func(gen int64, t corev1.PodTemplateSpec) json.RawMessage {
			b, err := json.Marshal(t)
			if err != nil {
				panic(err)
			}
			return generationPatch(gen, `{"op":"replace","path":"/spec/template","value":`+string(b)+`}`)
		}
		st := events.Step{Index: 0, Action: events.ActionRollback, Title: "rollback", Target: target, Risk: events.RiskMedium, Mutating: true,
			PatchType: events.PatchJSON, Patch: enc(2, to), UndoPatch: enc(3, undo)}
		return events.Plan{ID: "p", Namespace: "shop", Target: target, TargetGeneration: 2, TargetResourceVersion: "1", Steps: []events.Step{st}}
	}
	tests := []struct {
		name string
		p    events.Plan
		want string // "" = allowed
	}{
		{"back to revision 1", rollback(good, current), ""},
		{"to a template no revision had", rollback(privileged, current), "the template is not that of any ReplicaSet of Deployment/shop/web"},
		{"to another Deployment's revision", rollback(hashed(privileged, "ccc"), current), "the template is not that of any ReplicaSet"},
		{"with an undo patch that is not the current template", rollback(good, privileged), "the undo patch's template is not the current template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := validatePlanSteps(tt.p, catalogueTestConfig); r != nil {
				t.Fatalf("the catalogue refused it already: %v", r)
			}
			k := kube()
			r, err := bareService(t, k).checkRollbacks(context.Background(), tt.p)
			switch {
			case err != nil:
				t.Fatal(err)
			case tt.want == "" && r != nil:
				t.Fatalf("refused: %v", r)
			case tt.want != "" && (r == nil || r.Reason != events.RefusalInvalidStep || !strings.Contains(r.Message, tt.want) || !strings.Contains(r.Message, "step 0 (rollback)")):
				t.Fatalf("refusal %v, want invalid_step, step 0 (rollback) and %q", r, tt.want)
			}
			if w := writes(k); len(w) != 0 {
				t.Fatalf("the check wrote: %v", w)
			}
		})
	}
}
