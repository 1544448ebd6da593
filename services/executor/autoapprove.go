package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// AutoApprover is who auto-approvals are decided by.
const AutoApprover = "kaar-auto-approve"

// startAutoApprove follows the proposed plans of the cluster (a durable
// consumer on PLAN_EVENTS, so plans proposed while the executor was down
// are seen when it is back) and approves those the standing policy
// allows. The approval is an ordinary decision on APPROVALS (via auto,
// with the policy as its reason), so it is checked, claimed, executed
// and audited like any other; an auto_approved audit record says which
// policy approved it.
func (s *Service) startAutoApprove(ctx context.Context) (stop func(), err error) {
	name, err := events.AutoApproveConsumer(s.cfg.Cluster)
	if err != nil {
		return nil, err
	}
	cons, err := s.js.Consumer(ctx, events.StreamPlanEvents, name)
	if err != nil {
		return nil, fmt.Errorf("consumer %s/%s: %w", events.StreamPlanEvents, name, err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) { s.autoApproveMsg(ctx, msg) })
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", name, err)
	}
	s.log.Info("auto-approval on", slog.String("max_risk", string(s.cfg.AutoApproveMaxRisk)))
	return cc.Stop, nil
}

func (s *Service) autoApproveMsg(ctx context.Context, msg jetstream.Msg) {
	env, err := events.Decode(msg.Data())
	var p events.Plan
	if err == nil {
		p, err = events.DecodeData[events.Plan](env)
	}
	if err != nil {
		s.log.Warn("invalid plan event: terminated", slog.Any("error", err))
		_ = msg.TermWithReason(err.Error())
		return
	}
	log := s.log.With(slog.String("plan", p.ID))
	if err := s.autoApprove(ctx, log, p); err != nil {
		log.Warn("auto-approval will be retried", slog.Any("error", err))
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	_ = msg.Ack()
}

// autoApprove approves the stored plan announced by p when policy allows
// it; nil when it did, or when it does not apply.
func (s *Service) autoApprove(ctx context.Context, log *slog.Logger, announced events.Plan) error {
	p, _, err := s.plans.Get(ctx, announced.ID)
	switch {
	case errors.Is(err, bus.ErrPlanNotFound), errors.Is(err, events.ErrInvalid):
		return nil // expired or never stored: nothing to approve
	case err != nil:
		return err
	}
	if r := s.untrustedPlan(p); r != nil {
		log.Warn("not auto-approved: untrusted plan", slog.String("why", r.Message))
		return nil
	}
	if why := s.autoApprovable(p); why != "" {
		log.Info("not auto-approved", slog.String("why", why))
		return nil
	}
	reason := fmt.Sprintf("remediation.auto_approve: every step at or below risk %s, namespace %s not protected", s.cfg.AutoApproveMaxRisk, p.Namespace)
	d := events.Decision{PlanID: p.ID, Digest: p.Digest, Decision: events.DecisionApproved, DecidedBy: AutoApprover,
		Via: events.ViaAuto, At: s.now().UTC(), Reason: reason}
	s.signer.SignDecision(&d)
	env, err := events.New(events.DecisionApproved.EventType(), events.SourceExecutor, s.cfg.Cluster, p.ID, d)
	if err != nil {
		return err
	}
	subject, err := events.ApprovalSubject(s.cfg.Cluster, p.ID)
	if err != nil {
		return err
	}
	pctx, cancel := recordContext(ctx)
	defer cancel()
	dup, err := bus.Publish(pctx, s.js, subject, env, events.SignedDecisionMsgID(d))
	if err != nil {
		return fmt.Errorf("publish auto-approval: %w", err)
	}
	if !dup {
		s.audit(ctx, auditEntry{Kind: events.AuditAutoApproved, PlanID: p.ID, Digest: p.Digest, Actor: AutoApprover, Via: events.ViaAuto,
			Message: "auto-approved: " + reason, Data: d, DecisionID: env.ID})
		log.Info("plan auto-approved", slog.String("risk", string(planRisk(p))))
	}
	return nil
}

// autoApprovable says why the policy does not approve p ("" when it does).
func (s *Service) autoApprovable(p events.Plan) string {
	switch {
	case p.State != events.PlanProposed:
		return "plan is " + string(p.State)
	case !s.now().Before(p.ExpiresAt):
		return "approval window passed"
	case p.DiagnosticOnly || !p.Mutating():
		return "diagnostic only"
	case p.Type.IsWarning():
		// A warning's plan acts on a prediction: nothing has failed,
		// so there is time for a person to decide.
		return "a plan for a warning (" + string(p.Type) + "): nothing has failed yet; a person approves it"
	case p.ManagedBy != "":
		return "the target is managed by " + p.ManagedBy + ": the change belongs in its source"
	case p.Cluster != s.cfg.Cluster:
		return "plan of cluster " + p.Cluster
	}
	if r := validatePlanSteps(p, s.cfg.catalogue()); r != nil {
		return r.Message
	}
	// The risk is the catalogue's for each action, never lower than
	// what the plan claims for itself (stepRisk): a plan that calls a
	// rollback harmless is still a rollback.
	limit := riskIndex(s.cfg.AutoApproveMaxRisk)
	for _, st := range p.Steps {
		if !st.Mutating {
			continue
		}
		if r := stepRisk(st); riskIndex(r) > limit {
			return fmt.Sprintf("step %d (%s) has risk %s, above remediation.auto_approve_max_risk %s", st.Index, st.Action, r, s.cfg.AutoApproveMaxRisk)
		}
	}
	return ""
}
