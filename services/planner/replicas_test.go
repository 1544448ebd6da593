package planner

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Two planner replicas share the durable ISSUES consumer: the
// observations of one incident are spread over both and planned
// concurrently, and the incident still ends with exactly one proposed
// plan (every other one superseded by it), for each of two incidents.
func TestTwoPlannerReplicasProposeOnePlanPerIncident(t *testing.T) {
	h := newHarness(t, true)
	h.startPlanner(nil)
	h.startPlanner(nil)
	var incs []events.Incident
	for _, name := range []string{"alpha", "beta"} {
		h.deployment(name, "busybox:1.37", 1, map[string]string{sandbox.AnnotationCrashExitCode: "1"}, "64Mi")
	}
	for _, name := range []string{"alpha", "beta"} {
		failing := h.waitPods(name, "CrashLoopBackOff", nil)
		inc := h.incident(h.getDeployment(name), events.IssueCrashLoopBackOff, "exit_code_1", failing)
		inc.ID = events.IncidentID(testCluster, h.ns, KindDeployment, name, "app", events.IssueCrashLoopBackOff)
		incs = append(incs, inc)
	}
	var last uint64
	for obs := int64(1); obs <= 6; obs++ {
		for _, inc := range incs {
			inc.Count = obs
			tr := events.TransitionChanged
			if obs == 1 {
				tr = events.TransitionDetected
			}
			last = h.publishIssue(tr, inc, obs, "")
		}
	}
	h.waitHandled(last)
	for _, inc := range incs {
		p := h.proposed(inc.ID) // fails unless exactly one is proposed
		for _, other := range h.plans(inc.ID) {
			if other.ID != p.ID && (other.State != events.PlanSuperseded || other.SupersededBy != p.ID) {
				t.Errorf("incident %s: plan %s is %s (superseded by %q), want superseded by %s", inc.Owner.Name, other.ID, other.State, other.SupersededBy, p.ID)
			}
		}
		if s := step(t, p, events.ActionRolloutRestart); s.DryRun == nil || !s.DryRun.OK {
			t.Errorf("incident %s: restart dry run %+v", inc.Owner.Name, s.DryRun)
		}
	}
}

// A rollout that pins the pods to labels no node has leaves them Pending;
// the plan sets the node selector back to the last healthy revision's
// (after checking that nodes match it), the API server accepts it in a
// dry run, and applying it gets the pods scheduled and running.
func TestPendingNodeSelectorPlanHeals(t *testing.T) {
	h := newHarness(t, true)
	h.startPlanner(nil)
	h.deployment("search", "nginx:1.27", 1, nil, "128Mi", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
	})
	h.waitAvailable("search", 90*time.Second)
	patch := []byte(`[{"op":"replace","path":"/spec/template/spec/nodeSelector","value":{"kubernetes.io/os":"plan9"}}]`)
	if _, err := h.kube.AppsV1().Deployments(h.ns).Patch(h.ctx(10*time.Second), "search", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	pending := h.waitPods("search", "Pending", func(p *corev1.Pod) bool {
		return p.Spec.NodeSelector["kubernetes.io/os"] == "plan9" && len(p.Status.Conditions) > 0
	})
	inc := h.incident(h.getDeployment("search"), events.IssuePending, "node_selector_mismatch", pending)
	h.waitHandled(h.publishIssue(events.TransitionDetected, inc, 1, ""))
	p := h.proposed(inc.ID)
	s := step(t, p, events.ActionSetNodeSelector)
	if s.Params["kubernetes.io/os"] != "linux" || s.DryRun == nil || !s.DryRun.OK || p.DiagnosticOnly {
		t.Fatalf("plan %s", mustJSON(p))
	}
	checkGuard(t, s, h.getDeployment("search").Generation)
	h.applyForReal(s)
	h.waitAvailable("search", 90*time.Second)
	for _, pod := range h.pods("search") {
		if got := pod.Spec.NodeSelector["kubernetes.io/os"]; got != "linux" || pod.Spec.NodeName == "" {
			t.Errorf("pod %s: node selector %q, node %q", pod.Name, got, pod.Spec.NodeName)
		}
	}
	t.Logf("plan summary: %s", p.Summary)
}

// The interleaving two replicas can produce: replica B proposed its plan
// while replica A, which had listed the incident's plans before that,
// creates an older plan. converge, run by A after its create, leaves
// B's newer plan as the only proposed one.
func TestConvergeKeepsTheNewestProposedPlan(t *testing.T) {
	h := newHarness(t, false)
	s, _ := h.startPlanner(nil)
	cfg := testConfig(t)
	in := loadShop(t, "frontend").input(t, cfg, events.IssueImagePullBackOff, "app")
	out := finalize(draftPlan(in), acceptAll)
	now := time.Now().UTC().Truncate(time.Second)
	older := assemblePlan(uuid.Must(uuid.NewV7()).String(), now, cfg, in, out)
	newer := assemblePlan(uuid.Must(uuid.NewV7()).String(), now, cfg, in, out)
	testSigner.SignPlan(&older) // as the replicas' planner would
	testSigner.SignPlan(&newer)
	for _, p := range []events.Plan{newer, older} {
		if _, err := h.store.Create(h.ctx(10*time.Second), p, cfg.ApprovalWindow); err != nil {
			t.Fatal(err)
		}
	}
	res := proposal{Plan: older, Created: true}
	if err := s.converge(h.ctx(10*time.Second), &res); err != nil {
		t.Fatal(err)
	}
	if res.Plan.ID != newer.ID || res.Created || len(res.Superseded) != 1 || res.Superseded[0] != older.ID {
		t.Errorf("result: plan %s created %t superseded %v, want plan %s", res.Plan.ID, res.Created, res.Superseded, newer.ID)
	}
	if p := h.proposed(in.Incident.ID); p.ID != newer.ID {
		t.Errorf("proposed %s, want %s", p.ID, newer.ID)
	}
	got, _, err := h.store.Get(h.ctx(10*time.Second), older.ID)
	if err != nil || got.State != events.PlanSuperseded || got.SupersededBy != newer.ID {
		t.Errorf("older plan: state %s by %q err %v", got.State, got.SupersededBy, err)
	}
}
