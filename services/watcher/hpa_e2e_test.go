package watcher

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// HorizontalPodAutoscalers on the sandbox, on real metrics: kwok
// simulates each container's usage (sandbox.kaar.dev/cpu-usage),
// metrics-server serves it as metrics.k8s.io and kube-controller-manager's
// HPA controller computes replica counts from it every 5 s
// (pkg/sandbox/README.md). No custom or external metrics adapter runs.
// Each test owns its namespace; a real planner on the same bus plans the
// failures, and plans the HPAAtMaxReplicas warning when asked.
//
// An HPA is created only once its target's pods have metrics: before
// that the controller says "no metrics returned from resource metrics
// API" (metric_unavailable) for 15 to 25 s, which the tests' 5 s grace
// would report (the default grace, 5m, does not).

// e2eHPAAtMaxAfter is the tests' watcher.hpa_at_max_after.
const e2eHPAAtMaxAfter = 10 * time.Second

// startHPAWatcher runs the test's watcher with short HPA graces and the
// warnings on, HPAAtMaxReplicas only (a zero Config has them off; every
// other warning type is turned off so that the tests' Deployments,
// without probes or limits, raise none).
func (h *harness) startHPAWatcher(t *testing.T) {
	t.Helper()
	h.startHPAWatcherWithGrace(t, e2eHPAGrace)
}

// e2eHPAControlGrace is the HPA grace of the controls of HPAs that
// compute: even when its target's pods have metrics, the controller may
// say metric_unavailable for a while after an HPA is created (seen for 8
// s under a loaded CI machine, after pod metrics were served). That
// start-up transient is what the grace exists for (the default is 5m);
// a control watches with a grace longer than it, and still reports a
// condition that holds, as a misread one would.
const e2eHPAControlGrace = 30 * time.Second

// startHPAWatcherWithGrace is startHPAWatcher with watcher.hpa_grace
// grace.
func (h *harness) startHPAWatcherWithGrace(t *testing.T, grace time.Duration) {
	t.Helper()
	if _, err := h.admin.Discovery().ServerResourcesForGroupVersion("metrics.k8s.io/v1beta1"); err != nil {
		t.Fatalf("this sandbox does not serve metrics.k8s.io/v1beta1 (%v): it predates metrics-server; restart it (kaar-sandbox down, then up)", err)
	}
	h.configure = func(c *Config) {
		c.HPAs = HPAOptions{Grace: grace, AtMaxAfter: e2eHPAAtMaxAfter}
		c.Warnings = WarningOptions{Enabled: true}
		for _, typ := range events.TypesOf(events.ClassWarning) {
			if typ != events.IssueHPAAtMaxReplicas {
				c.Warnings.Config.Disabled = append(c.Warnings.Config.Disabled, string(typ))
			}
		}
	}
	h.startWatcher(t)
}

// cpuUtilization is a Resource metric: average cpu at pct% of the request.
func cpuUtilization(pct int32) autoscalingv2.MetricSpec {
	return autoscalingv2.MetricSpec{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
		Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &pct}}}
}

// createHPAOn creates HPA name scaling Deployment target on metric m;
// downNow drops the 5-minute scale-down stabilization window (a drop of
// load counts at once).
func (h *harness) createHPAOn(t *testing.T, name, target string, minReplicas, maxReplicas int32, m autoscalingv2.MetricSpec, downNow bool) {
	t.Helper()
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: target},
			MinReplicas:    &minReplicas, MaxReplicas: maxReplicas, Metrics: []autoscalingv2.MetricSpec{m}}}
	if downNow {
		hpa.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{
			ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: new(int32(0))}}
	}
	if _, err := h.admin.AutoscalingV2().HorizontalPodAutoscalers(h.ns).Create(ctx30(t), hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// requestingCPU is the app container requesting cpu.
func requestingCPU(cpu string) corev1.Container {
	return corev1.Container{Name: "app", Image: "nginx:1.27", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}
}

// waitPodMetrics waits until the metrics API serves n pods of app.
func (h *harness) waitPodMetrics(t *testing.T, app string, n int) {
	t.Helper()
	waitFor(t, 2*time.Minute, fmt.Sprintf("metrics of %d pods of %s", n, app), func() (bool, string) {
		b, err := h.admin.Discovery().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/namespaces", h.ns, "pods").
			Param("labelSelector", "app="+app).DoRaw(ctx30(t))
		if err != nil {
			return false, err.Error()
		}
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(b, &list); err != nil {
			return false, err.Error()
		}
		return len(list.Items) >= n, fmt.Sprintf("%d pods with metrics", len(list.Items))
	})
}

// waitHPA waits until HPA name satisfies cond.
func (h *harness) waitHPA(t *testing.T, name, what string, cond func(*autoscalingv2.HorizontalPodAutoscaler) bool) {
	t.Helper()
	waitFor(t, 2*time.Minute, "HPA "+name+" "+what, func() (bool, string) {
		o, err := h.admin.AutoscalingV2().HorizontalPodAutoscalers(h.ns).Get(ctx30(t), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return cond(o), fmt.Sprintf("replicas %d/%d, conditions %+v", o.Status.CurrentReplicas, o.Status.DesiredReplicas, o.Status.Conditions)
	})
}

// hasStep fails unless a step title of p contains each of want.
func hasStep(t *testing.T, p events.Plan, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.ContainsFunc(p.Steps, func(s events.Step) bool { return strings.Contains(s.Title, w) }) {
			t.Errorf("plan of %s/%s: no step says %q; steps: %s", p.Target.Kind, p.Target.Name, w, stepTitles(p))
		}
	}
}

// checkHPAIncident checks an HPA incident's owner, reason, severity and
// the words of its cause.
func checkHPAIncident(t *testing.T, in events.Incident, name, reason string, sev events.Severity, cause ...string) {
	t.Helper()
	if in.Owner.Kind != kindHPA || in.Owner.Name != name || in.Owner.APIVersion != "autoscaling/v2" || in.Reason != reason || in.Severity != sev {
		t.Errorf("incident of HPA %s: owner %+v, reason %s, severity %s; want the HorizontalPodAutoscaler, %s, %s", name, in.Owner, in.Reason, in.Severity, reason, sev)
	}
	for _, c := range cause {
		if !strings.Contains(in.Message, c) {
			t.Errorf("incident of HPA %s: message %q lacks %q", name, in.Message, c)
		}
	}
}

// An HPA on cpu utilization whose target's container requests no cpu:
// with metrics-server up, the controller says which container lacks the
// request (missing_request). The plan is diagnostic and names the
// container; giving it a request resolves the incident.
func TestHPAOfATargetWithoutACPURequestIsMissingRequestUntilItHasOne(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startHPAWatcher(t)
	store := h.startPlanner(t)
	h.create(t, testDeployment("web", 1, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}))
	h.waitPodMetrics(t, "web", 1)
	h.createHPAOn(t, "web", "web", 1, 3, cpuUtilization(50), false)

	// The controller may first say it "did not receive metrics for
	// targeted pods (pods might be unready)" (metric_unavailable: it
	// counts a pod as unready for cpu while its metrics predate its
	// readiness), then names the missing request: the incident says what
	// the controller says, and comes to missing_request.
	id := h.incidentID(kindHPA, "web", events.IssueHPAMetricsUnavailable)
	got := h.waitIncident(t, 2*time.Minute, id, "reason missing_request", func(in events.Incident) bool { return in.Reason == "missing_request" })
	in := got.event.Incident
	checkHPAIncident(t, in, "web", "missing_request", events.SeverityMedium,
		"horizontalpodautoscaler web cannot compute the replica count of deployment/web since", "(FailedGetResourceMetric)",
		"failed to get cpu utilization: missing request for cpu in container app of Pod web-", "it keeps 1 replica")
	// The plan of the reason now (one made for the first reason is
	// superseded by it): diagnostic, on the HPA, naming the container.
	var p events.Plan
	waitFor(t, time.Minute, "a proposed plan naming the missing request", func() (bool, string) {
		plans, err := store.List(ctx30(t))
		if err != nil {
			return false, err.Error()
		}
		for _, sp := range plans {
			if sp.Plan.IncidentID == id && sp.Plan.State == events.PlanProposed && slices.ContainsFunc(sp.Plan.Steps,
				func(s events.Step) bool {
					return strings.Contains(s.Title, "In deployment/web, container app has no cpu request")
				}) {
				p = sp.Plan
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d plans", len(plans))
	})
	if p.Type != events.IssueHPAMetricsUnavailable || p.Target.Kind != kindHPA || p.Target.Name != "web" || !p.DiagnosticOnly ||
		slices.ContainsFunc(p.Steps, func(s events.Step) bool { return s.Mutating }) {
		t.Errorf("plan %s of %s on %s/%s, diagnostic_only %t, steps %s; want a diagnostic plan on the HPA", p.ID, p.Type, p.Target.Kind, p.Target.Name, p.DiagnosticOnly, stepActions(p))
	}
	if slices.ContainsFunc(p.Steps, func(s events.Step) bool { return strings.Contains(s.Title, "metrics API it reads is not served") }) {
		t.Errorf("plan blames the metrics API, which is served: %s", stepTitles(p))
	}

	// The fix a person makes: a cpu request (new pods; the HPA computes
	// once they have metrics).
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"app","resources":{"requests":{"cpu":"100m"}}}]}}}}`)
	if _, err := h.admin.AppsV1().Deployments(h.ns).Patch(ctx30(t), "web", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "the incident resolved after the fix", func() (bool, string) {
		all := h.events(t)
		return slices.ContainsFunc(all, func(r received) bool {
			return r.event.Incident.ID == id && r.event.Transition == events.TransitionResolved && r.event.Observation > got.event.Observation
		}), summary(all)
	})
}

// An HPA whose target uses 250% of its cpu request, against a 50%
// target, wants more replicas than its maxReplicas 2 (ScalingLimited
// TooManyReplicas): past watcher.hpa_at_max_after it is the warning
// HPAAtMaxReplicas, with the replicas as its measurement. Warnings are
// planned only when someone asks: none on detection, a diagnostic plan
// from the planner's plan endpoint. The load dropping to the target
// resolves it, and the plan asked for is superseded.
func TestHPAWantingMoreThanItsMaximumIsAtMaxReplicasUntilTheLoadDrops(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startHPAWatcher(t)
	store := h.startPlanner(t)
	h.create(t, testDeployment("busy", 1, map[string]string{sandbox.AnnotationCPUUsage: "250m"}, requestingCPU("100m")))
	h.waitPodMetrics(t, "busy", 1)
	created := time.Now()
	h.createHPAOn(t, "busy", "busy", 1, 2, cpuUtilization(50), true)

	id := h.incidentID(kindHPA, "busy", events.IssueHPAAtMaxReplicas)
	det := h.waitEvent(t, 3*time.Minute, id, events.TransitionDetected)
	// The controller says TooManyReplicas at its first sync (the scale-up
	// rate allows 5, above the maximum); its condition's time is in whole
	// seconds, so the grace may end up to a second early.
	if since := time.Since(created); since < e2eHPAAtMaxAfter-time.Second {
		t.Errorf("detected %s after the HPA was created, before watcher.hpa_at_max_after (%s)", since, e2eHPAAtMaxAfter)
	}
	// At detection or at the next sync the controller has scaled to 2.
	in := h.waitIncident(t, time.Minute, id, "2 replicas", func(in events.Incident) bool { return in.PodCount == 2 }).event.Incident
	if in.Type != events.IssueHPAAtMaxReplicas || in.Type.Class() != events.ClassWarning {
		t.Errorf("type %s of class %s", in.Type, in.Type.Class())
	}
	checkHPAIncident(t, in, "busy", "at_max_replicas", events.SeverityWarning,
		"horizontalpodautoscaler busy has wanted more than its maxReplicas 2 for deployment/busy since", "(TooManyReplicas)",
		"the desired replica count is more than the maximum replica count", "deployment/busy runs 2 replicas")
	if w := in.Warning; w == nil || !slices.ContainsFunc(w.Measurements, func(m events.Measurement) bool {
		return m.Name == "current_replicas" && m.Value == 2 && m.Limit == 2 && m.Unit == events.UnitCount
	}) {
		t.Errorf("warning evidence %+v, want the measurement current_replicas 2 of 2", in.Warning)
	}

	// Not planned on detection (nor on its changes).
	time.Sleep(DefaultDebounce + e2eTiming.GroupInterval)
	if plans, err := store.List(ctx30(t)); err != nil {
		t.Fatal(err)
	} else if i := slices.IndexFunc(plans, func(p bus.StoredPlan) bool { return p.Plan.IncidentID == id }); i >= 0 {
		t.Errorf("the warning was planned on detection (%s at %s): %+v", det.event.Transition, det.event.Incident.LastSeen, plans[i].Plan)
	}
	// A person asks for it, as the MCP gateway and the CLI do.
	asked := h.askPlan(t, events.PlanRequest{Namespace: h.ns, Kind: kindHPA, Name: "busy", IssueType: events.IssueHPAAtMaxReplicas, RequestedBy: "alice"})
	if asked.IncidentID != id || asked.RequestedBy != "alice" {
		t.Errorf("plan asked for: incident %s, requested by %q; want %s, alice", asked.IncidentID, asked.RequestedBy, id)
	}
	p := wantPlan(t, store, id, events.IssueHPAAtMaxReplicas, kindHPA, "busy", diagnostic)
	if p.ID != asked.ID {
		t.Errorf("stored plan %s, answered %s", p.ID, asked.ID)
	}
	hasStep(t, p, "has wanted more than its maxReplicas 2", "raise maxReplicas of")

	// The load drops to the target on the running pods: 50m of 100m.
	pods, err := h.admin.CoreV1().Pods(h.ns).List(ctx30(t), metav1.ListOptions{LabelSelector: "app=busy"})
	if err != nil {
		t.Fatal(err)
	}
	for _, pod := range pods.Items {
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"50m"}}}`, sandbox.AnnotationCPUUsage)
		if _, err := h.admin.CoreV1().Pods(h.ns).Patch(ctx30(t), pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	h.waitEvent(t, 3*time.Minute, id, events.TransitionResolved)
	waitFor(t, time.Minute, "the plan asked for to be superseded", func() (bool, string) {
		got, _, err := store.Get(ctx30(t), asked.ID)
		if err != nil {
			return false, err.Error()
		}
		return got.State == events.PlanSuperseded, string(got.State)
	})
}

// askPlan asks the planner's plan endpoint for a plan, as a person does
// through the MCP gateway or the CLI.
func (h *harness) askPlan(t *testing.T, req events.PlanRequest) events.Plan {
	t.Helper()
	subject, err := events.ServiceSubject(testCluster, events.ServicePlanner, events.VerbPlan)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := h.nc.Request(subject, body, time.Minute)
	if err != nil {
		t.Fatalf("plan request: %v", err)
	}
	resp, err := events.DecodeReply[events.PlanResponse](msg.Data, msg.Header.Get(events.HeaderError))
	if err != nil {
		t.Fatalf("plan request %+v: %v", req, err)
	}
	return resp.Plan
}

// HPAs that cannot compute their replica count for want of what serves
// or names their metric: an External and a Pods metric with no adapter
// to serve them (metrics_api_unavailable), a ContainerResource metric of
// a container the pods lack (metric_unavailable), and a target that does
// not exist (invalid_target). Each is a diagnostic plan naming the
// cause; creating the missing target resolves its incident.
func TestHPAsOnMetricsNobodyServesOrAMissingTargetAreMetricsUnavailable(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startHPAWatcher(t)
	store := h.startPlanner(t)
	for _, name := range []string{"queue", "rps", "sidecar"} {
		h.create(t, testDeployment(name, 1, nil, requestingCPU("100m")))
	}
	// Without pod metrics the controller says "no metrics returned" of a
	// ContainerResource metric too: wait for them to see what it says of
	// the container.
	h.waitPodMetrics(t, "sidecar", 1)
	averageValue := func(q string) autoscalingv2.MetricTarget {
		return autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: new(resource.MustParse(q))}
	}
	h.createHPAOn(t, "queue", "queue", 1, 3, autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType,
		External: &autoscalingv2.ExternalMetricSource{Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth"}, Target: averageValue("30")}}, false)
	h.createHPAOn(t, "rps", "rps", 1, 3, autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType,
		Pods: &autoscalingv2.PodsMetricSource{Metric: autoscalingv2.MetricIdentifier{Name: "requests_per_second"}, Target: averageValue("10")}}, false)
	h.createHPAOn(t, "sidecar", "sidecar", 1, 3, autoscalingv2.MetricSpec{Type: autoscalingv2.ContainerResourceMetricSourceType,
		ContainerResource: &autoscalingv2.ContainerResourceMetricSource{Name: corev1.ResourceCPU, Container: "sidecar", Target: averageValue("100m")}}, false)
	h.createHPAOn(t, "gone", "gone", 1, 3, autoscalingv2.MetricSpec{Type: autoscalingv2.ResourceMetricSourceType,
		Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceMemory, Target: averageValue("100Mi")}}, false)

	for _, c := range []struct {
		name, reason string
		cause        []string
		step         string
	}{
		{"queue", "metrics_api_unavailable", []string{"cannot compute the replica count of deployment/queue", "(FailedGetExternalMetric)",
			"unable to get external metric", "queue_depth", "unable to fetch metrics from external metrics API"},
			"The metrics API it reads is not served"},
		{"rps", "metrics_api_unavailable", []string{"cannot compute the replica count of deployment/rps", "(FailedGetPodsMetric)",
			"unable to get metric requests_per_second", "no custom metrics API (custom.metrics.k8s.io) registered"},
			"The metrics API it reads is not served"},
		{"sidecar", "metric_unavailable", []string{"cannot compute the replica count of deployment/sidecar", "(FailedGetContainerResourceMetric)",
			"did not receive metrics for targeted pods"},
			"A metric it scales on cannot be read"},
		{"gone", "invalid_target", []string{"cannot compute the replica count of deployment/gone", "(FailedGetScale)",
			"unable to get the target's current scale", "not found"},
			"Its target deployment/gone cannot be read or scaled"},
	} {
		id := h.incidentID(kindHPA, c.name, events.IssueHPAMetricsUnavailable)
		in := h.waitEvent(t, 2*time.Minute, id, events.TransitionDetected).event.Incident
		checkHPAIncident(t, in, c.name, c.reason, events.SeverityMedium, c.cause...)
		hasStep(t, wantPlan(t, store, id, events.IssueHPAMetricsUnavailable, kindHPA, c.name, diagnostic), c.step)
	}

	// The missing target created (it uses 10Mi, under the 100Mi target):
	// the HPA computes once its pod has metrics.
	h.create(t, testDeployment("gone", 1, nil, corev1.Container{Name: "app", Image: "nginx:1.27"}))
	h.waitEvent(t, 3*time.Minute, h.incidentID(kindHPA, "gone", events.IssueHPAMetricsUnavailable), events.TransitionResolved)
}

// Controls: HPAs that compute their replica count within their bounds
// are no incident, failure nor warning: one whose target requests cpu
// (the missing_request scenario with the request), one using its target
// utilization with room to grow (max 5), and one satisfied at exactly its
// maxReplicas (at the maximum, wanting no more).
func TestHPAsComputingTheirCountWithinTheirBoundsAreNoIncident(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.startHPAWatcherWithGrace(t, e2eHPAControlGrace)
	on := map[string]string{sandbox.AnnotationCPUUsage: "50m"} // 50% of the request: the target
	h.create(t, testDeployment("requests", 1, nil, requestingCPU("100m")))
	h.create(t, testDeployment("room", 2, on, requestingCPU("100m")))
	h.create(t, testDeployment("full", 2, on, requestingCPU("100m")))
	h.waitPodMetrics(t, "requests", 1)
	h.waitPodMetrics(t, "room", 2)
	h.waitPodMetrics(t, "full", 2)
	h.createHPAOn(t, "requests", "requests", 1, 3, cpuUtilization(50), false)
	h.createHPAOn(t, "room", "room", 1, 5, cpuUtilization(50), false)
	h.createHPAOn(t, "full", "full", 1, 2, cpuUtilization(50), false)
	for _, name := range []string{"requests", "room", "full"} {
		h.waitHPA(t, name, "computing its count within range", func(o *autoscalingv2.HorizontalPodAutoscaler) bool {
			a, l := hpaCondition(o, autoscalingv2.ScalingActive), hpaCondition(o, autoscalingv2.ScalingLimited)
			return a != nil && a.Status == corev1.ConditionTrue && a.Reason == "ValidMetricFound" && l != nil && l.Status == corev1.ConditionFalse
		})
	}
	time.Sleep(max(e2eHPAControlGrace, e2eHPAAtMaxAfter))
	quiet()
	if all := h.events(t); len(all) > 0 {
		t.Errorf("incidents of HPAs within their bounds: %s", summary(all))
	}
	for _, name := range []string{"room", "full"} {
		o, err := h.admin.AutoscalingV2().HorizontalPodAutoscalers(h.ns).Get(ctx30(t), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c := hpaCondition(o, autoscalingv2.ScalingLimited); o.Status.CurrentReplicas != 2 || c == nil || c.Status != corev1.ConditionFalse {
			t.Errorf("HPA %s: %d replicas, ScalingLimited %+v; want 2 and False (the control is no control otherwise)", name, o.Status.CurrentReplicas, c)
		}
	}
}
