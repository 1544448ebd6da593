package mcpgateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// An approval over MCP is the model's call. When the client can ask its
// user (the elicitation capability), the gateway asks the person to
// confirm the plan they approve (summary, risk, steps, expiry, digest)
// before it publishes anything, and records the channel as
// mcp-elicitation. The handler is written in mcp-go's multi round-trip
// style: it returns an input request, and is called again with the answer
// (2026-07-28 clients retry themselves; for older ones mcp-go sends
// elicitation/create and calls again).

// confirmID keys the confirmation in the input requests and responses.
const confirmID = "confirm_approval"

// confirmation is the MCP side of a call: whether the client can ask its
// user, and the user's answer when this is the call again.
type confirmation struct {
	canElicit bool
	responses mcp.InputResponses
	state     string
}

// inputRequired ends a call with a request for the client's input; the
// MCP handler returns result as is.
type inputRequired struct{ result *mcp.CallToolResult }

func (e *inputRequired) Error() string { return "waiting for the user's confirmation" }

// clientCanElicit reports whether the client declared the elicitation
// capability: per request from 2026-07-28, per session before.
func clientCanElicit(ctx context.Context) bool {
	if info := server.RequestProtocolInfoFromContext(ctx); info != nil && info.Modern {
		return info.ClientCapabilities != nil && info.ClientCapabilities.Elicitation != nil
	}
	if sess, ok := server.ClientSessionFromContext(ctx).(server.SessionWithClientInfo); ok {
		return sess.GetClientCapabilities().Elicitation != nil
	}
	return false
}

// confirmState binds a confirmation to the plan, the digest and the user
// it was asked for, so an answer cannot be replayed for another.
func (s *Service) confirmState(planID, digest, user string) string {
	m := hmac.New(sha256.New, s.stateKey)
	m.Write([]byte(planID + "\x00" + digest + "\x00" + user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// confirmApproval returns the channel to record for an approval of p at
// digest by a caller who needs a person's confirmation (person.go).
func (s *Service) confirmApproval(c *call, p events.Plan, digest string) (events.Via, error) {
	return s.confirmDecision(c, p, digest, events.DecisionApproved)
}

// confirmMessage is what the person reads before approving: what changes,
// how risky, until when, and the digest they approve. The summary and the
// step titles quote the cluster (image strings, names), so they are in
// double quotes (text.ForModel): nothing in them can pass for a line of
// the dialog; the kubectl lines are shell-quoted by the planner.
func (s *Service) confirmMessage(p events.Plan, digest string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Approve kaar remediation plan %s?\n\n", p.ID)
	fmt.Fprintf(&b, "Target: %s (cluster %s), issue %s\n", events.DisplayObject(p.Target.Kind, p.Namespace, p.Target.Name), p.Cluster, p.Type)
	fmt.Fprintf(&b, "Summary: %s\n", text.ForModel(p.Summary))
	fmt.Fprintf(&b, "Risk: %s\n", p.Risk)
	b.WriteString("Steps that change the cluster:\n")
	for _, st := range p.Steps {
		if !st.Mutating {
			continue
		}
		fmt.Fprintf(&b, "  %d. %s (risk %s)", st.Index, text.ForModel(st.Title), st.Risk)
		if st.Kubectl != "" {
			fmt.Fprintf(&b, ": %s", text.OneLine(st.Kubectl))
		}
		b.WriteString("\n")
	}
	left := p.ExpiresAt.Sub(s.now()).Round(time.Second)
	fmt.Fprintf(&b, "Expires: %s (in %s)\n", p.ExpiresAt.UTC().Format(time.RFC3339), left)
	fmt.Fprintf(&b, "Digest: %s\n\n", digest)
	b.WriteString("Text in double quotes is quoted from the cluster: data, not instructions.\n")
	b.WriteString("Approving lets kaar's executor run these steps now.")
	return b.String()
}
