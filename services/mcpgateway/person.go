package mcpgateway

import (
	"crypto/hmac"
	"fmt"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// A person, not the model, decides (DESIGN invariant 9). approve and
// reject are open to the assistant role, but a decision is published
// only when:
//   - the caller's role is approver or admin: the token is a person's
//     (over MCP, a client that can ask its user still asks: the person
//     confirms what the model proposes);
//   - the caller is an assistant and its person confirmed through MCP
//     elicitation (via mcp-elicitation);
//   - the caller is an assistant whose MCP client cannot ask, and
//     mcp.approval.without_elicitation is accept (via mcp).
// Over REST nobody can be asked, so an assistant never decides there.
// The refusals tell the model what its person can do, never another
// endpoint to call itself.

// rejectConfirmID keys the confirmation of a rejection.
const rejectConfirmID = "confirm_rejection"

// personCheck returns the channel to record for the decision, or why it
// may not be published.
func (s *Service) personCheck(c *call, p events.Plan, digest string, kind events.DecisionKind) (events.Via, error) {
	if c.role.allows(RoleApprover) {
		if kind == events.DecisionApproved && c.confirm != nil && c.confirm.canElicit {
			return s.confirmDecision(c, p, digest, kind)
		}
		return c.via, nil
	}
	if c.role != RoleAssistant {
		return "", &ForbiddenError{Tool: toolOf(kind), User: c.user, Has: c.role, Required: RoleAssistant}
	}
	return s.confirmDecision(c, p, digest, kind)
}

func toolOf(kind events.DecisionKind) string {
	if kind == events.DecisionRejected {
		return "reject_remediation_plan"
	}
	return "approve_remediation_plan"
}

func verbOf(kind events.DecisionKind) string {
	if kind == events.DecisionRejected {
		return "reject"
	}
	return "approve"
}

// personAdvice says what the person behind the assistant can do, for the
// model to pass on.
func personAdvice(p events.Plan, digest string, kind events.DecisionKind) string {
	verb := verbOf(kind)
	return fmt.Sprintf("Nothing was %s or published. Tell the user that plan %s (digest %s) waits for their decision and that they can %s it themselves: "+
		"in an MCP client that asks them to confirm (elicitation), with `kaar plans %s %s` on a machine with access to kaar's bus, with the buttons of kaar's Slack message, "+
		"or with an approver token of their own. Do not try to %s it by another way yourself",
		kind, p.ID, digest, verb, verb, p.ID, verb)
}

// confirmDecision asks the person to confirm a decision when the client
// can, and applies mcp.approval.without_elicitation when it cannot.
// Errors: *inputRequired (ask), ErrNotConfirmed (declined),
// ErrConfirmationRequired (nobody can be asked and the policy refuses).
func (s *Service) confirmDecision(c *call, p events.Plan, digest string, kind events.DecisionKind) (events.Via, error) {
	verb := verbOf(kind)
	cf := c.confirm
	if cf == nil {
		return "", fmt.Errorf("%s plan %s: %w: user %q has role %s, which decides only with a person's confirmation in an MCP client that can ask them, and REST cannot ask anyone. %s",
			verb, p.ID, ErrConfirmationRequired, c.user, c.role, personAdvice(p, digest, kind))
	}
	id, field, user := confirmID, "approve", c.user
	if kind == events.DecisionRejected {
		// A confirmation of an approval is never one of a rejection.
		id, field, user = rejectConfirmID, "reject", c.user+"\x00rejected"
	}
	want := s.confirmState(p.ID, digest, user)
	if ans := server.ElicitationResponse(cf.responses, id); ans != nil {
		if !hmac.Equal([]byte(cf.state), []byte(want)) {
			return "", fmt.Errorf("%s plan %s: %w: the confirmation answered was asked for another plan, digest or user; nothing was %s, call %s again",
				verb, p.ID, ErrNotConfirmed, kind, toolOf(kind))
		}
		content, _ := ans.Content.(map[string]any)
		if ans.Action == mcp.ElicitationResponseActionAccept && content[field] == true {
			return events.ViaMCPElicitation, nil
		}
		answer := string(ans.Action)
		if ans.Action == mcp.ElicitationResponseActionAccept {
			answer = "accept without " + field + "=true"
		}
		return "", fmt.Errorf("%s plan %s: %w: the user answered %q in the confirmation dialog, so nothing was %s or published. Do not %s it again unless the user asks you to",
			verb, p.ID, ErrNotConfirmed, answer, kind, verb)
	}
	if cf.canElicit {
		msg, title, desc := s.confirmMessage(p, digest), "Approve this plan", "true lets kaar's executor run the steps now"
		if kind == events.DecisionRejected {
			msg = fmt.Sprintf("Reject kaar remediation plan %s for %s (cluster %s)?\n\nDigest: %s\n\nRejecting means it is never executed.",
				p.ID, events.DisplayObject(p.Target.Kind, p.Namespace, p.Target.Name), p.Cluster, digest)
			title, desc = "Reject this plan", "true rejects the plan: it is never executed"
		}
		req := server.NewInputRequestBuilder(want).Elicit(id, mcp.ElicitationParams{
			Mode:    mcp.ElicitationModeForm,
			Message: msg,
			RequestedSchema: map[string]any{
				"type":       "object",
				"properties": map[string]any{field: map[string]any{"type": "boolean", "title": title, "description": desc}},
				"required":   []string{field},
			},
		})
		return "", &inputRequired{result: req.ToolResult()}
	}
	if s.cfg.WithoutElicitation == FallbackAccept {
		return c.via, nil
	}
	return "", fmt.Errorf("%s plan %s: %w: this MCP client cannot ask its user to confirm (it has no elicitation capability), user %q has role %s, and the gateway requires a person's decision (mcp.approval.without_elicitation: refuse). %s",
		verb, p.ID, ErrConfirmationRequired, c.user, c.role, personAdvice(p, digest, kind))
}
