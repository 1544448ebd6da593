package planner

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// On the sandbox, as the planner's least-privilege role: a MemoryNearLimit
// warning asked for gets the limit raise, accepted by the API server in a
// dry run and healthy when applied; warnings on a PodDisruptionBudget, a
// ResourceQuota and a LimitRange get diagnostic plans with what the
// planner read of them (nothing forbidden).
func TestWarningPlansOnTheSandbox(t *testing.T) {
	t.Parallel()
	h := newHarness(t, true)
	h.asLeastPrivilegedPlanner(t)
	h.startPlanner(nil)
	ctx := h.ctx(3 * time.Minute)

	h.deployment("leaky", "redis:7.4", 1, nil, "256Mi")
	h.waitAvailable("leaky", 90*time.Second)
	dep := h.getDeployment("leaky")
	pods := h.pods("leaky")
	warn := h.incident(dep, events.IssueMemoryNearLimit, "projected_oom", pods)
	warn.Message = "container app: memory working set 230Mi of its 256Mi limit, growing 4Mi an hour"
	warn.Warning = &events.WarningEvidence{Forecast: &events.Forecast{Metric: "memory_working_set", Unit: events.UnitBytes,
		Current: 230 << 20, Limit: 256 << 20, SlopePerHour: 4 << 20, CrossesAt: time.Now().UTC().Add(6 * time.Hour).Truncate(time.Second),
		Confidence: 0.95, WindowSeconds: 7200, Samples: 24}}

	pdb, err := h.kube.PolicyV1().PodDisruptionBudgets(h.ns).Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "leaky"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: new(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "leaky"}}}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	quota, err := h.kube.CoreV1().ResourceQuotas(h.ns).Create(ctx, &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "compute"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceRequestsMemory: resource.MustParse("4Gi")}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lr, err := h.kube.CoreV1().LimitRanges(h.ns).Create(ctx, &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "defaults"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
			Default: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")}}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	policyWarning := func(kind, name, uid string, typ events.IssueType, reason string) events.Incident {
		owner := events.ObjectRef{Kind: kind, Namespace: h.ns, Name: name, UID: uid}
		in := events.Incident{ID: events.IncidentID(testCluster, h.ns, kind, name, "", typ), Cluster: testCluster, Namespace: h.ns,
			Owner: owner, Type: typ, Reason: reason, Message: strings.ToLower(kind) + " " + name + " needs a look",
			FirstSeen: time.Now().UTC().Add(-time.Hour).Truncate(time.Second), LastSeen: time.Now().UTC().Truncate(time.Second), Count: 1,
			Severity: typ.DefaultSeverity()}
		if err := in.Validate(); err != nil {
			t.Fatal(err)
		}
		return in
	}
	pdbWarn := policyWarning(KindPodDisruptionBudget, pdb.Name, string(pdb.UID), events.IssuePDBBlocksDrain, "zero_disruptions_allowed")
	quotaWarn := policyWarning(KindResourceQuota, quota.Name, string(quota.UID), events.IssueQuotaNearLimit, "near_limit")
	lrWarn := policyWarning(KindLimitRange, lr.Name, string(lr.UID), events.IssueLimitRangeExceedsQuota, "default_exceeds_quota")
	h.startFakeWatcher(warn, pdbWarn, quotaWarn, lrWarn)

	resp, err := h.requestPlan(events.PlanRequest{Namespace: h.ns, Kind: "deployment", Name: "leaky", IssueType: events.IssueMemoryNearLimit})
	if err != nil {
		t.Fatalf("plan MemoryNearLimit: %v", err)
	}
	s := step(t, resp.Plan, events.ActionSetMemoryLimit)
	if s.Params[events.ParamMemory] != "392Mi" || s.DryRun == nil || !s.DryRun.OK {
		t.Fatalf("memory step %s", mustJSON(s))
	}
	checkGuard(t, s, dep.Generation)
	h.applyForReal(s)
	h.waitAvailable("leaky", 90*time.Second)
	for _, pod := range h.pods("leaky") {
		if q := pod.Spec.Containers[0].Resources.Limits.Memory(); q.String() != "392Mi" {
			t.Errorf("pod %s limit %s", pod.Name, q)
		}
	}

	for _, c := range []struct {
		in       events.Incident
		kind     string
		evidence string
	}{
		{pdbWarn, "poddisruptionbudget", "minAvailable 1"},
		{quotaWarn, "resourcequota", "requests.memory: used"},
		{lrWarn, "limitrange", "Container default limit memory: 8Gi"},
	} {
		// Without an issue type: the object has a warning and no failure.
		resp, err := h.requestPlan(events.PlanRequest{Namespace: h.ns, Kind: c.kind, Name: c.in.Owner.Name})
		if err != nil {
			t.Fatalf("plan %s: %v", c.in.Type, err)
		}
		p := resp.Plan
		if !p.DiagnosticOnly || p.Target.Kind != c.in.Owner.Kind || p.TargetResourceVersion == "" {
			t.Errorf("%s plan %s", c.in.Type, mustJSON(p))
		}
		all := mustJSON(p.Evidence)
		if !strings.Contains(all, c.evidence) || strings.Contains(strings.ToLower(all), "forbidden") {
			t.Errorf("%s evidence lacks %q or was forbidden: %s", c.in.Type, c.evidence, all)
		}
	}
}
