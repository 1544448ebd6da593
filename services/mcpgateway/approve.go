package mcpgateway

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// Values of DecisionOut.DigestSource.
const (
	digestGiven   = "given"
	digestCurrent = "current"
)

type decideArgs struct {
	PlanID string `json:"plan_id"`
	Digest string `json:"digest"`
	Reason string `json:"reason"`
}

func (s *Service) approveTool() (*tool, error) {
	return defineTool("approve_remediation_plan", "Approve remediation plan",
		"Approve a proposed remediation plan: the executor then runs its steps against the cluster right away "+
			"and verifies the workload (follow it with remediate_issue or get_execution_status). A person decides: "+
			"with the assistant role the user is asked to confirm in the client (elicitation), and a client that "+
			"cannot ask is refused; an approver token decides directly. Name the digest you reviewed (required): if "+
			"the plan changed since, the approval is refused. Refused when the plan is unknown or expired (its "+
			"approval window passed), not proposed any more, or diagnostic-only. Approving the same plan and digest "+
			"twice sends one decision.",
		hints{readOnly: false, destructive: true, idempotent: true, openWorld: false},
		[]argSpec{
			planIDArg("The plan to approve.", true),
			requiredDigest(digestArg("The plan digest the user reviewed (from generate_remediation_plan or get_remediation_plan).")),
		},
		func(ctx context.Context, c *call, a decideArgs) (DecisionOut, string, error) {
			return s.decide(ctx, c, a, events.DecisionApproved)
		})
}

func (s *Service) rejectTool() (*tool, error) {
	return defineTool("reject_remediation_plan", "Reject remediation plan",
		"Reject a proposed remediation plan so it is never executed. A person decides: with the assistant role "+
			"the user is asked to confirm in the client (elicitation). Name the digest you reviewed; without one the "+
			"plan's current digest is rejected and the answer says so. Refused when the plan is unknown, expired or "+
			"not proposed any more.",
		hints{readOnly: false, destructive: false, idempotent: true, openWorld: false},
		[]argSpec{
			planIDArg("The plan to reject.", true),
			digestArg("The plan digest you reviewed."),
			{name: "reason", typ: typeString, desc: "Why, for the audit trail.", maxLen: 1000},
		},
		func(ctx context.Context, c *call, a decideArgs) (DecisionOut, string, error) {
			return s.decide(ctx, c, a, events.DecisionRejected)
		})
}

// decide checks that the plan can take the decision and publishes it. The
// checks repeat the executor's (which stays the authority) so the caller
// hears about a mistake now rather than in the audit trail.
func (s *Service) decide(ctx context.Context, c *call, a decideArgs, kind events.DecisionKind) (DecisionOut, string, error) {
	verb := verbOf(kind)
	p, err := s.getPlan(ctx, a.PlanID)
	if err != nil {
		return DecisionOut{}, "", fmt.Errorf("%s: %w", verb, err)
	}
	source := digestGiven
	if a.Digest == "" {
		source, a.Digest = digestCurrent, p.Digest
	} else if a.Digest != p.Digest {
		return DecisionOut{}, "", fmt.Errorf("%s plan %s: %w: you named %s but the plan's digest is %s, so it is not the plan you reviewed; review it with get_remediation_plan and decide on its current digest",
			verb, p.ID, ErrDigestMismatch, a.Digest, p.Digest)
	}
	if p.State != events.PlanProposed {
		return DecisionOut{}, "", fmt.Errorf("%s plan %s: %w: it is %s%s", verb, p.ID, ErrPlanNotProposed, p.State, stateAdvice(p))
	}
	if kind == events.DecisionApproved && p.DiagnosticOnly {
		return DecisionOut{}, "", fmt.Errorf("approve plan %s: %w: it is diagnostic-only (no step changes the cluster), so there is nothing to execute", p.ID, ErrPlanNotProposed)
	}
	now := s.now().UTC()
	if !now.Before(p.ExpiresAt) {
		return DecisionOut{}, "", fmt.Errorf("%s plan %s: %w: its approval window ended at %s; call generate_remediation_plan for a new plan",
			verb, p.ID, ErrPlanExpired, p.ExpiresAt.UTC().Format(time.RFC3339))
	}
	pending, err := s.pendingDecision(ctx, p.ID)
	if err != nil {
		return DecisionOut{}, "", fmt.Errorf("%s plan %s: %w", verb, p.ID, err)
	}
	if pending != nil && pending.Decision != kind {
		return DecisionOut{}, "", fmt.Errorf("%s plan %s: %w: it was already %s by %s via %s at %s (digest %s), and the executor has not processed that decision yet",
			verb, p.ID, ErrConflict, pending.Decision, pending.DecidedBy, pending.Via, pending.At.Format(time.RFC3339), pending.Digest)
	}
	if kind == events.DecisionApproved && s.cfg.RequireDistinctApprover && p.RequestedBy != "" && p.RequestedBy == c.user {
		return DecisionOut{}, "", fmt.Errorf("approve plan %s: %w: %q asked for this plan, and remediation.require_distinct_approver wants someone else to approve it; "+
			"ask another person (with their own token, kaar plans approve, or Slack) to review and approve it", p.ID, ErrSameRequester, c.user)
	}
	via, err := s.personCheck(c, p, a.Digest, kind)
	if err != nil {
		return DecisionOut{}, "", err
	}
	if via != c.via {
		now = s.now().UTC()
		if !now.Before(p.ExpiresAt) {
			return DecisionOut{}, "", fmt.Errorf("%s plan %s: %w: its approval window ended at %s, before the decision was confirmed; call generate_remediation_plan for a new plan",
				verb, p.ID, ErrPlanExpired, p.ExpiresAt.UTC().Format(time.RFC3339))
		}
	}
	d := events.Decision{PlanID: p.ID, Digest: a.Digest, Decision: kind, DecidedBy: c.user, Via: via, At: now, Reason: a.Reason}
	dup, err := s.publishDecision(ctx, d)
	if err != nil {
		return DecisionOut{}, "", fmt.Errorf("%s plan %s: %w", verb, p.ID, err)
	}
	if !dup {
		s.metrics.decisions.WithLabelValues(string(kind), string(d.Via)).Inc()
	}
	s.log.Info("decision published", slog.String("namespace", p.Namespace),
		slog.String("owner", p.Target.Kind+"/"+p.Target.Name), slog.String("plan", p.ID), slog.String("digest", d.Digest),
		slog.String("decision", string(kind)), slog.String("decided_by", d.DecidedBy), slog.String("via", string(d.Via)), slog.Bool("duplicate", dup))
	out := DecisionOut{PlanID: p.ID, Digest: d.Digest, Decision: string(kind), DecidedBy: d.DecidedBy,
		Via: string(d.Via), At: now, DigestSource: source, Duplicate: dup}
	switch kind {
	case events.DecisionApproved:
		out.Message = fmt.Sprintf("Approved plan %s at digest %s for %s. The executor runs it now; follow it with remediate_issue {plan_id: %q} or get_execution_status.",
			p.ID, d.Digest, events.DisplayRef(p.Target.Kind, p.Namespace, p.Target.Name), p.ID)
	default:
		out.Message = fmt.Sprintf("Rejected plan %s at digest %s: it will not be executed.", p.ID, d.Digest)
	}
	if source == digestCurrent {
		out.Message += " No digest was given: the plan's current digest was used."
	}
	if dup {
		out.Message += " The same decision had already been published: nothing new was sent."
	}
	return out, out.Message, nil
}

// stateAdvice says what to do about a plan that is not proposed.
func stateAdvice(p events.Plan) string {
	switch p.State {
	case events.PlanApproved, events.PlanExecuting:
		return ": it is being executed; follow it with get_execution_status"
	case events.PlanSucceeded, events.PlanFailed:
		return ": it was executed; see get_execution_status"
	case events.PlanSuperseded:
		if p.SupersededBy != "" {
			return ": a newer plan replaced it: " + p.SupersededBy
		}
		return ": a newer plan replaced it; see list_remediation_plans"
	case events.PlanRejected:
		return ": it was rejected"
	case events.PlanExpired:
		return ": its approval window passed; call generate_remediation_plan for a new plan"
	}
	return ""
}
