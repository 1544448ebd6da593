package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kaar-dev/kaar/pkg/sandbox"
)

// caseStudy is the original server's case study: three broken Deployments,
// each rolled from a good revision.
var caseStudy = map[string]string{
	"payments-api": "CrashLoopBackOff",
	"recommender":  "OOMKilled",
	"frontend":     "ImagePullBackOff",
}

// applyCaseStudy installs the demo's case study (no extras) in ns.
func applyCaseStudy(t *testing.T, c *sandbox.Cluster, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := sandbox.ApplyDemo(ctx, c.Clientset(), sandbox.DemoOptions{Namespace: ns}, nil); err != nil {
		t.Fatalf("apply the case study: %v", err)
	}
}

// runCaseStudy is the user story end to end: analyze finds exactly the
// three broken workloads (one incident each), a plan for each, approve all
// three, remediate, and a follow-up analyze reports them resolved with the
// pods really Running.
func runCaseStudy(t *testing.T, c toolCaller, inst *instance) {
	t.Helper()
	start := time.Now()
	got := waitIncidents(t, c, inst.ns, 2*time.Minute, "the three case-study incidents", func(a analyzeOut) bool {
		return len(a.Incidents) >= len(caseStudy)
	})
	if got.Total != len(caseStudy) || len(got.Incidents) != len(caseStudy) {
		t.Fatalf("analyze found %d incidents (total %d), want exactly %d, one per broken workload: %+v", len(got.Incidents), got.Total, len(caseStudy), got.Incidents)
	}
	for _, in := range got.Incidents {
		want, ok := caseStudy[in.OwnerName]
		if !ok || in.OwnerKind != "Deployment" || in.Type != want || in.PodCount < 1 {
			t.Errorf("unexpected incident %+v (want one of %v, owned by its Deployment)", in, caseStudy)
		}
		if in.OwnerName == "payments-api" && in.PodCount < 2 {
			t.Errorf("payments-api rolls two crashing pods at once: want one incident with pod_count >= 2, got %+v", in)
		}
	}
	t.Logf("analyze: %d incidents after %s: %+v", len(got.Incidents), time.Since(start).Round(time.Millisecond), got.ByType)

	names := make([]string, 0, len(caseStudy))
	for n := range caseStudy {
		names = append(names, n)
	}
	sort.Strings(names)
	plans := map[string]planOut{}
	for _, name := range names {
		p := call[planOut](t, c, "generate_remediation_plan", map[string]any{
			"resource_type": "deployment", "namespace": inst.ns, "resource_name": name,
		})
		if p.PlanID == "" || !strings.HasPrefix(p.Digest, "sha256:") || p.State != "proposed" || p.DiagnosticOnly {
			t.Fatalf("plan for %s: %+v", name, p)
		}
		mutating := 0
		for _, s := range p.Steps {
			if s.Mutating {
				mutating++
				if s.DryRun != "passed" || s.Kubectl == "" {
					t.Errorf("plan for %s: mutating step %+v: want a passed server-side dry run and a kubectl equivalent", name, s)
				}
			}
		}
		if mutating == 0 {
			t.Fatalf("plan for %s has no mutating step: %+v", name, p.Steps)
		}
		t.Logf("plan for %s: %s (%d steps)", name, p.Summary, len(p.Steps))
		plans[name] = p
	}
	for _, name := range names {
		p := plans[name]
		d := call[decisionOut](t, c, "approve_remediation_plan", map[string]any{"plan_id": p.PlanID, "digest": p.Digest})
		if d.Decision != "approved" || d.Digest != p.Digest {
			t.Fatalf("approve %s: %+v", name, d)
		}
	}
	for _, name := range names {
		p := plans[name]
		r := call[remediateOut](t, c, "remediate_issue", map[string]any{"plan_id": p.PlanID})
		if r.Execution == nil || r.Execution.State != "succeeded" || r.Execution.Verification == nil || !r.Execution.Verification.Healthy {
			b, _ := json.Marshal(r)
			t.Fatalf("remediate %s: want a succeeded, verified execution; got %s", name, b)
		}
		waitPodsHealthy(t, inst.kube, inst.ns, name, time.Minute)
	}
	waitIncidents(t, c, inst.ns, 2*time.Minute, "every incident resolved", func(a analyzeOut) bool {
		return a.Total == 0 && len(a.Incidents) == 0
	})
	t.Logf("case study healed in %s", time.Since(start).Round(time.Millisecond))
}

func TestCaseStudyOverMCP(t *testing.T) {
	parallel(t)
	c := sandbox.ForTest(t)
	ns := sandbox.NewNamespace(t, c.Clientset())
	applyCaseStudy(t, c, ns)
	inst := startServe(t, c, ns, "")
	runCaseStudy(t, newMCPCaller(t, inst, ""), inst)
}

func TestCaseStudyOverREST(t *testing.T) {
	parallel(t)
	c := sandbox.ForTest(t)
	ns := sandbox.NewNamespace(t, c.Clientset())
	applyCaseStudy(t, c, ns)
	inst := startServe(t, c, ns, "")
	runCaseStudy(t, restCaller{base: inst.base}, inst)
}

// TestApprovalGuards: approving with a wrong digest is refused, approving
// twice executes once, a plan whose target changed since planning is
// refused as stale, and nothing of it touches the cluster.
func TestApprovalGuards(t *testing.T) {
	parallel(t)
	c := sandbox.ForTest(t)
	cs := c.Clientset()
	ns := sandbox.NewNamespace(t, cs)
	breakDeployment(t, cs, ns, "web")
	breakDeployment(t, cs, ns, "api")
	inst := startServe(t, c, ns, "")
	mc := newMCPCaller(t, inst, "")
	waitIncidents(t, mc, ns, 2*time.Minute, "two ImagePullBackOff incidents", func(a analyzeOut) bool { return a.ByType["ImagePullBackOff"] == 2 })

	// A wrong digest is refused, and the plan stays proposed.
	web := call[planOut](t, mc, "generate_remediation_plan", map[string]any{"resource_type": "deployment", "namespace": ns, "resource_name": "web"})
	genBefore := generation(t, cs, ns, "web")
	wrong := "sha256:" + strings.Repeat("0", 64)
	msg := callErr(t, mc, "approve_remediation_plan", map[string]any{"plan_id": web.PlanID, "digest": wrong})
	if !strings.Contains(msg, "digest") {
		t.Errorf("wrong digest refusal does not mention the digest: %s", msg)
	}
	if p := call[planOut](t, mc, "get_remediation_plan", map[string]any{"plan_id": web.PlanID}); p.State != "proposed" {
		t.Errorf("after a refused approval the plan is %s, want proposed", p.State)
	}
	if g := generation(t, cs, ns, "web"); g != genBefore {
		t.Errorf("a refused approval changed the Deployment: generation %d -> %d", genBefore, g)
	}

	// Approving twice (MCP and REST) executes once.
	rest := restCaller{base: inst.base}
	call[decisionOut](t, mc, "approve_remediation_plan", map[string]any{"plan_id": web.PlanID, "digest": web.Digest})
	_, _, err := rest.Call(context.Background(), "approve_remediation_plan", map[string]any{"plan_id": web.PlanID, "digest": web.Digest})
	if err != nil {
		t.Fatalf("second approval: %v", err)
	}
	r := call[remediateOut](t, mc, "remediate_issue", map[string]any{"plan_id": web.PlanID})
	if r.Execution == nil || r.Execution.State != "succeeded" {
		t.Fatalf("remediate web: %+v", r)
	}
	seen := map[int]int{}
	for _, s := range r.Execution.Steps {
		seen[s.Index]++
	}
	for i, n := range seen {
		if n != 1 {
			t.Errorf("step %d recorded %d times, want once", i, n)
		}
	}
	time.Sleep(2 * time.Second) // room for a wrongly redelivered second execution to show
	st := call[struct {
		Execution *executionOut `json:"execution"`
	}](t, mc, "get_execution_status", map[string]any{"plan_id": web.PlanID})
	if st.Execution == nil || st.Execution.State != "succeeded" || len(st.Execution.Steps) != len(r.Execution.Steps) {
		t.Errorf("after a second approval the execution changed: %+v", st.Execution)
	}

	// A target changed since planning: refused as stale, never applied.
	api := call[planOut](t, mc, "generate_remediation_plan", map[string]any{"resource_type": "deployment", "namespace": ns, "resource_name": "api"})
	patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"e2e/touched":"yes"}}}}}`)
	if _, err := cs.AppsV1().Deployments(ns).Patch(context.Background(), "api", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	genChanged := generation(t, cs, ns, "api")
	// The planner may already have superseded the plan after the change;
	// approving the plan the person saw must not run either way.
	_, toolErr, err := mc.Call(context.Background(), "approve_remediation_plan", map[string]any{"plan_id": api.PlanID, "digest": api.Digest})
	if err != nil {
		t.Fatal(err)
	}
	if toolErr == "" {
		r := call[remediateOut](t, mc, "remediate_issue", map[string]any{"plan_id": api.PlanID})
		if r.Execution == nil || r.Execution.State == "succeeded" || r.Execution.RefusalReason != "stale" {
			b, _ := json.Marshal(r)
			t.Fatalf("a plan whose target changed ran or was not refused as stale: %s", b)
		}
	}
	dep, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Generation != genChanged || dep.Spec.Template.Spec.Containers[0].Image != "nginx:1.27-nonexistent" {
		t.Errorf("a stale plan touched the Deployment: generation %d (want %d), image %s", dep.Generation, genChanged, dep.Spec.Template.Spec.Containers[0].Image)
	}
}

// TestApprovalAfterExpiryIsRefused: with a 2s approval window, a plan
// approved after its window never runs.
func TestApprovalAfterExpiryIsRefused(t *testing.T) {
	parallel(t)
	c := sandbox.ForTest(t)
	cs := c.Clientset()
	ns := sandbox.NewNamespace(t, cs)
	breakDeployment(t, cs, ns, "web")
	inst := startServe(t, c, ns, "  approval_window: 2s")
	mc := newMCPCaller(t, inst, "")
	waitIncidents(t, mc, ns, 2*time.Minute, "the ImagePullBackOff incident", func(a analyzeOut) bool { return a.ByType["ImagePullBackOff"] == 1 })
	p := call[planOut](t, mc, "generate_remediation_plan", map[string]any{"resource_type": "deployment", "namespace": ns, "resource_name": "web"})
	gen := generation(t, cs, ns, "web")
	time.Sleep(time.Until(p.ExpiresAt) + 1500*time.Millisecond)
	msg := callErr(t, mc, "approve_remediation_plan", map[string]any{"plan_id": p.PlanID, "digest": p.Digest})
	if !strings.Contains(strings.ToLower(msg), "expire") && !strings.Contains(strings.ToLower(msg), "not found") {
		t.Errorf("refusal does not say the plan expired: %s", msg)
	}
	time.Sleep(2 * time.Second)
	if g := generation(t, cs, ns, "web"); g != gen {
		t.Errorf("an expired plan changed the Deployment: generation %d -> %d", gen, g)
	}
}

// TestBadArgumentsChangeNothing: every tool with bad arguments returns a
// clear error naming the argument (MCP isError, HTTP 400 JSON), and the
// cluster is unchanged.
func TestBadArgumentsChangeNothing(t *testing.T) {
	parallel(t)
	c := sandbox.ForTest(t)
	cs := c.Clientset()
	ns := sandbox.NewNamespace(t, cs)
	breakDeployment(t, cs, ns, "web")
	inst := startServe(t, c, ns, "")
	gen := generation(t, cs, ns, "web")
	bad := []struct {
		tool  string
		args  map[string]any
		names string // the argument the error must name
	}{
		{"analyze_cluster", map[string]any{"namespace": "Not_A_Namespace"}, "namespace"},
		{"analyze_cluster", map[string]any{"issue_type": "Exploded"}, "issue_type"},
		{"analyze_cluster", map[string]any{"limit": -4}, "limit"},
		{"generate_remediation_plan", map[string]any{"resource_type": "deployment", "namespace": ns}, "resource_name"},
		{"generate_remediation_plan", map[string]any{"resource_type": "spaceship", "namespace": ns, "resource_name": "web"}, "resource_type"},
		{"approve_remediation_plan", map[string]any{}, "plan_id"},
		{"approve_remediation_plan", map[string]any{"plan_id": "'; DROP TABLE plans; --"}, "plan_id"},
		{"approve_remediation_plan", map[string]any{"plan_id": "0190a000-0000-7000-8000-000000000000", "digest": "md5:abc"}, "digest"},
		{"remediate_issue", map[string]any{"plan_id": "x", "namespace": ns}, "plan_id"},
		{"remediate_issue", map[string]any{}, "resource_type"},
		{"reject_remediation_plan", map[string]any{"plan_id": 42}, "plan_id"},
		{"get_remediation_plan", map[string]any{"plan_id": "nope"}, "plan_id"},
		{"get_execution_status", map[string]any{}, "plan_id"},
		{"list_remediation_plans", map[string]any{"state": "dancing"}, "state"},
	}
	callers := map[string]toolCaller{"mcp": newMCPCaller(t, inst, ""), "rest": restCaller{base: inst.base}}
	for via, cl := range callers {
		for _, b := range bad {
			t.Run(fmt.Sprintf("%s/%s/%s", via, b.tool, b.names), func(t *testing.T) {
				msg := callErr(t, cl, b.tool, b.args)
				if !strings.Contains(msg, b.names) {
					t.Errorf("error does not name %q: %s", b.names, msg)
				}
				if via == "rest" && !strings.HasPrefix(msg, "HTTP 400") {
					t.Errorf("REST status for bad arguments: %s, want HTTP 400", msg)
				}
			})
		}
	}
	if g := generation(t, cs, ns, "web"); g != gen {
		t.Errorf("bad requests changed the Deployment: generation %d -> %d", gen, g)
	}
}
