package planner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// planCount reads kaar_planner_plans_total{type,outcome}.
func planCount(t *testing.T, reg *prometheus.Registry, typ events.IssueType, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "kaar_planner_plans_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["type"] == string(typ) && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// podImage reports a pod whose container app runs image.
func podImage(image string) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool { return p.Spec.Containers[0].Image == image }
}

// waitPods waits until some pods of app show status and match pred.
func (h *harness) waitPods(app, status string, pred func(*corev1.Pod) bool) []corev1.Pod {
	h.t.Helper()
	var got []corev1.Pod
	eventually(h.t, 90*time.Second, "pods of "+app+" showing "+status, func() (bool, string) {
		got = nil
		var states []string
		for _, p := range h.pods(app) {
			states = append(states, p.Name+":"+sandbox.PodStatus(&p)+":"+p.Spec.Containers[0].Image)
			if sandbox.PodStatus(&p) == status && (pred == nil || pred(&p)) {
				got = append(got, p)
			}
		}
		return len(got) > 0, strings.Join(states, ", ")
	})
	return got
}

// A Deployment rolled from a good image to a missing one gets a plan to
// roll back to revision 1, once however often the issue is delivered; a
// changed incident supersedes it; the plan's patch heals the workload;
// the resolution makes the remaining plan obsolete.
func TestImagePullBackOffIncidentLifecycle(t *testing.T) {
	h := newHarness(t, true)
	_, reg := h.startPlanner(nil)
	h.deployment("web", "nginx:1.27", 2, nil, "128Mi")
	h.waitAvailable("web", 90*time.Second)
	h.setImage("web", "nginx:1.27-"+sandbox.NonexistentTag)
	failing := h.waitPods("web", "ImagePullBackOff", nil)
	dep := h.getDeployment("web")
	inc := h.incident(dep, events.IssueImagePullBackOff, "image_not_found", failing)

	h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, ""))
	p1 := h.proposed(inc.ID)
	rb := step(t, p1, events.ActionRollback)
	if rb.Params[events.ParamRevision] != "1" || !strings.HasSuffix(rb.Kubectl, "rollout undo deployment/web --to-revision=1") {
		t.Errorf("rollback step %s", mustJSON(rb))
	}
	if rb.DryRun == nil || !rb.DryRun.OK {
		t.Fatalf("rollback dry run %+v", rb.DryRun)
	}
	checkGuard(t, rb, dep.Generation)
	if p1.TargetGeneration != dep.Generation || p1.Target.UID != string(dep.UID) || p1.Risk != events.RiskMedium ||
		!p1.ExpiresAt.Equal(p1.CreatedAt.Add(15*time.Minute)) {
		t.Errorf("plan %s", mustJSON(p1))
	}
	if err := p1.Validate(); err != nil {
		t.Errorf("stored plan: %v", err)
	}
	if !slices.ContainsFunc(p1.Evidence, func(e events.Evidence) bool { return e.Kind == events.EvidenceRolloutHistory }) {
		t.Errorf("no rollout history evidence: %s", mustJSON(p1.Evidence))
	}
	if got := h.planEvents(events.PlanEventProposed); !slices.Equal(got, []string{p1.ID}) {
		t.Errorf("proposed events %v, want [%s]", got, p1.ID)
	}
	if got := h.auditPlans(events.AuditPlanProposed); !slices.Equal(got, []string{p1.ID}) {
		t.Errorf("plan_proposed audit %v", got)
	}

	// A redelivered observation (a restarted watcher outside the dedup
	// window publishes it again) does not make a second plan.
	h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, "redelivered-observation-1"))
	if got := h.plans(inc.ID); len(got) != 1 || got[0].ID != p1.ID {
		t.Fatalf("after redelivery: plans %s", mustJSON(got))
	}
	if got := h.planEvents(events.PlanEventProposed); len(got) != 1 {
		t.Errorf("after redelivery: proposed events %v", got)
	}

	// The incident changes: another bad image (a new generation).
	h.setImage("web", "nginx:1.28-"+sandbox.NonexistentTag)
	failing = h.waitPods("web", "ImagePullBackOff", podImage("nginx:1.28-"+sandbox.NonexistentTag))
	dep = h.getDeployment("web")
	inc2 := h.incident(dep, events.IssueImagePullBackOff, "image_not_found", failing)
	h.waitHandled(h.publishIssue(events.TransitionChanged, inc2, 2, ""))
	p2 := h.proposed(inc.ID)
	if p2.ID == p1.ID || p2.TargetGeneration != dep.Generation {
		t.Fatalf("changed incident: plan %s (generation %d), first plan %s", p2.ID, p2.TargetGeneration, p1.ID)
	}
	old, _, err := h.store.Get(h.ctx(10*time.Second), p1.ID)
	if err != nil || old.State != events.PlanSuperseded || old.SupersededBy != p2.ID {
		t.Fatalf("first plan after change: state %s superseded_by %q err %v", old.State, old.SupersededBy, err)
	}
	if got := h.planEvents(events.PlanEventSuperseded); !slices.Equal(got, []string{p1.ID}) {
		t.Errorf("superseded events %v", got)
	}
	if got := h.auditPlans(events.AuditPlanSuperseded); !slices.Equal(got, []string{p1.ID}) {
		t.Errorf("plan_superseded audit %v", got)
	}
	rb2 := step(t, p2, events.ActionRollback)
	if rb2.Params[events.ParamRevision] != "1" || !rb2.DryRun.OK {
		t.Fatalf("second rollback %s", mustJSON(rb2))
	}

	// Applying the plan's patch (as the executor would) heals the workload.
	h.applyForReal(rb2)
	h.waitAvailable("web", 90*time.Second)
	for _, p := range h.pods("web") {
		if p.Spec.Containers[0].Image != "nginx:1.27" {
			t.Errorf("pod %s runs %s after the rollback", p.Name, p.Spec.Containers[0].Image)
		}
	}

	// The watcher announces the resolution: the proposed plan is obsolete.
	h.waitHandled(h.publishIssue(events.TransitionResolved, inc2, 3, ""))
	got, _, err := h.store.Get(h.ctx(10*time.Second), p2.ID)
	if err != nil || got.State != events.PlanSuperseded || got.SupersededBy != "" ||
		!slices.ContainsFunc(got.History, func(n string) bool { return strings.Contains(n, "incident resolved") }) {
		t.Fatalf("plan after resolution: state %s by %q notes %v err %v", got.State, got.SupersededBy, got.History, err)
	}
	// A late copy of the older "changed" observation plans nothing.
	h.waitHandled(h.publishIssue(events.TransitionChanged, inc2, 2, "late-copy-of-observation-2"))
	for _, p := range h.plans(inc.ID) {
		if p.State == events.PlanProposed {
			t.Errorf("proposed plan %s after the resolution", p.ID)
		}
	}
	if got := h.planEvents(events.PlanEventSuperseded); !slices.Equal(got, []string{p1.ID, p2.ID}) {
		t.Errorf("superseded events %v", got)
	}
	for outcome, want := range map[string]float64{outcomeProposed: 2, outcomeUnchanged: 1, outcomeSuperseded: 2} {
		if n := planCount(t, reg, events.IssueImagePullBackOff, outcome); n != want {
			t.Errorf("kaar_planner_plans_total{outcome=%q} = %v, want %v", outcome, n, want)
		}
	}
}

// An OOMKilled container gets a raised memory limit that the API server
// accepts in a dry run, and applying it makes the pod run.
func TestOOMKilledPlanRaisesMemoryAndHeals(t *testing.T) {
	h := newHarness(t, true)
	h.startPlanner(nil)
	h.deployment("cache", "redis:7.4", 1, map[string]string{sandbox.AnnotationMemoryUsage: "100Mi"}, "64Mi")
	failing := h.waitPods("cache", "CrashLoopBackOff", func(p *corev1.Pod) bool {
		cs := containerStatus(p, "app")
		return cs != nil && cs.LastTerminationState.Terminated != nil && cs.LastTerminationState.Terminated.Reason == "OOMKilled"
	})
	dep := h.getDeployment("cache")
	inc := h.incident(dep, events.IssueOOMKilled, "oom_killed", failing)
	h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, ""))
	p := h.proposed(inc.ID)
	s := step(t, p, events.ActionSetMemoryLimit)
	if s.Params[events.ParamMemory] != "128Mi" || s.DryRun == nil || !s.DryRun.OK || s.Risk != events.RiskLow {
		t.Fatalf("memory step %s", mustJSON(s))
	}
	checkGuard(t, s, dep.Generation)
	var logs *events.Evidence
	for i := range p.Evidence {
		if p.Evidence[i].Kind == events.EvidenceLogs {
			logs = &p.Evidence[i]
		}
	}
	if logs == nil || len(logs.Lines) != 1 || !strings.HasPrefix(logs.Lines[0], "logs unavailable: ") {
		t.Errorf("kwok serves no logs: want a 'logs unavailable' evidence, got %s", mustJSON(logs))
	} else {
		t.Logf("logs evidence: %s", logs.Lines[0])
	}

	h.applyForReal(s)
	h.waitAvailable("cache", 90*time.Second)
	for _, pod := range h.pods("cache") {
		if q := pod.Spec.Containers[0].Resources.Limits.Memory(); q.String() != "128Mi" {
			t.Errorf("pod %s limit %s", pod.Name, q)
		}
	}
}

// A plan nobody approves disappears from kaar_plans when its window ends
// and one plan-expired event and audit record are published, even with
// two planner replicas watching.
func TestUnapprovedPlanExpires(t *testing.T) {
	h := newHarness(t, true)
	oneSecond := func(c *Config) { c.ApprovalWindow = time.Second }
	_, reg1 := h.startPlanner(oneSecond)
	_, reg2 := h.startPlanner(oneSecond)
	h.deployment("worker", "busybox:1.37", 1, map[string]string{sandbox.AnnotationCrashExitCode: "3"}, "64Mi")
	failing := h.waitPods("worker", "CrashLoopBackOff", nil)
	inc := h.incident(h.getDeployment("worker"), events.IssueCrashLoopBackOff, "exit_code_3", failing)
	h.publishIssue(events.TransitionDetected, inc, 1, "")

	var expired []string
	eventually(t, 30*time.Second, "a plan-expired event", func() (bool, string) {
		expired = h.planEvents(events.PlanEventExpired)
		return len(expired) > 0, ""
	})
	proposed := h.planEvents(events.PlanEventProposed)
	if len(proposed) != 1 || !slices.Equal(expired, proposed) {
		t.Fatalf("proposed %v expired %v", proposed, expired)
	}
	if _, _, err := h.store.Get(h.ctx(10*time.Second), proposed[0]); !errors.Is(err, bus.ErrPlanNotFound) {
		t.Errorf("expired plan still in kaar_plans: %v", err)
	}
	// Both replicas announce the expiry; the message ids make it one.
	eventually(t, 10*time.Second, "both replicas to announce the expiry", func() (bool, string) {
		n1, n2 := planCount(t, reg1, events.IssueCrashLoopBackOff, outcomeExpired), planCount(t, reg2, events.IssueCrashLoopBackOff, outcomeExpired)
		return n1 == 1 && n2 == 1, ""
	})
	if got := h.planEvents(events.PlanEventExpired); len(got) != 1 {
		t.Errorf("expired events %v, want one", got)
	}
	if got := h.auditPlans(events.AuditPlanExpired); !slices.Equal(got, proposed) {
		t.Errorf("plan_expired audit %v", got)
	}
	p := h.announcedPlan(events.PlanEventExpired)
	if p.State != events.PlanExpired || p.Digest == "" {
		t.Errorf("expired event plan state %s", p.State)
	}
	// The plan itself: check_logs kept, no older revision so a restart.
	if got := actionsOf(p); !slices.Equal(got, []events.ActionType{events.ActionCheckLogs, events.ActionRolloutRestart}) {
		t.Errorf("steps %v", got)
	}
	if s := step(t, p, events.ActionRolloutRestart); s.DryRun == nil || !s.DryRun.OK {
		t.Errorf("restart dry run %+v", s.DryRun)
	}
}

func actionsOf(p events.Plan) []events.ActionType {
	var out []events.ActionType
	for _, s := range p.Steps {
		out = append(out, s.Action)
	}
	return out
}

// announcedPlan returns the plan carried by the last event ev.
func (h *harness) announcedPlan(ev events.PlanEvent) events.Plan {
	h.t.Helper()
	subject, _ := events.PlanEventSubject(testCluster, ev)
	st, err := h.js.Stream(h.ctx(10*time.Second), events.StreamPlanEvents)
	if err != nil {
		h.t.Fatal(err)
	}
	msg, err := st.GetLastMsgForSubject(h.ctx(10*time.Second), subject)
	if err != nil {
		h.t.Fatal(err)
	}
	env, err := events.Decode(msg.Data)
	if err != nil {
		h.t.Fatal(err)
	}
	p, err := events.DecodeData[events.Plan](env)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// fakeWatcher answers svc.watcher.analyze from a fixed list of incidents
// and records the requests.
type fakeWatcher struct {
	mu        sync.Mutex
	incidents []events.Incident
	requests  []events.AnalyzeRequest
	svc       micro.Service
}

func (h *harness) startFakeWatcher(incidents ...events.Incident) *fakeWatcher {
	h.t.Helper()
	w := &fakeWatcher{incidents: incidents}
	subject, _ := events.ServiceSubject(testCluster, events.ServiceWatcher, events.VerbAnalyze)
	svc, err := micro.AddService(h.nc, micro.Config{Name: "kaar-watcher", Version: "0.0.1"})
	if err != nil {
		h.t.Fatal(err)
	}
	w.svc = svc
	h.t.Cleanup(func() { _ = svc.Stop() })
	err = svc.AddEndpoint(events.VerbAnalyze, micro.HandlerFunc(func(req micro.Request) {
		r, err := events.DecodeRequest[events.AnalyzeRequest](req.Data())
		if err != nil {
			body, code := events.EncodeReply(nil, err)
			_ = req.Respond(body, micro.WithHeaders(micro.Headers{events.HeaderError: []string{code}}))
			return
		}
		w.mu.Lock()
		w.requests = append(w.requests, r)
		var out []events.Incident
		for _, in := range w.incidents {
			// As the watcher: a type implies its class, and without
			// either only failures are listed (warnings are counted).
			class := r.Class
			if r.Type != "" {
				class = r.Type.Class()
			}
			if class == "" {
				class = events.ClassFailure
			}
			if (r.Namespace == "" || in.Namespace == r.Namespace) && (r.Owner == "" || r.Owner == in.Owner.Kind+"/"+in.Owner.Name) &&
				in.Type.Class() == class {
				out = append(out, in)
			}
		}
		w.mu.Unlock()
		body, _ := events.EncodeReply(events.AnalyzeResponse{Cluster: testCluster, Incidents: out, Total: len(out), GeneratedAt: time.Now().UTC()}, nil)
		_ = req.Respond(body)
	}), micro.WithEndpointSubject(subject))
	if err != nil {
		h.t.Fatal(err)
	}
	return w
}

// The plan endpoint asks the watcher for the workload's incident, plans
// it, and answers with clear errors for what it cannot plan.
func TestPlanEndpoint(t *testing.T) {
	h := newHarness(t, true)
	h.startPlanner(nil)
	h.deployment("api", "busybox:1.37", 1, map[string]string{sandbox.AnnotationCrashExitCode: "1"}, "64Mi")
	failing := h.waitPods("api", "CrashLoopBackOff", nil)
	inc := h.incident(h.getDeployment("api"), events.IssueCrashLoopBackOff, "exit_code_1", failing)
	w := h.startFakeWatcher(inc)

	resp, err := h.requestPlan(events.PlanRequest{Namespace: h.ns, Kind: "DEPLOYMENT", Name: "api", RequestedBy: "alice"})
	if err != nil {
		t.Fatalf("plan request: %v", err)
	}
	p := resp.Plan
	// Who asked is sealed into the plan (require_distinct_approver).
	if p.IncidentID != inc.ID || p.State != events.PlanProposed || p.Target.Name != "api" || p.RequestedBy != "alice" || p.Validate() != nil {
		t.Fatalf("plan %s", mustJSON(p))
	}
	if got := actionsOf(p); !slices.Equal(got, []events.ActionType{events.ActionCheckLogs, events.ActionRolloutRestart}) {
		t.Errorf("steps %v", got)
	}
	if stored, _, err := h.store.Get(h.ctx(10*time.Second), p.ID); err != nil || stored.Digest != p.Digest || stored.RequestedBy != "alice" {
		t.Errorf("stored plan: %v (digest %s vs %s)", err, stored.Digest, p.Digest)
	}
	w.mu.Lock()
	if len(w.requests) != 1 || w.requests[0].Owner != "Deployment/api" || w.requests[0].Namespace != h.ns {
		t.Errorf("analyze requests %+v", w.requests)
	}
	w.mu.Unlock()

	// Asking again, or by one of its pods, gives the same plan.
	again, err := h.requestPlan(events.PlanRequest{Namespace: h.ns, Kind: "pod", Name: failing[0].Name, IssueType: events.IssueCrashLoopBackOff})
	if err != nil || again.Plan.ID != p.ID {
		t.Errorf("plan by pod: %v, plan %s want %s", err, again.Plan.ID, p.ID)
	}

	errCases := []struct {
		name      string
		req       any
		code      string
		field     string
		msgSubstr string
	}{
		{"no incident", events.PlanRequest{Namespace: h.ns, Kind: "deployment", Name: "healthy"}, events.CodeNotFound, "", "the watcher knows no incident"},
		{"no incident of that type", events.PlanRequest{Namespace: h.ns, Kind: "deployment", Name: "api", IssueType: events.IssueOOMKilled}, events.CodeNotFound, "", "of type OOMKilled"},
		{"pod not found", events.PlanRequest{Namespace: h.ns, Kind: "pod", Name: "ghost"}, events.CodeNotFound, "", "pod ghost not found"},
		{"unknown kind", events.PlanRequest{Namespace: h.ns, Kind: "configmap", Name: "api"}, events.CodeInvalidArgument, "kind", "allowed: deployment, statefulset, daemonset, replicaset, job, cronjob, pod, service, ingress, persistentvolumeclaim, node, horizontalpodautoscaler"},
		{"missing name", events.PlanRequest{Namespace: h.ns, Kind: "deployment"}, events.CodeInvalidArgument, "name", "required"},
		{"bad issue type", map[string]string{"namespace": h.ns, "kind": "deployment", "name": "api", "issue_type": "Exploded"}, events.CodeInvalidArgument, "issue_type", "CrashLoopBackOff"},
		{"not JSON", json.RawMessage(`"just a string"`), events.CodeInvalidArgument, "request", "invalid JSON"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.requestPlan(tc.req)
			er := errorReply(t, err)
			if er.Code != tc.code || er.Field != tc.field || !strings.Contains(er.Message, tc.msgSubstr) {
				t.Errorf("got %+v, want code %s field %q message containing %q", er, tc.code, tc.field, tc.msgSubstr)
			}
		})
	}

	// Without a watcher, the planner says so.
	if err := w.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err = h.requestPlan(events.PlanRequest{Namespace: h.ns, Kind: "deployment", Name: "api"})
	if er := errorReply(t, err); er.Code != events.CodeUnavailable || !strings.Contains(er.Message, "watcher") {
		t.Errorf("without watcher: %+v", er)
	}
}

// Messages the planner cannot use are terminated with a reason, never
// retried, and do not stop it.
func TestInvalidIssueMessagesAreDropped(t *testing.T) {
	h := newHarness(t, false)
	h.startPlanner(nil)
	subject, _ := events.IssueSubject(testCluster, "shop", events.IssueCrashLoopBackOff)
	h.publishRaw(subject, []byte("not json at all"), "garbage-1")
	env := events.Envelope{SpecVersion: events.SpecVersion, ID: "01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f", Source: events.SourceWatcher,
		Type: events.TypeIncidentDetected, Time: time.Now().UTC(), SchemaVersion: events.SchemaVersion, Cluster: testCluster,
		Data: json.RawMessage(`{"transition":"exploded"}`)}
	h.publishRaw(subject, mustMarshal(t, env), "bad-data-1")
	f := loadShop(t, "payments-api")
	inc := f.incident(t, events.IssueCrashLoopBackOff, "app")
	other := inc
	other.Cluster = "elsewhere"
	other.ID = events.IncidentID("elsewhere", inc.Namespace, inc.Owner.Kind, inc.Owner.Name, inc.Container, inc.Type)
	ev := events.IncidentEvent{Transition: events.TransitionDetected, Incident: other, ObservedAt: time.Now().UTC(), Observation: 1}
	oenv, err := events.New(events.TypeIncidentDetected, events.SourceWatcher, testCluster, other.ID, &ev)
	if err != nil {
		t.Fatal(err)
	}
	h.publishRaw(subject, mustMarshal(t, oenv), "other-cluster-1")
	// A resolution of an incident without plans is handled (nothing to do).
	last := h.publishIssue(events.TransitionResolved, inc, 2, "")
	h.waitHandled(last)

	name, _ := events.PlannerConsumer(testCluster)
	c, err := h.js.Consumer(h.ctx(5*time.Second), events.StreamIssues, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(h.ctx(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 || info.NumAckPending != 0 || info.Delivered.Stream != last {
		t.Errorf("consumer: redelivered %d, ack pending %d, delivered %d of %d", info.NumRedelivered, info.NumAckPending, info.Delivered.Stream, last)
	}
	if n := h.count(events.StreamPlanEvents, "kaar.test.plan.>"); n != 0 {
		t.Errorf("%d plan events, want none", n)
	}
	all, err := h.store.List(context.Background())
	if err != nil || len(all) != 0 {
		t.Errorf("plans %v (err %v), want none", all, err)
	}
}

// The planner plans with nothing more than RBACRules, as the sandbox's
// kaar-planner user, and that user cannot read Secrets.
func TestPlannerWorksWithLeastPrivilege(t *testing.T) {
	h := newHarness(t, true)
	h.asLeastPrivilegedPlanner(t)
	ctx := h.ctx(time.Minute)
	if _, err := h.plannerKube.CoreV1().Secrets(h.ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the planner's role can list secrets: %v", err)
	}
	h.startPlanner(nil)

	h.deployment("shop", "nginx:1.27", 1, nil, "128Mi")
	h.waitAvailable("shop", 90*time.Second)
	h.setImage("shop", "nginx:1.27-"+sandbox.NonexistentTag)
	failing := h.waitPods("shop", "ImagePullBackOff", nil)
	inc := h.incident(h.getDeployment("shop"), events.IssueImagePullBackOff, "image_not_found", failing)
	h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, ""))
	if s := step(t, h.proposed(inc.ID), events.ActionRollback); s.DryRun == nil || !s.DryRun.OK {
		t.Errorf("rollback dry run as kaar-planner: %+v", s.DryRun)
	}

	h.deployment("crash", "busybox:1.37", 1, map[string]string{sandbox.AnnotationCrashExitCode: "1"}, "64Mi")
	failing = h.waitPods("crash", "CrashLoopBackOff", nil)
	inc = h.incident(h.getDeployment("crash"), events.IssueCrashLoopBackOff, "exit_code_1", failing)
	h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, ""))
	p := h.proposed(inc.ID)
	if s := step(t, p, events.ActionRolloutRestart); s.DryRun == nil || !s.DryRun.OK {
		t.Errorf("restart dry run as kaar-planner: %+v", s.DryRun)
	}
	for _, e := range p.Evidence {
		for _, l := range e.Lines {
			if strings.Contains(strings.ToLower(l), "forbidden") {
				t.Errorf("evidence %s: %s", e.Kind, l)
			}
		}
	}
}

// Evicted pods get a bounded delete and an impossible CPU request gets a
// smaller one, both accepted by the API server in dry runs and healing
// when applied; a missing ConfigMap gets a diagnostic-only plan.
func TestEvictedPendingAndConfigErrorPlans(t *testing.T) {
	h := newHarness(t, true)
	h.startPlanner(nil)

	t.Run("evicted", func(t *testing.T) {
		h.deployment("cache", "redis:7.4", 1, nil, "")
		h.waitAvailable("cache", 90*time.Second)
		victim := h.pods("cache")[0]
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"memory"}}}`, sandbox.AnnotationEvict)
		if _, err := h.kube.CoreV1().Pods(h.ns).Patch(h.ctx(10*time.Second), victim.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		evicted := h.waitPods("cache", "Error", func(p *corev1.Pod) bool { return isEvicted(p) })
		inc := h.incident(h.getDeployment("cache"), events.IssueEvicted, "evicted_memory", evicted)
		inc.Container = ""
		inc.ID = events.IncidentID(testCluster, h.ns, KindDeployment, "cache", "", events.IssueEvicted)
		h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, ""))
		s := step(t, h.proposed(inc.ID), events.ActionDeleteEvictedPods)
		if s.Params["pods"] != victim.Name || s.Params["uids"] != string(victim.UID) || s.DryRun == nil || !s.DryRun.OK {
			t.Fatalf("step %s", mustJSON(s))
		}
		// Apply it as the executor would: delete with the UID precondition.
		uid := types.UID(s.Params["uids"])
		if err := h.kube.CoreV1().Pods(h.ns).Delete(h.ctx(10*time.Second), s.Params["pods"], metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil {
			t.Fatal(err)
		}
		h.waitAvailable("cache", 90*time.Second)
	})

	t.Run("pending", func(t *testing.T) {
		h.deployment("analytics", "analytics:5", 1, nil, "")
		patch := []byte(`[{"op":"replace","path":"/spec/template/spec/containers/0/resources/requests/cpu","value":"64"}]`)
		if _, err := h.kube.AppsV1().Deployments(h.ns).Patch(h.ctx(10*time.Second), "analytics", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		pending := h.waitPods("analytics", "Pending", func(p *corev1.Pod) bool {
			return p.Spec.Containers[0].Resources.Requests.Cpu().String() == "64" && len(p.Status.Conditions) > 0
		})
		inc := h.incident(h.getDeployment("analytics"), events.IssuePending, "insufficient_cpu", pending)
		h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, ""))
		p := h.proposed(inc.ID)
		// The real scheduler's message, counted: every node without
		// another test's taint refused the pod for cpu.
		if n, total := countedStep(t, p.Steps, "have not enough free cpu for a pod's request of 64, more than any node can allocate (largest 16)"); n < 3 || n > total {
			t.Errorf("%d of %d nodes short of cpu, want the 3 default nodes at least: %q", n, total, titles(p.Steps))
		}
		s := step(t, p, events.ActionSetResourceRequests)
		if s.Params["cpu"] != "8" || s.DryRun == nil || !s.DryRun.OK {
			t.Fatalf("step %s", mustJSON(s))
		}
		h.applyForReal(s)
		h.waitAvailable("analytics", 90*time.Second)
	})

	t.Run("missing configmap", func(t *testing.T) {
		h.deployment("notifier", "notifier:1", 1, nil, "", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "WEBHOOK_URL", ValueFrom: &corev1.EnvVarSource{
				ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: sandbox.MissingRefPrefix + "hooks"}, Key: "url"}}}}
		})
		failing := h.waitPods("notifier", "CreateContainerConfigError", nil)
		inc := h.incident(h.getDeployment("notifier"), events.IssueCreateContainerConfigError, "missing_configmap", failing)
		h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, ""))
		p := h.proposed(inc.ID)
		if !p.DiagnosticOnly || len(p.Steps) != 1 || !strings.Contains(p.Steps[0].Title, "configmap missing-hooks") ||
			!strings.Contains(p.Steps[0].Title, "container app env WEBHOOK_URL") {
			t.Errorf("plan %s", mustJSON(p))
		}
	})
}

// asLeastPrivilegedPlanner makes the harness's planner read the cluster
// as the sandbox's kaar-planner user, bound to RBACRules only (a
// ClusterRole and binding of this test's own, removed when it ends), and
// waits until the API server's authorizer has seen them.
func (h *harness) asLeastPrivilegedPlanner(t *testing.T) {
	t.Helper()
	ctx := h.ctx(time.Minute)
	name := "kaar-planner-" + h.ns
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: RBACRules()}
	if _, err := h.kube.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "kaar-planner"}}}
	if _, err := h.kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := h.ctx(30 * time.Second)
		_ = h.kube.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{})
		_ = h.kube.RbacV1().ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{})
	})
	rc, err := sandbox.ForTest(t).RESTConfigFor("kaar-planner")
	if err != nil {
		t.Fatal(err)
	}
	h.plannerKube = kubernetes.NewForConfigOrDie(rc)
	// The role and its binding reach the authorizer together or not at
	// all for this user: one read the role allows shows both arrived.
	eventually(t, 30*time.Second, "the planner's role to take effect", func() (bool, string) {
		_, err := h.plannerKube.AppsV1().Deployments(h.ns).List(ctx, metav1.ListOptions{})
		return err == nil, fmt.Sprint(err)
	})
}
