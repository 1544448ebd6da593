package mcpgateway

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/mark3labs/mcp-go/mcp"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// person answers the confirmation dialogs an MCP client shows its user.
type person struct {
	mu       sync.Mutex
	answer   *sdk.ElicitResult
	messages []string
}

func (p *person) handler(_ context.Context, r *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.messages = append(p.messages, r.Params.Message)
	return p.answer, nil
}

func (p *person) asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.messages...)
}

// newestProtocol is the newest protocol version mcp-go serves; the go-sdk
// client asks for it when it is given no version.
var newestProtocol = mcp.LATEST_PROTOCOL_VERSION

func TestApprovalIsConfirmedByThePersonThroughElicitation(t *testing.T) {
	for _, pv := range []string{"", "2025-11-25", "2025-06-18"} {
		name := pv
		if name == "" {
			name = "newest"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, withTokens)
			alice := &person{answer: &sdk.ElicitResult{Action: "accept", Content: map[string]any{"approve": true}}}
			cs, err := e.sdkConnect(&sdk.ClientOptions{ElicitationHandler: alice.handler}, approverToken, pv)
			if err != nil {
				t.Fatal(err)
			}
			want := pv
			if want == "" {
				want = newestProtocol
			}
			if got := cs.InitializeResult().ProtocolVersion; got != want {
				t.Errorf("negotiated %s, want %s", got, want)
			}
			p := e.storePlan(testPlan("shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)

			d := structured[DecisionOut](t, callTool(t, e.ctx, cs, "approve_remediation_plan", map[string]any{"plan_id": p.ID, "digest": p.Digest}))
			if d.Decision != "approved" || d.Via != "mcp-elicitation" || d.DecidedBy != "alice" {
				t.Errorf("decision = %+v", d)
			}
			asked := alice.asked()
			if len(asked) != 1 {
				t.Fatalf("the person was asked %d times, want once", len(asked))
			}
			for _, w := range []string{p.ID, p.Summary, "Risk: medium", "rollout undo", "Expires: " + p.ExpiresAt.UTC().Format(time.RFC3339), "Digest: " + p.Digest} {
				if !strings.Contains(asked[0], w) {
					t.Errorf("confirmation lacks %q:\n%s", w, asked[0])
				}
			}
			pub := e.publishedDecisions(p.ID)
			if len(pub) != 1 || pub[0].Via != events.ViaMCPElicitation || pub[0].DecidedBy != "alice" || pub[0].Digest != p.Digest {
				t.Errorf("published %+v", pub)
			}
			if got := testutil.ToFloat64(e.gw.metrics.decisions.WithLabelValues("approved", "mcp-elicitation")); got != 1 {
				t.Errorf("approvals metric = %v", got)
			}
		})
	}
}

func TestDeclinedConfirmationPublishesNothing(t *testing.T) {
	for _, answer := range []*sdk.ElicitResult{
		{Action: "decline"},
		{Action: "cancel"},
		{Action: "accept", Content: map[string]any{"approve": false}},
	} {
		t.Run(answer.Action, func(t *testing.T) {
			e := newEnv(t)
			bob := &person{answer: answer}
			cs := e.sdkSession(&sdk.ClientOptions{ElicitationHandler: bob.handler})
			p := e.storePlan(testPlan("shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
			res := callTool(t, e.ctx, cs, "approve_remediation_plan", map[string]any{"plan_id": p.ID, "digest": p.Digest})
			txt := resultText(res)
			if !res.IsError || !strings.Contains(txt, "nothing was approved or published") {
				t.Errorf("declined approval: %s", txt)
			}
			if len(bob.asked()) != 1 {
				t.Errorf("asked %d times", len(bob.asked()))
			}
			if n := len(e.approvalMsgs(p.ID)); n != 0 {
				t.Errorf("a declined approval published %d messages", n)
			}
			if got := testutil.ToFloat64(e.gw.metrics.toolCalls.WithLabelValues("approve_remediation_plan", outcomeDeclined)); got != 1 {
				t.Errorf("declined outcome = %v", got)
			}
		})
	}
}

// An assistant whose client cannot ask its user decides nothing by
// default (mcp.approval.without_elicitation: refuse): the refusal tells
// the model what its person can do, never another endpoint to call.
func TestClientsWithoutElicitationFollowThePolicy(t *testing.T) {
	t.Run("refuse", func(t *testing.T) {
		e := newEnv(t)          // the default
		cs := e.sdkSession(nil) // no elicitation handler: no capability
		p := e.storePlan(testPlan("shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
		res := callTool(t, e.ctx, cs, "approve_remediation_plan", map[string]any{"plan_id": p.ID, "digest": p.Digest})
		txt := resultText(res)
		for _, w := range []string{"cannot ask its user", "kaar plans approve " + p.ID, "Slack", "approver token of their own", "elicitation", p.Digest} {
			if !res.IsError || !strings.Contains(txt, w) {
				t.Errorf("refused approval lacks %q: %s", w, txt)
			}
		}
		for _, never := range []string{"/mcp/v1", "POST", "invoke"} {
			if strings.Contains(txt, never) {
				t.Errorf("the refusal points the model at %q: %s", never, txt)
			}
		}
		// A rejection is a decision too.
		res = callTool(t, e.ctx, cs, "reject_remediation_plan", map[string]any{"plan_id": p.ID})
		if txt := resultText(res); !res.IsError || !strings.Contains(txt, "kaar plans reject "+p.ID) {
			t.Errorf("refused rejection: %s", txt)
		}
		if n := len(e.approvalMsgs(p.ID)); n != 0 {
			t.Errorf("refused decisions published %d messages", n)
		}
		if got := testutil.ToFloat64(e.gw.metrics.toolCalls.WithLabelValues("approve_remediation_plan", outcomeForbidden)); got != 1 {
			t.Errorf("forbidden outcome = %v", got)
		}
		// REST without tokens on loopback acts for a person (approver).
		d := restResult[DecisionOut](t, e.rest("POST", "/mcp/v1/invoke/approve_remediation_plan", `{"plan_id":"`+p.ID+`","digest":"`+p.Digest+`"}`))
		if d.Via != "rest" || d.DecidedBy != AnonymousRESTUser {
			t.Errorf("REST approval = %+v", d)
		}
	})
	t.Run("accept", func(t *testing.T) {
		e := newEnv(t, acceptWithoutElicitation)
		cs := e.sdkSession(nil)
		p := e.storePlan(testPlan("shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
		d := structured[DecisionOut](t, callTool(t, e.ctx, cs, "approve_remediation_plan", map[string]any{"plan_id": p.ID, "digest": p.Digest}))
		if d.Via != "mcp" {
			t.Errorf("decision = %+v", d)
		}
		if pub := e.publishedDecisions(p.ID); len(pub) != 1 || pub[0].Via != events.ViaMCP {
			t.Errorf("published %+v", pub)
		}
	})
}

func TestProtocolVersionsNegotiate(t *testing.T) {
	e := newEnv(t)
	for _, pv := range []string{"2025-03-26", "2025-06-18", "2025-11-25", newestProtocol} {
		cs, err := e.sdkConnect(nil, "", pv)
		if err != nil {
			t.Fatalf("%s: %v", pv, err)
		}
		if got := cs.InitializeResult().ProtocolVersion; got != pv {
			t.Errorf("asked %s, negotiated %s", pv, got)
		}
		out := structured[AnalyzeOut](t, callTool(t, e.ctx, cs, "analyze_cluster", map[string]any{"namespace": "shop"}))
		if out.Total != 2 {
			t.Errorf("%s: analyze = %+v", pv, out)
		}
	}
}

// A confirmation answered for one plan does not approve another: the
// request state binds the answer to the plan, the digest and the user.
func TestConfirmationStateIsBoundToThePlan(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC()
	a := testPlan("shop", "Deployment", "a", events.IssueCrashLoopBackOff, now, time.Hour)
	b := testPlan("shop", "Deployment", "b", events.IssueCrashLoopBackOff, now, time.Hour)
	yes := mcp.InputResponses{confirmID: mcp.NewElicitationInputResponse(mcp.ElicitationResult{
		ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionAccept, Content: map[string]any{"approve": true}}})}
	c := &call{via: events.ViaMCP, user: "alice", confirm: &confirmation{canElicit: true, responses: yes,
		state: e.gw.confirmState(a.ID, a.Digest, "alice")}}
	if via, err := e.gw.confirmApproval(c, a, a.Digest); err != nil || via != events.ViaMCPElicitation {
		t.Errorf("own plan: %s %v", via, err)
	}
	for _, tc := range []struct {
		name   string
		p      events.Plan
		digest string
		user   string
	}{{"other plan", b, b.Digest, "alice"}, {"other digest", a, b.Digest, "alice"}, {"other user", a, a.Digest, "mallory"}} {
		c.user = tc.user
		if _, err := e.gw.confirmApproval(c, tc.p, tc.digest); err == nil || !strings.Contains(err.Error(), "another plan") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
