package mcpgateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// An assistant's token decides nothing on the model's call: not over MCP
// from a client that cannot ask its person, and never over REST, where
// nobody can be asked. The person's own token (approver) decides.
func TestAnAssistantCannotDecideWithoutItsPerson(t *testing.T) {
	e := newEnv(t, withTokens)
	p := e.storePlan(testPlan("shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
	claude, err := e.sdkConnect(nil, assistantToken, "")
	if err != nil {
		t.Fatal(err)
	}
	// The assistant may plan and follow.
	structured[PlanOut](t, callTool(t, e.ctx, claude, "generate_remediation_plan", map[string]any{
		"resource_type": "Deployment", "namespace": "shop", "resource_name": "payments-api"}))
	for _, tool := range []string{"approve_remediation_plan", "reject_remediation_plan"} {
		res := callTool(t, e.ctx, claude, tool, map[string]any{"plan_id": p.ID, "digest": p.Digest})
		if txt := resultText(res); !res.IsError || !strings.Contains(txt, `user "claude" has role assistant`) || strings.Contains(txt, "/mcp/v1") {
			t.Errorf("MCP %s by the assistant: %s", tool, txt)
		}
		r := e.restAs(assistantToken, "POST", "/mcp/v1/invoke/"+tool, `{"plan_id":"`+p.ID+`","digest":"`+p.Digest+`"}`)
		msg, _ := r.Body["error"].(string)
		if r.Status != http.StatusForbidden || r.Body["code"] != outcomeForbidden || !strings.Contains(msg, "REST cannot ask anyone") || !strings.Contains(msg, "kaar plans") {
			t.Errorf("REST %s by the assistant: %d %s", tool, r.Status, r.Raw)
		}
	}
	for _, tool := range []string{"pause_remediation", "resume_remediation"} {
		if r := e.restAs(assistantToken, "POST", "/mcp/v1/invoke/"+tool, `{"reason":"x"}`); r.Status != http.StatusForbidden || r.Body["required_role"] != "admin" {
			t.Errorf("%s by the assistant: %d %s", tool, r.Status, r.Raw)
		}
	}
	if n := len(e.approvalMsgs(p.ID)); n != 0 {
		t.Fatalf("the assistant's calls published %d decisions", n)
	}
	d := restResult[DecisionOut](t, e.restAs(approverToken, "POST", "/mcp/v1/invoke/approve_remediation_plan", `{"plan_id":"`+p.ID+`","digest":"`+p.Digest+`"}`))
	if d.DecidedBy != "alice" || d.Via != "rest" {
		t.Errorf("the person's approval = %+v", d)
	}
	// The person's token over MCP without elicitation decides directly,
	// whatever mcp.approval.without_elicitation says.
	q := e.storePlan(testPlan("shop", "Deployment", "other", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
	alice, err := e.sdkConnect(nil, approverToken, "")
	if err != nil {
		t.Fatal(err)
	}
	d = structured[DecisionOut](t, callTool(t, e.ctx, alice, "reject_remediation_plan", map[string]any{"plan_id": q.ID, "digest": q.Digest}))
	if d.DecidedBy != "alice" || d.Via != "mcp" {
		t.Errorf("the person's rejection over MCP = %+v", d)
	}
}

// With its person's confirmation an assistant approves and rejects; each
// answer counts for the decision it was asked for only.
func TestAnAssistantDecidesWithItsPersonsConfirmation(t *testing.T) {
	e := newEnv(t, withTokens)
	bob := &person{answer: &sdk.ElicitResult{Action: "accept", Content: map[string]any{"approve": true, "reject": true}}}
	cs, err := e.sdkConnect(&sdk.ClientOptions{ElicitationHandler: bob.handler}, assistantToken, "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	a := e.storePlan(testPlan("shop", "Deployment", "a", events.IssueCrashLoopBackOff, now, time.Hour), time.Hour)
	b := e.storePlan(testPlan("shop", "Deployment", "b", events.IssueCrashLoopBackOff, now, time.Hour), time.Hour)
	d := structured[DecisionOut](t, callTool(t, e.ctx, cs, "approve_remediation_plan", map[string]any{"plan_id": a.ID, "digest": a.Digest}))
	if d.Via != "mcp-elicitation" || d.DecidedBy != "claude" {
		t.Errorf("approval = %+v", d)
	}
	d = structured[DecisionOut](t, callTool(t, e.ctx, cs, "reject_remediation_plan", map[string]any{"plan_id": b.ID, "digest": b.Digest, "reason": "wrong fix"}))
	if d.Via != "mcp-elicitation" || d.Decision != "rejected" {
		t.Errorf("rejection = %+v", d)
	}
	asked := bob.asked()
	if len(asked) != 2 || !strings.Contains(asked[1], "Reject kaar remediation plan "+b.ID) || !strings.Contains(asked[1], b.Digest) {
		t.Errorf("asked %q", asked)
	}
	if pa, pb := e.publishedDecisions(a.ID), e.publishedDecisions(b.ID); len(pa) != 1 || len(pb) != 1 || pb[0].Decision != events.DecisionRejected || pb[0].Via != events.ViaMCPElicitation {
		t.Errorf("published %+v %+v", pa, pb)
	}

	// The answer to "approve?" is not one to "reject?".
	yes := mcp.InputResponses{confirmID: mcp.NewElicitationInputResponse(mcp.ElicitationResult{
		ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionAccept, Content: map[string]any{"approve": true, "reject": true}}})}
	yes[rejectConfirmID] = yes[confirmID]
	c := &call{via: events.ViaMCP, user: "claude", role: RoleAssistant, confirm: &confirmation{canElicit: true, responses: yes,
		state: e.gw.confirmState(a.ID, a.Digest, "claude")}}
	if via, err := e.gw.confirmDecision(c, a, a.Digest, events.DecisionApproved); err != nil || via != events.ViaMCPElicitation {
		t.Errorf("the approval's own confirmation: %s %v", via, err)
	}
	if _, err := e.gw.confirmDecision(c, a, a.Digest, events.DecisionRejected); !errors.Is(err, ErrNotConfirmed) {
		t.Errorf("an approval's confirmation used for a rejection: %v", err)
	}
	c.confirm.state = e.gw.confirmState(a.ID, a.Digest, "claude\x00rejected")
	if via, err := e.gw.confirmDecision(c, a, a.Digest, events.DecisionRejected); err != nil || via != events.ViaMCPElicitation {
		t.Errorf("the rejection's own confirmation: %s %v", via, err)
	}
	if _, err := e.gw.confirmDecision(c, a, a.Digest, events.DecisionApproved); !errors.Is(err, ErrNotConfirmed) {
		t.Errorf("a rejection's confirmation used for an approval: %v", err)
	}
}

// stdioSession serves the gateway over in-process pipes, as `kaar mcp
// --stdio` does, and connects the go-sdk client.
func stdioSession(t *testing.T, e *testEnv) *sdk.ClientSession {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(e.ctx)
	served := make(chan error, 1)
	go func() {
		served <- e.gw.ServeStdio(ctx, inR, outW)
		_ = outW.Close()
	}()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "stdio-test", Version: "1"}, nil).
		Connect(e.ctx, &sdk.IOTransport{Reader: outR, Writer: inW}, nil)
	if err != nil {
		t.Fatalf("connect over stdio: %v", err)
	}
	t.Cleanup(func() {
		_ = cs.Close()
		cancel()
		_ = inW.Close()
		<-served
	})
	return cs
}

// stdio acts as the configured identity: with mcp.stdio.role approver it
// decides, recorded as mcp.stdio.user.
func TestStdioActsAsTheConfiguredIdentity(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.StdioUser, c.StdioRole = "laptop-alice", RoleApprover })
	cs := stdioSession(t, e)
	p := e.storePlan(testPlan("shop", "Deployment", "stdio", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
	d := structured[DecisionOut](t, callTool(t, e.ctx, cs, "approve_remediation_plan", map[string]any{"plan_id": p.ID, "digest": p.Digest}))
	if d.DecidedBy != "laptop-alice" || d.Via != "mcp" {
		t.Errorf("stdio decision = %+v", d)
	}
	if pub := e.publishedDecisions(p.ID); len(pub) != 1 || pub[0].DecidedBy != "laptop-alice" {
		t.Errorf("published %+v", pub)
	}
	// Still not an admin.
	if res := callTool(t, e.ctx, cs, "pause_remediation", map[string]any{"reason": "x"}); !res.IsError {
		t.Errorf("an approver paused remediation over stdio: %s", resultText(res))
	}
}

// A Go program that drives MCPServer in process, without an identity,
// is an assistant: it plans, and does not decide or pause alone.
func TestInProcessClientsAreAssistants(t *testing.T) {
	e := newEnv(t)
	cl, err := client.NewInProcessClient(e.gw.MCPServer())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	if err := cl.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "in-process", Version: "1"}
	if _, err := cl.Initialize(e.ctx, init); err != nil {
		t.Fatal(err)
	}
	p := e.storePlan(testPlan("shop", "Deployment", "inproc", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
	for tool, args := range map[string]map[string]any{
		"approve_remediation_plan": {"plan_id": p.ID, "digest": p.Digest},
		"pause_remediation":        {"reason": "x"},
	} {
		req := mcp.CallToolRequest{}
		req.Params.Name, req.Params.Arguments = tool, args
		res, err := cl.CallTool(e.ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		txt := ""
		if len(res.Content) > 0 {
			txt = res.Content[0].(mcp.TextContent).Text
		}
		if !res.IsError || !strings.Contains(txt, "assistant") {
			t.Errorf("in-process %s: %s", tool, txt)
		}
	}
	if n := len(e.approvalMsgs(p.ID)); n != 0 {
		t.Errorf("in-process client published %d decisions", n)
	}
	if ps, err := bus.GetPause(e.ctx, e.js, testCluster); err == nil && ps.Paused {
		t.Errorf("in-process client paused remediation")
	}
}

// Separation of duties: with remediation.require_distinct_approver the
// identity that asked for a plan cannot approve it; someone else can.
func TestRequireDistinctApprover(t *testing.T) {
	e := newEnv(t, withTokens, func(c *Config) { c.RequireDistinctApprover = true })
	p := restResult[PlanOut](t, e.restAs(approverToken, "POST", "/mcp/v1/invoke/generate_remediation_plan",
		`{"resource_type":"deployment","namespace":"shop","resource_name":"payments-api"}`))
	stored, _, err := e.plans.Get(e.ctx, p.PlanID)
	if err != nil || stored.RequestedBy != "alice" {
		t.Fatalf("stored plan requested by %q (%v), want alice", stored.RequestedBy, err)
	}
	approve := `{"plan_id":"` + p.PlanID + `","digest":"` + p.Digest + `"}`
	r := e.restAs(approverToken, "POST", "/mcp/v1/invoke/approve_remediation_plan", approve)
	msg, _ := r.Body["error"].(string)
	if r.Status != http.StatusForbidden || !strings.Contains(msg, "require_distinct_approver") || !strings.Contains(msg, `"alice" asked for this plan`) {
		t.Errorf("approval by the requester: %d %s", r.Status, r.Raw)
	}
	if n := len(e.approvalMsgs(p.PlanID)); n != 0 {
		t.Fatalf("the requester's approval published %d decisions", n)
	}
	// Rejecting one's own plan is fine; here another person approves.
	d := restResult[DecisionOut](t, e.restAs(adminToken, "POST", "/mcp/v1/invoke/approve_remediation_plan", approve))
	if d.DecidedBy != "root" {
		t.Errorf("approval by another = %+v", d)
	}

	// Without the option the requester may approve.
	f := newEnv(t, withTokens)
	q := restResult[PlanOut](t, f.restAs(approverToken, "POST", "/mcp/v1/invoke/generate_remediation_plan",
		`{"resource_type":"deployment","namespace":"shop","resource_name":"payments-api"}`))
	restResult[DecisionOut](t, f.restAs(approverToken, "POST", "/mcp/v1/invoke/approve_remediation_plan", `{"plan_id":"`+q.PlanID+`","digest":"`+q.Digest+`"}`))
}
