package planner

import (
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// Warnings are not planned when the watcher announces them: the issue
// consumer acknowledges them (on a real embedded JetStream) while it
// plans a failure of the same Deployment. Asked through the plan
// endpoint, a MemoryNearLimit warning gets the limit raise, sealed with
// who asked; its resolution makes that plan obsolete.
func TestWarningsArePlannedOnlyOnRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t, false)
	dep := goldenDeploymentWithoutRequests()
	dep.Spec.Template.Spec.Containers[0].Resources = corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-7d9c-a", Namespace: "apps", UID: "pod-a", Labels: map[string]string{"app": "web"}},
		Spec: dep.Spec.Template.Spec}
	h.plannerKube = fake.NewClientset(dep, pod)
	_, reg := h.startPlanner(nil)

	owner := events.ObjectRef{Kind: KindDeployment, Namespace: "apps", Name: "web", UID: string(dep.UID), APIVersion: "apps/v1"}
	now := time.Now().UTC().Truncate(time.Second)
	incident := func(typ events.IssueType, reason string) events.Incident {
		return events.Incident{ID: events.IncidentID(testCluster, "apps", KindDeployment, "web", "app", typ), Cluster: testCluster, Namespace: "apps",
			Owner: owner, Container: "app", Type: typ, Reason: reason, Pods: []string{pod.Name}, PodCount: 1,
			FirstSeen: now.Add(-time.Hour), LastSeen: now, Count: 1, Severity: typ.DefaultSeverity()}
	}
	warn := incident(events.IssueMemoryNearLimit, "projected_oom")
	warn.Message = "container app: memory working set 230Mi of its 256Mi limit, growing 4Mi an hour"
	warn.Warning = &events.WarningEvidence{Forecast: &events.Forecast{Metric: "memory_working_set", Unit: events.UnitBytes,
		Current: 230 << 20, Limit: 256 << 20, SlopePerHour: 4 << 20, CrossesAt: now.Add(6 * time.Hour), Confidence: 0.95, WindowSeconds: 7200, Samples: 24}}
	if err := warn.Validate(); err != nil {
		t.Fatal(err)
	}
	// A failure of the same Deployment whose plan changes nothing even
	// in a dry run (the fake clientset applies dry runs for real).
	failure := incident(events.IssueNotReady, "readiness_probe_failed")

	// One at a time: a newer observation handled first would make the
	// older one skipped (observations.admit), not counted.
	h.waitHandled(h.publishIssue(events.TransitionDetected, warn, 1, ""))
	h.waitHandled(h.publishIssue(events.TransitionChanged, warn, 2, ""))
	h.waitHandled(h.publishIssue(events.TransitionDetected, failure, 1, ""))

	if got := h.plans(warn.ID); len(got) != 0 {
		t.Fatalf("the warning was planned on detection: %s", mustJSON(got))
	}
	if got := planCount(t, reg, events.IssueMemoryNearLimit, outcomeWarning); got != 2 {
		t.Errorf("kaar_planner_plans_total{type=MemoryNearLimit,outcome=%s} = %v, want 2", outcomeWarning, got)
	}
	// The control: this planner does plan what it is given, the failure
	// of the same Deployment.
	if p := h.proposed(failure.ID); p.Type != events.IssueNotReady {
		t.Fatalf("NotReady plan %s", mustJSON(p))
	}

	h.startFakeWatcher(failure, warn)
	resp, err := h.requestPlan(events.PlanRequest{Namespace: "apps", Kind: "deployment", Name: "web", IssueType: events.IssueMemoryNearLimit, RequestedBy: "alice"})
	if err != nil {
		t.Fatalf("plan request: %v", err)
	}
	p := resp.Plan
	if p.IncidentID != warn.ID || p.Type != events.IssueMemoryNearLimit || p.RequestedBy != "alice" || p.DiagnosticOnly || p.Validate() != nil {
		t.Fatalf("plan %s", mustJSON(p))
	}
	if st := step(t, p, events.ActionSetMemoryLimit); st.Params[events.ParamMemory] != "392Mi" || st.DryRun == nil || !st.DryRun.OK {
		t.Errorf("set_memory_limit step %s", mustJSON(st))
	}
	if got := h.proposed(warn.ID); got.ID != p.ID {
		t.Errorf("stored plan %s, answered %s", got.ID, p.ID)
	}

	h.waitHandled(h.publishIssue(events.TransitionResolved, warn, 3, ""))
	if got := h.plans(warn.ID); len(got) != 1 || got[0].State != events.PlanSuperseded {
		t.Errorf("after the warning resolved, its plans are %s; want the one plan superseded", mustJSON(got))
	}
}
