package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
)

// Decision refusals, for errors.Is; the endpoints map them to answers.
var (
	ErrPlanNotFound   = errors.New("plan not found or expired")
	ErrDigestMismatch = errors.New("digest does not match the plan")
	ErrNotProposed    = errors.New("plan is not waiting for a decision")
	ErrPlanExpired    = errors.New("plan's approval window has ended")
	ErrDiagnosticOnly = errors.New("plan is diagnostic-only: nothing to approve")
)

// decide checks that the plan can take the decision (the executor checks
// again and stays the authority) and publishes it on the plan's approval
// subject. duplicate is true when the same decision was published before.
func (s *Service) decide(ctx context.Context, d events.Decision) (plan events.Plan, duplicate bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, _, err := s.plans.Get(ctx, d.PlanID)
	switch {
	case errors.Is(err, bus.ErrPlanNotFound):
		return p, false, fmt.Errorf("plan %s: %w", d.PlanID, ErrPlanNotFound)
	case err != nil:
		return p, false, fmt.Errorf("read plan %s: %w", d.PlanID, err)
	}
	if p.Cluster != s.cfg.Cluster {
		return p, false, fmt.Errorf("plan %s is of cluster %q, not %q: %w", p.ID, p.Cluster, s.cfg.Cluster, ErrPlanNotFound)
	}
	if d.Digest != p.Digest {
		return p, false, fmt.Errorf("plan %s: %w: decided on %s, the plan is now %s", p.ID, ErrDigestMismatch, d.Digest, p.Digest)
	}
	if p.State != events.PlanProposed {
		return p, false, fmt.Errorf("plan %s: %w: it is %s", p.ID, ErrNotProposed, p.State)
	}
	if d.Decision == events.DecisionApproved && p.DiagnosticOnly {
		return p, false, fmt.Errorf("plan %s: %w", p.ID, ErrDiagnosticOnly)
	}
	if !s.now().Before(p.ExpiresAt) {
		return p, false, fmt.Errorf("plan %s: %w at %s", p.ID, ErrPlanExpired, p.ExpiresAt.UTC().Format(time.RFC3339))
	}
	d.At = s.now().UTC()
	s.signer.SignDecision(&d)
	subj, err := events.ApprovalSubject(s.cfg.Cluster, p.ID)
	if err != nil {
		return p, false, err
	}
	env, err := events.New(d.Decision.EventType(), Source, s.cfg.Cluster, p.ID, d)
	if err != nil {
		return p, false, err
	}
	dup, err := bus.Publish(ctx, s.js, subj, env, events.SignedDecisionMsgID(d))
	if err != nil {
		return p, false, err
	}
	if !dup {
		s.metrics.decisions.WithLabelValues(string(d.Via), string(d.Decision)).Inc()
	}
	s.log.Info("decision published", slog.String("namespace", p.Namespace), slog.String("plan", p.ID),
		slog.String("decision", string(d.Decision)), slog.String("decided_by", d.DecidedBy), slog.String("via", string(d.Via)), slog.Bool("duplicate", dup))
	return p, dup, nil
}
