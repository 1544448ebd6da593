package watcher

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

// trendOnly configures the trend warnings alone (the other families are
// tested on their own), with windows short enough for a test: a sample
// every 5 s (metrics-server refreshes every 10 s on the sandbox), a
// fit over the last minute, a 20-minute horizon.
func trendOnly(c *Config) {
	w := config.DefaultWarnings()
	for _, t := range events.TypesOf(events.ClassWarning) {
		if !slices.Contains(trendTypes, t) {
			w.Disabled = append(w.Disabled, string(t))
		}
	}
	w.UsageInterval = config.Duration{Duration: 5 * time.Second}
	w.MemoryWindow = config.Duration{Duration: time.Minute}
	w.MemoryHorizon = config.Duration{Duration: 20 * time.Minute}
	c.Warnings = WarningOptions{Enabled: true, Config: w}
}

// grantMetrics lets the test's kaar-watcher read the pod metrics of its
// namespace, as the chart's watcher role does (metrics.k8s.io pods: get,
// list).
func (h *harness) grantMetrics(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "kaar-watcher-metrics"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}}}
	if _, err := h.admin.RbacV1().Roles(h.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kaar-watcher-metrics"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kaar-watcher-metrics"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: "kaar-watcher"}}}
	if _, err := h.admin.RbacV1().RoleBindings(h.ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// memoryApp is a container app of image name limited to limit.
func memoryApp(name, limit string) corev1.Container {
	return corev1.Container{Name: "app", Image: "registry.example/" + name + ":1",
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(limit)}}}
}

// A pod whose memory grows toward its limit is warned about before it
// reaches it, with the projection; a steady one is not; a restarted
// watcher keeps the trend (no resolution, no second detection); the
// planner's raise, approved and executed, resolves the warning. (The
// sandbox's OOM kill follows memory-usage, not the growth, which stops
// at the limit: "before the OOM" is "before the working set reaches the
// limit".)
func TestMemoryGrowingTowardItsLimitIsWarnedBeforeItIsReached(t *testing.T) {
	if testing.Short() {
		t.Skip("sandbox test")
	}
	t.Parallel()
	h := newHarness(t)
	h.grantMetrics(t)
	h.configure = trendOnly
	const limit = 64 << 20
	// 20Mi growing 3Mi a minute: the 64Mi limit in about 15 minutes.
	leaky := testDeployment("leaky", 1, map[string]string{sandbox.AnnotationMemoryUsage: "20Mi", sandbox.AnnotationMemoryGrowth: "3Mi"},
		memoryApp("leaky", "64Mi"))
	steady := testDeployment("steady", 1, map[string]string{sandbox.AnnotationMemoryUsage: "40Mi"}, memoryApp("steady", "64Mi"))
	// Growing without a limit: nothing to run into.
	unlimited := testDeployment("unlimited", 1, map[string]string{sandbox.AnnotationMemoryUsage: "20Mi", sandbox.AnnotationMemoryGrowth: "6Mi"},
		corev1.Container{Name: "app", Image: "registry.example/unlimited:1"})
	stop, reg := h.startWatcher(t)
	h.create(t, leaky)
	h.create(t, steady)
	h.create(t, unlimited)
	created := time.Now()

	owner := events.ObjectRef{Kind: "Deployment", Namespace: h.ns, Name: "leaky"}
	id := events.IncidentID(testCluster, h.ns, owner.Kind, owner.Name, "app", events.IssueMemoryNearLimit)
	got := h.waitIncident(t, 4*time.Minute, id, "MemoryNearLimit of leaky/app", func(events.Incident) bool { return true })
	in := got.event.Incident
	t.Logf("warned %s after creation: %s", time.Since(created).Round(time.Second), in.Message)
	fc := in.Warning.Forecast
	switch {
	case got.event.Transition != events.TransitionDetected || in.Severity != events.SeverityWarning || in.Container != "app":
		t.Errorf("announcement %s severity %s container %q", got.event.Transition, in.Severity, in.Container)
	case fc == nil || fc.Limit != limit || fc.Current >= limit || !fc.CrossesAt.After(got.event.ObservedAt) || fc.SlopePerHour <= 0 || fc.Confidence < 0.8:
		t.Errorf("forecast %+v: want growth toward the 64Mi limit, not reached yet", fc)
	case in.Warning.Measurements[0].Value >= limit:
		t.Errorf("warned only at the limit: %+v", in.Warning.Measurements)
	}
	// 3Mi a minute is 180Mi an hour; the fit should say so within 10%.
	if fc != nil && (fc.SlopePerHour < 162<<20 || fc.SlopePerHour > 198<<20) {
		t.Errorf("slope %s/h, want about 180Mi/h", sizeText(fc.SlopePerHour))
	}
	if v := metricValueAny(t, reg, "kaar_watcher_usage_samples_total"); v < 4 {
		t.Errorf("%v samples taken", v)
	}

	// A restarted watcher keeps the trend.
	stop()
	h.startWatcher(t)
	quiet()
	all := h.events(t)
	if n := count(all, id, events.TransitionResolved); n != 0 {
		t.Fatalf("the restarted watcher resolved the warning: %s", summary(all))
	}
	detectedOnce(t, all, id)
	for _, r := range all {
		if r.event.Incident.Type == events.IssueMemoryNearLimit && r.event.Incident.Owner.Name != "leaky" {
			t.Errorf("warned about %s: %s", r.event.Incident.Owner.Name, r.event.Incident.Message)
		}
		if r.event.Incident.Type == events.IssueOOMKilled {
			t.Errorf("OOMKilled reported: %s", r.event.Incident.Message)
		}
	}

	// The fix, asked for (a warning is planned only on request): the
	// planner sizes the raise from the forecast (capped at
	// remediation.memory_factor, 2x: 128Mi), a person approves it, the
	// executor (the chart's rights on Deployments) applies and verifies
	// it. The new pod's growth reaches 128Mi in about 36 minutes, past
	// the 20-minute horizon: the warning resolves.
	h.grantExecutorDeployments(t)
	f := h.startFixPipeline(t)
	p := h.requestPlan(t, events.PlanRequest{Namespace: h.ns, Kind: "deployment", Name: "leaky", IssueType: events.IssueMemoryNearLimit, RequestedBy: "bob"})
	if p.DiagnosticOnly || len(p.Steps) != 1 || p.Steps[0].Action != events.ActionSetMemoryLimit || p.Steps[0].DryRun == nil || !p.Steps[0].DryRun.OK ||
		p.Steps[0].Params[events.ParamMemory] != "128Mi" || p.IncidentID != id {
		t.Fatalf("plan of the warning: want one set_memory_limit step to 128Mi, dry-run accepted; got diagnostic %t, steps %+v, notes %v", p.DiagnosticOnly, p.Steps, p.Notes)
	}
	f.approve(t, p)
	f.waitAudit(t, p.ID, events.AuditVerified, events.AuditRefused, events.AuditVerificationFailed)
	h.waitEvent(t, 3*time.Minute, id, events.TransitionResolved)
	quiet()
	all = h.events(t)
	if n := count(all, id, events.TransitionDetected); n != 1 {
		t.Errorf("detected %d times after the raise: %s", n, summary(all))
	}
}

// grantExecutorDeployments lets the test's kaar-executor patch
// Deployments, as the chart's executor role does (the raise of a memory
// limit).
func (h *harness) grantExecutorDeployments(t *testing.T) {
	t.Helper()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "kaar-executor-deployments"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"patch"}}}}
	if _, err := h.admin.RbacV1().Roles(h.ns).Create(ctx30(t), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kaar-executor-deployments"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "kaar-executor-deployments"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: "kaar-executor"}}}
	if _, err := h.admin.RbacV1().RoleBindings(h.ns).Create(ctx30(t), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// requestPlan asks the planner for a plan (generate_remediation_plan).
func (h *harness) requestPlan(t *testing.T, req events.PlanRequest) events.Plan {
	t.Helper()
	subject, _ := events.ServiceSubject(testCluster, events.ServicePlanner, events.VerbPlan)
	body, _ := json.Marshal(req)
	msg, err := h.nc.Request(subject, body, time.Minute)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	resp, err := events.DecodeReply[events.PlanResponse](msg.Data, msg.Header.Get(events.HeaderError))
	if err != nil {
		t.Fatalf("plan %+v: %v", req, err)
	}
	return resp.Plan
}

// metricValueAny is the value of a counter without labels.
func metricValueAny(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// A container killed and restarted by its liveness probe, running again
// (restartCount 3, never waiting in CrashLoopBackOff) is warned about as
// RecurringRestarts once it has recovered; a container in
// CrashLoopBackOff with as many restarts is the failure, not this
// warning. The metrics API is not
// granted here: MemoryNearLimit is off, the restarts still count.
func TestRecurringRestartsWithoutCrashLoopAreWarned(t *testing.T) {
	if testing.Short() {
		t.Skip("sandbox test")
	}
	t.Parallel()
	h := newHarness(t)
	// The liveness kills come at once here, not hours apart: the failure
	// (CrashLoopBackOff liveness_probe, until the container has run for
	// recovered_after) ends after 10 s instead of 10 minutes.
	h.configure = func(c *Config) {
		trendOnly(c)
		c.Classify = DefaultClassifyOptions()
		c.Classify.RecoveredAfter = 10 * time.Second
	}
	h.startWatcher(t)
	h.create(t, testDeployment("flaky", 1, map[string]string{sandbox.AnnotationLiveness: "fail"},
		corev1.Container{Name: "app", Image: "registry.example/flaky:1"}))
	h.create(t, testDeployment("crashy", 1, map[string]string{sandbox.AnnotationCrashExitCode: "1"},
		corev1.Container{Name: "app", Image: "registry.example/crashy:1"}))
	id := events.IncidentID(testCluster, h.ns, "Deployment", "flaky", "app", events.IssueRecurringRestarts)
	got := h.waitIncident(t, 2*time.Minute, id, "RecurringRestarts of flaky/app", func(events.Incident) bool { return true })
	in := got.event.Incident
	t.Logf("%s", in.Message)
	if m := in.Warning.Measurements; in.Reason != reasonRestartsRecurring || len(m) != 1 || m[0].Name != "restarts" || m[0].Value < 3 {
		t.Errorf("warning %s %+v", in.Reason, in.Warning)
	}
	// The warning follows the failure: first CrashLoopBackOff (the
	// restarts are recent), resolved once the container ran 10 s, then
	// the warning.
	failure := events.IncidentID(testCluster, h.ns, "Deployment", "flaky", "app", events.IssueCrashLoopBackOff)
	resolved := h.waitEvent(t, time.Minute, failure, events.TransitionResolved)
	// The failure ends when it is no longer observed; its resolution is
	// announced a resolve wait later.
	if ended := resolved.event.ObservedAt.Add(-e2eTiming.ResolveWait - time.Second); got.event.ObservedAt.Before(ended) {
		t.Errorf("warned at %s while the failure was open (resolved at %s)", got.event.ObservedAt, resolved.event.ObservedAt)
	}
	crashy := events.IncidentID(testCluster, h.ns, "Deployment", "crashy", "app", events.IssueCrashLoopBackOff)
	h.waitEvent(t, time.Minute, crashy, events.TransitionDetected) // the failure is there
	quiet()
	for _, r := range h.events(t) {
		if r.event.Incident.Type == events.IssueRecurringRestarts && r.event.Incident.Owner.Name != "flaky" {
			t.Errorf("RecurringRestarts of %s: %s", r.event.Incident.Owner.Name, r.event.Incident.Message)
		}
	}
}

// A Deployment one of whose pods stops being ready and recovers three
// times (ready replicas 2 of 3, then 3 again, the template unchanged: a
// readiness probe failing for a while, as the kubelet reports it) is
// warned about as ReadyReplicasDipping; one rolled out three times (new
// templates) is not: replicas missing during a rollout are expected.
//
// Each dip is held until the Deployment's status shows it: a dip shorter
// than the controllers' status updates (a deleted pod replaced at once
// on kwok) may never reach the Deployment's status under load, and so is
// no dip for anyone watching it.
func TestReadyReplicasDippingOutsideRollouts(t *testing.T) {
	if testing.Short() {
		t.Skip("sandbox test")
	}
	t.Parallel()
	h := newHarness(t)
	h.configure = trendOnly
	h.startWatcher(t)
	app := corev1.Container{Name: "app", Image: "registry.example/web:1"}
	h.create(t, testDeployment("dippy", 3, nil, app))
	h.create(t, testDeployment("rolled", 3, nil, app))
	h.waitRolledOut(t, "dippy", 3)
	h.waitRolledOut(t, "rolled", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// readyOf is name's ready replicas, -1 while it does not have 3 or,
	// unless dipping, is not available.
	readyOf := func(name string, dipping bool) (int32, string) {
		d, err := h.admin.AppsV1().Deployments(h.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return -1, err.Error()
		}
		if !dipping && !sandbox.DeploymentAvailable(d) || d.Status.Replicas != 3 {
			return -1, fmt.Sprintf("%s %+v", name, d.Status)
		}
		return d.Status.ReadyReplicas, fmt.Sprintf("%s %+v", name, d.Status)
	}
	for i := range 3 {
		pods, err := h.admin.CoreV1().Pods(h.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=dippy"})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("pods of dippy: %v", err)
		}
		pod := pods.Items[0].Name
		h.setPodReady(t, pod, false)
		waitFor(t, 2*time.Minute, "dippy at 2 ready", func() (bool, string) {
			n, why := readyOf("dippy", true)
			return n == 2, why
		})
		h.setPodReady(t, pod, true)
		patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{"kaar.test/rev":"%d"}}}}}`, i)
		if _, err := h.admin.AppsV1().Deployments(h.ns).Patch(ctx, "rolled", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		// Each back to 3 ready before the next.
		waitFor(t, 2*time.Minute, "dippy and rolled ready again", func() (bool, string) {
			var why []string
			for _, name := range []string{"dippy", "rolled"} {
				if n, w := readyOf(name, false); n != 3 {
					why = append(why, w)
				}
			}
			return len(why) == 0, fmt.Sprint(why)
		})
	}
	id := events.IncidentID(testCluster, h.ns, "Deployment", "dippy", "", events.IssueReadyReplicasDipping)
	got := h.waitIncident(t, time.Minute, id, "ReadyReplicasDipping of dippy", func(events.Incident) bool { return true })
	in := got.event.Incident
	t.Logf("%s", in.Message)
	if m := in.Warning.Measurements; in.Reason != reasonReadyReplicasDipping || len(m) != 2 || m[0].Value != 3 || m[1].Limit != 3 {
		t.Errorf("warning %s %+v", in.Reason, in.Warning)
	}
	quiet()
	for _, r := range h.events(t) {
		if r.event.Incident.Type == events.IssueReadyReplicasDipping && r.event.Incident.Owner.Name != "dippy" {
			t.Errorf("ReadyReplicasDipping of %s: %s", r.event.Incident.Owner.Name, r.event.Incident.Message)
		}
	}
}

// setPodReady sets a Running pod's readiness as a kubelet does when its
// readiness probe starts or stops failing: the Ready and ContainersReady
// conditions and the containers' ready. kwok leaves a Running pod's
// status alone.
func (h *harness) setPodReady(t *testing.T, name string, ready bool) {
	t.Helper()
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := h.admin.CoreV1().Pods(h.ns).Get(ctx30(t), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		for i, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
				p.Status.Conditions[i].Status, p.Status.Conditions[i].LastTransitionTime = status, now
			}
		}
		for i := range p.Status.ContainerStatuses {
			p.Status.ContainerStatuses[i].Ready = ready
		}
		_, err = h.admin.CoreV1().Pods(h.ns).UpdateStatus(ctx30(t), p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("pod %s ready=%v: %v", name, ready, err)
	}
}
