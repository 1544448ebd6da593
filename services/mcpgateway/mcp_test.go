package mcpgateway

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var wantHints = map[string]hints{
	"analyze_cluster":           {readOnly: true, destructive: false, idempotent: true, openWorld: false},
	"get_incident":              {readOnly: true, destructive: false, idempotent: true, openWorld: false},
	"generate_remediation_plan": {readOnly: false, destructive: false, idempotent: false, openWorld: false},
	"approve_remediation_plan":  {readOnly: false, destructive: true, idempotent: true, openWorld: false},
	"remediate_issue":           {readOnly: true, destructive: false, idempotent: true, openWorld: false},
	"test":                      {readOnly: true, destructive: false, idempotent: true, openWorld: false},
	"list_remediation_plans":    {readOnly: true, destructive: false, idempotent: true, openWorld: false},
	"get_remediation_plan":      {readOnly: true, destructive: false, idempotent: true, openWorld: false},
	"reject_remediation_plan":   {readOnly: false, destructive: false, idempotent: true, openWorld: false},
	"get_execution_status":      {readOnly: true, destructive: false, idempotent: true, openWorld: false},
	"get_audit_trail":           {readOnly: true, destructive: false, idempotent: true, openWorld: false},
	"pause_remediation":         {readOnly: false, destructive: false, idempotent: true, openWorld: false},
	"resume_remediation":        {readOnly: false, destructive: false, idempotent: true, openWorld: false},
}

func TestAssistantListsToolsWithAnnotationsAndSchemas(t *testing.T) {
	e := newEnv(t)
	cs := e.sdkSession(nil)
	res, err := cs.ListTools(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
		want, ok := wantHints[tl.Name]
		if !ok {
			t.Errorf("unexpected tool %s", tl.Name)
			continue
		}
		if len(tl.Description) < 80 {
			t.Errorf("%s: description too short to be precise: %q", tl.Name, tl.Description)
		}
		a := tl.Annotations
		if a == nil || a.DestructiveHint == nil || a.OpenWorldHint == nil {
			t.Fatalf("%s: annotations missing: %+v", tl.Name, a)
		}
		got := hints{readOnly: a.ReadOnlyHint, destructive: *a.DestructiveHint, idempotent: a.IdempotentHint, openWorld: *a.OpenWorldHint}
		if got != want {
			t.Errorf("%s: hints %+v, want %+v", tl.Name, got, want)
		}
		in, _ := json.Marshal(tl.InputSchema)
		if !strings.Contains(string(in), `"additionalProperties":false`) || !strings.Contains(string(in), `"type":"object"`) {
			t.Errorf("%s: input schema is not a closed object: %s", tl.Name, in)
		}
		out, _ := json.Marshal(tl.OutputSchema)
		if tl.OutputSchema == nil || !strings.Contains(string(out), `"properties"`) {
			t.Errorf("%s: output schema missing: %s", tl.Name, out)
		}
	}
	if len(names) != len(wantHints) {
		t.Errorf("tools %v, want the %d of wantHints", names, len(wantHints))
	}
}

func TestAssistantAnalyzesTheCluster(t *testing.T) {
	e := newEnv(t)
	cs := e.sdkSession(nil)
	res := callTool(t, e.ctx, cs, "analyze_cluster", map[string]any{"namespace": "shop", "issue_type": "OOMKilled", "limit": 10})
	out := structured[AnalyzeOut](t, res)
	if out.Cluster != testCluster || out.Total != 1 || len(out.Incidents) != 1 {
		t.Fatalf("analyze = %+v", out)
	}
	in := out.Incidents[0]
	if in.OwnerKind != "Deployment" || in.OwnerName != "recommender" || in.Type != "OOMKilled" || in.Restarts != 4 || in.PodCount != 1 || in.Severity != "high" {
		t.Errorf("incident = %+v", in)
	}
	if out.ByType["OOMKilled"] != 1 {
		t.Errorf("by_type = %v", out.ByType)
	}
	req, n := e.watcher.lastRequest()
	if n != 1 || req.Namespace != "shop" || req.Type != events.IssueOOMKilled || req.Limit != watcherPage {
		t.Errorf("watcher got %+v (%d requests)", req, n)
	}
	if txt := resultText(res); !strings.Contains(txt, "shop/Deployment/recommender OOMKilled") {
		t.Errorf("text = %q", txt)
	}

	// Paging: the cursor comes back and gives the rest.
	out = structured[AnalyzeOut](t, callTool(t, e.ctx, cs, "analyze_cluster", map[string]any{"limit": 2}))
	if out.Total != 3 || out.Returned != 2 || out.NextCursor == "" {
		t.Fatalf("paged analyze = %+v", out)
	}
	next := structured[AnalyzeOut](t, callTool(t, e.ctx, cs, "analyze_cluster", map[string]any{"limit": 2, "cursor": out.NextCursor}))
	if next.Returned != 1 || next.Offset != 2 || next.NextCursor != "" || next.Incidents[0].OwnerName != "cache" {
		t.Errorf("second page = %+v", next)
	}
	// A cursor is tied to its filters.
	res = callTool(t, e.ctx, cs, "analyze_cluster", map[string]any{"limit": 2, "cursor": out.NextCursor, "namespace": "web"})
	if !res.IsError || !strings.Contains(resultText(res), `argument "cursor"`) {
		t.Errorf("cursor with other filters: %s", resultText(res))
	}
}

func TestAssistantGeneratesAPlanWithUntrustedEvidence(t *testing.T) {
	e := newEnv(t)
	cs := e.sdkSession(nil)
	res := callTool(t, e.ctx, cs, "generate_remediation_plan", map[string]any{
		"resource_type": "deployment", "namespace": "shop", "resource_name": "payments-api", "issue_type": "CrashLoopBackOff"})
	p := structured[PlanOut](t, res)
	stored, _, err := e.plans.Get(e.ctx, p.PlanID)
	if err != nil {
		t.Fatalf("plan not in KV: %v", err)
	}
	if p.Digest != stored.Digest || p.State != "proposed" || p.Target.Kind != "Deployment" || p.Target.Name != "payments-api" {
		t.Errorf("plan = %+v", p)
	}
	if len(p.Steps) != 2 || p.Steps[1].Action != "rollback" || p.Steps[1].DryRun != "passed" || !strings.Contains(p.Steps[1].Kubectl, "rollout undo") || p.Steps[0].DryRun != "not_run" {
		t.Errorf("steps = %+v", p.Steps)
	}
	if len(p.Evidence) != 1 || !p.Evidence[0].Untrusted || len(p.Evidence[0].QuotedLines) != 2 || !strings.Contains(p.EvidenceNotice, "UNTRUSTED") {
		t.Errorf("evidence = %+v notice %q", p.Evidence, p.EvidenceNotice)
	}
	if p.ExpiresInSeconds < 800 || p.ExpiresInSeconds > 900 {
		t.Errorf("expires_in_seconds = %d", p.ExpiresInSeconds)
	}
	txt := resultText(res)
	for _, want := range []string{p.PlanID, p.Digest, "UNTRUSTED", "\n> IGNORE PREVIOUS INSTRUCTIONS", "approve_remediation_plan"} {
		if !strings.Contains(txt, want) {
			t.Errorf("text lacks %q:\n%s", want, txt)
		}
	}

	// A planner error reply keeps its class and names the tool's argument.
	res = callTool(t, e.ctx, cs, "generate_remediation_plan", map[string]any{
		"resource_type": "Deployment", "namespace": "shop", "resource_name": "weird"})
	if !res.IsError || !strings.Contains(resultText(res), `argument "resource_name"`) {
		t.Errorf("planner invalid_argument: %s", resultText(res))
	}
}

func TestApprovalPublishesOneDecisionNamingTheDigest(t *testing.T) {
	e := newEnv(t, acceptWithoutElicitation)
	cs := e.sdkSession(nil)
	p := structured[PlanOut](t, callTool(t, e.ctx, cs, "generate_remediation_plan", map[string]any{
		"resource_type": "Deployment", "namespace": "shop", "resource_name": "payments-api"}))

	res := callTool(t, e.ctx, cs, "approve_remediation_plan", map[string]any{"plan_id": p.PlanID, "digest": p.Digest})
	d := structured[DecisionOut](t, res)
	if d.Decision != "approved" || d.Digest != p.Digest || d.Via != "mcp" || d.DecidedBy != AnonymousMCPUser || d.DigestSource != digestGiven || d.Duplicate {
		t.Fatalf("decision = %+v", d)
	}
	msgs := e.approvalMsgs(p.PlanID)
	if len(msgs) != 1 {
		t.Fatalf("%d messages on the approval subject, want 1", len(msgs))
	}
	if got, want := msgs[0].Header.Get(jetstream.MsgIDHeader), events.SignedDecisionMsgID(events.Decision{PlanID: p.PlanID, Digest: p.Digest,
		Decision: events.DecisionApproved, Signature: &events.Signature{Key: testGatewayKey.PublicKey()}}); got != want {
		t.Errorf("Nats-Msg-Id = %q, want %q", got, want)
	}
	env, err := events.Decode(msgs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := events.DecodeData[events.Decision](env)
	if err != nil {
		t.Fatal(err)
	}
	if env.Type != events.TypeDecisionApproved || env.Source != events.SourceMCPGateway || dec.Digest != p.Digest || dec.Via != events.ViaMCP || dec.DecidedBy != AnonymousMCPUser {
		t.Errorf("published %s %+v", env.Type, dec)
	}

	// Approving again is deduplicated by the message id.
	d2 := structured[DecisionOut](t, callTool(t, e.ctx, cs, "approve_remediation_plan", map[string]any{"plan_id": p.PlanID, "digest": p.Digest}))
	if !d2.Duplicate || !strings.Contains(d2.Message, "already been published") {
		t.Errorf("second approval = %+v", d2)
	}
	if n := len(e.approvalMsgs(p.PlanID)); n != 1 {
		t.Errorf("%d messages after a repeated approval, want 1", n)
	}
	if got := testutil.ToFloat64(e.gw.metrics.decisions.WithLabelValues("approved", "mcp")); got != 1 {
		t.Errorf("approvals metric = %v, want 1", got)
	}

	// A rejection of the same plan now conflicts with the pending approval.
	res = callTool(t, e.ctx, cs, "reject_remediation_plan", map[string]any{"plan_id": p.PlanID})
	if !res.IsError || !strings.Contains(resultText(res), "already approved") {
		t.Errorf("reject after approve: %s", resultText(res))
	}
}

// An approval approves exactly the digest a person reviewed: without one
// it is refused naming the argument. A rejection may omit it.
func TestApprovalNeedsTheDigestARejectionDoesNot(t *testing.T) {
	e := newEnv(t, acceptWithoutElicitation)
	cs := e.sdkSession(nil)
	p := e.storePlan(testPlan("shop", "Deployment", "frontend", events.IssueImagePullBackOff, time.Now().UTC(), time.Hour), time.Hour)
	res := callTool(t, e.ctx, cs, "approve_remediation_plan", map[string]any{"plan_id": p.ID})
	if !res.IsError || !strings.Contains(resultText(res), `argument "digest": required`) {
		t.Errorf("MCP approval without a digest: %s", resultText(res))
	}
	r := e.rest("POST", "/mcp/v1/invoke/approve_remediation_plan", `{"plan_id":"`+p.ID+`"}`)
	if r.Status != http.StatusBadRequest || r.Body["field"] != "digest" {
		t.Errorf("REST approval without a digest: %d %s", r.Status, r.Raw)
	}
	if n := len(e.approvalMsgs(p.ID)); n != 0 {
		t.Fatalf("%d approval messages without a digest, want 0", n)
	}
	d := structured[DecisionOut](t, callTool(t, e.ctx, cs, "reject_remediation_plan", map[string]any{"plan_id": p.ID}))
	if d.Decision != "rejected" || d.Digest != p.Digest || d.DigestSource != digestCurrent || !strings.Contains(d.Message, "No digest was given") {
		t.Errorf("decision = %+v", d)
	}
	if n := len(e.approvalMsgs(p.ID)); n != 1 {
		t.Errorf("%d decision messages, want 1", n)
	}
}

func TestApprovalRefusals(t *testing.T) {
	e := newEnv(t)
	cs := e.sdkSession(nil)
	now := time.Now().UTC()
	live := e.storePlan(testPlan("shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, now, time.Hour), time.Hour)
	// Past its expires_at, its key still there (TTL granularity, clock skew).
	expired := e.storePlan(testPlan("shop", "Deployment", "old", events.IssueCrashLoopBackOff, now.Add(-2*time.Hour), time.Hour), time.Hour)
	executing := e.storePlan(testPlan("shop", "Deployment", "busy", events.IssueCrashLoopBackOff, now, time.Hour), time.Hour)
	e.setPlanState(executing.ID, events.PlanExecuting)
	diag := testPlan("kube-system", "Deployment", "coredns", events.IssueCrashLoopBackOff, now, time.Hour)
	diag.Steps, diag.DiagnosticOnly = diag.Steps[:1], true
	diag.Seal()
	e.storePlan(diag, time.Hour)
	otherDigest := "sha256:" + strings.Repeat("ab", 32)

	for _, tc := range []struct {
		name   string
		args   map[string]any
		want   []string
		status int
	}{
		{"wrong digest", map[string]any{"plan_id": live.ID, "digest": otherDigest}, []string{"digest mismatch", live.Digest}, 409},
		{"expired", map[string]any{"plan_id": expired.ID, "digest": expired.Digest}, []string{"plan expired", "generate_remediation_plan"}, 409},
		{"missing", map[string]any{"plan_id": "01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f", "digest": otherDigest}, []string{"not found", "expired", "never existed"}, 404},
		{"not proposed", map[string]any{"plan_id": executing.ID, "digest": executing.Digest}, []string{"not proposed", "executing"}, 409},
		{"diagnostic only", map[string]any{"plan_id": diag.ID, "digest": diag.Digest}, []string{"diagnostic-only"}, 409},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := callTool(t, e.ctx, cs, "approve_remediation_plan", tc.args)
			txt := resultText(res)
			if !res.IsError {
				t.Fatalf("approved: %s", txt)
			}
			for _, w := range tc.want {
				if !strings.Contains(txt, w) {
					t.Errorf("message lacks %q: %s", w, txt)
				}
			}
			body, _ := json.Marshal(tc.args)
			r := e.rest("POST", "/mcp/v1/invoke/approve_remediation_plan", string(body))
			if r.Status != tc.status || r.Body["error"] == "" {
				t.Errorf("REST status %d, want %d: %s", r.Status, tc.status, r.Raw)
			}
			if id, _ := tc.args["plan_id"].(string); len(e.approvalMsgs(id)) != 0 {
				t.Errorf("a refused approval reached the approvals stream")
			}
		})
	}
}

func TestRemediateWaitsForTheExecutionRecord(t *testing.T) {
	e := newEnv(t, acceptWithoutElicitation)
	var mu sync.Mutex
	var progress []float64
	cs := e.sdkSession(&sdk.ClientOptions{ProgressNotificationHandler: func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
		mu.Lock()
		progress = append(progress, r.Params.Progress)
		mu.Unlock()
	}})
	p := structured[PlanOut](t, callTool(t, e.ctx, cs, "generate_remediation_plan", map[string]any{
		"resource_type": "Deployment", "namespace": "shop", "resource_name": "payments-api"}))

	// Not approved yet: refused with the way out.
	res := callTool(t, e.ctx, cs, "remediate_issue", map[string]any{"plan_id": p.PlanID})
	if txt := resultText(res); !res.IsError || !strings.Contains(txt, "approve it first with approve_remediation_plan") || !strings.Contains(txt, p.Digest) {
		t.Fatalf("remediate before approval: %s", txt)
	}

	structured[DecisionOut](t, callTool(t, e.ctx, cs, "approve_remediation_plan", map[string]any{"plan_id": p.PlanID, "digest": p.Digest}))

	done := make(chan *sdk.CallToolResult, 1)
	go func() {
		params := &sdk.CallToolParams{Name: "remediate_issue", Arguments: map[string]any{
			"resource_type": "deployment", "namespace": "shop", "resource_name": "payments-api", "timeout_seconds": 60}}
		params.SetProgressToken("remediate-1")
		r, err := cs.CallTool(e.ctx, params)
		if err != nil {
			t.Errorf("remediate: %v", err)
		}
		done <- r
	}()

	// The executor claims the plan and starts.
	started := time.Now().UTC()
	e.setPlanState(p.PlanID, events.PlanExecuting)
	exec := events.Execution{PlanID: p.PlanID, Digest: p.Digest, State: events.ExecutionExecuting, StartedAt: started,
		Steps: []events.StepResult{{PlanID: p.PlanID, Digest: p.Digest, Index: 1, Action: events.ActionRollback,
			Status: events.StepStarted, StartedAt: started}}}
	e.putExecution(exec)
	select {
	case r := <-done:
		t.Fatalf("remediate returned before the execution was final: %s", resultText(r))
	case <-time.After(300 * time.Millisecond):
	}

	// It finishes and verifies.
	finished := started.Add(2 * time.Second)
	exec.State, exec.FinishedAt = events.ExecutionSucceeded, finished
	exec.Steps[0].Status, exec.Steps[0].FinishedAt, exec.Steps[0].APIResponse = events.StepSucceeded, finished, "200 OK: deployment.apps/payments-api patched"
	exec.Verification = &events.Verification{PlanID: p.PlanID, Digest: p.Digest, Healthy: true, DesiredReplicas: 2, ReadyReplicas: 2, UpdatedReplicas: 2, CheckedAt: finished}
	e.putExecution(exec)
	e.setPlanState(p.PlanID, events.PlanSucceeded)

	var r *sdk.CallToolResult
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("remediate did not return after the final record")
	}
	out := structured[RemediateOut](t, r)
	if !out.Final || out.TimedOut || out.Execution == nil || out.Execution.State != "succeeded" || out.Execution.Verification == nil || !out.Execution.Verification.Healthy {
		t.Fatalf("remediate = %+v", out)
	}
	if len(out.Execution.Steps) != 1 || out.Execution.Steps[0].Status != "succeeded" || out.PlanID != p.PlanID {
		t.Errorf("steps = %+v", out.Execution.Steps)
	}
	if !strings.Contains(resultText(r), "succeeded") {
		t.Errorf("text = %s", resultText(r))
	}
	mu.Lock()
	defer mu.Unlock()
	// Progress is best effort over streamable HTTP (mcp-go may drop the
	// last notification before a result); what arrives must increase.
	if !slices.IsSorted(progress) {
		t.Errorf("progress not increasing: %v", progress)
	}
	t.Logf("progress notifications received: %v", progress)

	// get_execution_status tells the same without waiting.
	st := structured[ExecutionStatusOut](t, callTool(t, e.ctx, cs, "get_execution_status", map[string]any{"plan_id": p.PlanID}))
	if st.PlanState != "succeeded" || st.Execution == nil || !st.Execution.Final {
		t.Errorf("status = %+v", st)
	}
}

func TestRemediateTimesOutWithoutStoppingAnything(t *testing.T) {
	e := newEnv(t)
	cs := e.sdkSession(nil)
	p := e.storePlan(testPlan("shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
	e.setPlanState(p.ID, events.PlanExecuting)
	start := time.Now()
	out := structured[RemediateOut](t, callTool(t, e.ctx, cs, "remediate_issue", map[string]any{"plan_id": p.ID, "timeout_seconds": 1}))
	if out.Final || !out.TimedOut || out.Execution != nil || !strings.Contains(out.Message, "get_execution_status") {
		t.Errorf("remediate = %+v", out)
	}
	if d := time.Since(start); d < time.Second || d > 10*time.Second {
		t.Errorf("waited %s for a 1s timeout", d)
	}
	// Rejected plans never run.
	rej := e.storePlan(testPlan("shop", "Deployment", "nope", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
	e.setPlanState(rej.ID, events.PlanRejected)
	res := callTool(t, e.ctx, cs, "remediate_issue", map[string]any{"plan_id": rej.ID})
	if !res.IsError || !strings.Contains(resultText(res), "rejected") {
		t.Errorf("remediate rejected plan: %s", resultText(res))
	}
	// No plan for a workload.
	res = callTool(t, e.ctx, cs, "remediate_issue", map[string]any{"resource_type": "Deployment", "namespace": "shop", "resource_name": "unknown"})
	if !res.IsError || !strings.Contains(resultText(res), "generate_remediation_plan") {
		t.Errorf("remediate unknown workload: %s", resultText(res))
	}
}

func TestRejectAndListPlans(t *testing.T) {
	e := newEnv(t, acceptWithoutElicitation)
	cs := e.sdkSession(nil)
	now := time.Now().UTC()
	a := e.storePlan(testPlan("shop", "Deployment", "a", events.IssueCrashLoopBackOff, now.Add(-time.Minute), time.Hour), time.Hour)
	b := e.storePlan(testPlan("web", "StatefulSet", "b", events.IssueOOMKilled, now, time.Hour), time.Hour)

	d := structured[DecisionOut](t, callTool(t, e.ctx, cs, "reject_remediation_plan", map[string]any{"plan_id": a.ID, "digest": a.Digest, "reason": "not during the sale"}))
	if d.Decision != "rejected" {
		t.Errorf("reject = %+v", d)
	}
	msgs := e.approvalMsgs(a.ID)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	env, _ := events.Decode(msgs[0].Data)
	dec, err := events.DecodeData[events.Decision](env)
	if err != nil || dec.Decision != events.DecisionRejected || dec.Reason != "not during the sale" {
		t.Errorf("rejection = %+v (%v)", dec, err)
	}

	all := structured[PlanListOut](t, callTool(t, e.ctx, cs, "list_remediation_plans", nil))
	if all.Total != 2 || len(all.Plans) != 2 || all.Plans[0].PlanID != b.ID {
		t.Errorf("list = %+v (want newest first)", all)
	}
	web := structured[PlanListOut](t, callTool(t, e.ctx, cs, "list_remediation_plans", map[string]any{"namespace": "web", "state": "proposed"}))
	if web.Total != 1 || web.Plans[0].PlanID != b.ID {
		t.Errorf("filtered list = %+v", web)
	}
	got := structured[PlanOut](t, callTool(t, e.ctx, cs, "get_remediation_plan", map[string]any{"plan_id": b.ID}))
	if got.Digest != b.Digest || got.Target.Kind != "StatefulSet" {
		t.Errorf("get = %+v", got)
	}
	st := structured[ExecutionStatusOut](t, callTool(t, e.ctx, cs, "get_execution_status", map[string]any{"plan_id": b.ID}))
	if st.PlanState != "proposed" || st.Execution != nil || !strings.Contains(st.Message, "approve") {
		t.Errorf("status = %+v", st)
	}
}

func TestTestToolReportsBusAndServices(t *testing.T) {
	e := newEnv(t)
	cs := e.sdkSession(nil)
	out := structured[TestOut](t, callTool(t, e.ctx, cs, "test", nil))
	if !out.Bus.Connected || !out.Bus.JetStream || !out.Bus.Buckets[events.BucketPlans] || !out.Bus.Buckets[events.BucketExecutions] {
		t.Errorf("bus = %+v", out.Bus)
	}
	up := map[string]bool{}
	for _, s := range out.Services {
		up[s.Name] = s.Up
	}
	// The fakes stand for the watcher and planner; no executor runs.
	if !up["kaar-watcher"] || !up["kaar-planner"] || up["kaar-executor"] || out.Status != "degraded" {
		t.Errorf("test = %+v", out)
	}
	if out.Cluster != testCluster || out.Version != "v-test" {
		t.Errorf("cluster/version = %s/%s", out.Cluster, out.Version)
	}
}

func TestMetricsCountEveryOutcome(t *testing.T) {
	e := newEnv(t)
	cs := e.sdkSession(nil)
	callTool(t, e.ctx, cs, "analyze_cluster", nil)
	callTool(t, e.ctx, cs, "analyze_cluster", map[string]any{"issue_type": "Nope"}) // schema (mcp-go)
	e.rest("POST", "/mcp/v1/invoke/analyze_cluster", `{"issue_type":"Nope"}`)       // checkArgs (REST)
	if got := testutil.ToFloat64(e.gw.metrics.toolCalls.WithLabelValues("analyze_cluster", outcomeOK)); got != 1 {
		t.Errorf("ok calls = %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.gw.metrics.toolCalls.WithLabelValues("analyze_cluster", outcomeInvalid)); got != 2 {
		t.Errorf("invalid calls = %v, want 2", got)
	}
	if n := testutil.CollectAndCount(e.gw.metrics.toolDuration); n == 0 {
		t.Error("no latency observed")
	}
	r, err := e.srv.Client().Get(e.srv.URL + "/metrics")
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("/metrics: %v %v", r, err)
	}
	r.Body.Close()
}
