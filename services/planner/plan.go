package planner

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/kaar-dev/kaar/pkg/events"
)

// assemblePlan builds the sealed plan from the planning outcome.
func assemblePlan(id string, createdAt time.Time, cfg Config, in planInput, out outcome) events.Plan {
	p := events.Plan{
		ID:                    id,
		IncidentID:            in.Incident.ID,
		Cluster:               cfg.Cluster,
		Namespace:             in.Incident.Namespace,
		Target:                in.Owner.Ref,
		TargetResourceVersion: in.Owner.ResourceVersion,
		TargetGeneration:      in.Owner.Generation,
		Type:                  in.Incident.Type,
		Summary:               out.Summary,
		Steps:                 out.Steps,
		Evidence:              collectEvidence(in),
		Risk:                  out.Risk,
		State:                 events.PlanProposed,
		CreatedAt:             createdAt,
		ExpiresAt:             createdAt.Add(cfg.ApprovalWindow),
		DiagnosticOnly:        out.DiagnosticOnly,
		ManagedBy:             out.ManagedBy,
		Notes:                 out.Notes,
	}
	p.Seal()
	return p
}

// buildPlan gathers the evidence, drafts the steps, dry-runs the
// candidates and returns the sealed (not yet stored) plan. requestedBy is
// who asked for it (PlanRequest.RequestedBy), empty for a plan of the
// issue stream; it is sealed into the plan for
// remediation.require_distinct_approver.
func (s *Service) buildPlan(ctx context.Context, inc events.Incident, requestedBy string) (events.Plan, outcome, error) {
	in, err := s.reader.gather(ctx, inc)
	if err != nil {
		return events.Plan{}, outcome{}, fmt.Errorf("plan incident %s: %w", inc.ID, err)
	}
	in.Now = s.now().UTC()
	out := finalize(draftPlan(in), func(st events.Step) events.DryRunResult { return s.dry.run(ctx, st) })
	for _, a := range out.DryRunFailures {
		s.metrics.dryRunFailures.WithLabelValues(a).Inc()
	}
	id, err := uuid.NewV7()
	if err != nil {
		return events.Plan{}, out, fmt.Errorf("plan incident %s: new id: %w", inc.ID, err)
	}
	p := assemblePlan(id.String(), in.Now, s.cfg, in, out)
	p.RequestedBy = requestedBy
	s.signer.SignPlan(&p) // seals first
	if err := p.Validate(); err != nil {
		return p, out, fmt.Errorf("plan incident %s: built an invalid plan: %w", inc.ID, err)
	}
	return p, out, nil
}

// planIncident builds a plan for an incident and stores it (or finds the
// equivalent proposed one), holding the incident's lock throughout.
// source says where the incident came from (issue stream or request).
func (s *Service) planIncident(ctx context.Context, inc events.Incident, source, requestedBy string) (events.Plan, error) {
	unlock := s.locks.lock(inc.ID)
	defer unlock()
	return s.planLocked(ctx, inc, source, requestedBy)
}

// planLocked is planIncident for a caller that holds the incident's lock.
func (s *Service) planLocked(ctx context.Context, inc events.Incident, source, requestedBy string) (events.Plan, error) {
	start := time.Now()
	defer func() { s.metrics.latency.WithLabelValues(source).Observe(time.Since(start).Seconds()) }()
	log := s.log.With(slog.String("namespace", inc.Namespace),
		slog.String("owner", inc.Owner.Kind+"/"+inc.Owner.Name), slog.String("incident", inc.ID))
	p, out, err := s.buildPlan(ctx, inc, requestedBy)
	if err != nil {
		s.metrics.plans.WithLabelValues(string(inc.Type), outcomeFailed).Inc()
		return events.Plan{}, err
	}
	res, err := s.propose(ctx, p)
	if err != nil {
		s.metrics.plans.WithLabelValues(string(inc.Type), outcomeFailed).Inc()
		return events.Plan{}, err
	}
	switch {
	case !res.Created:
		s.metrics.plans.WithLabelValues(string(inc.Type), outcomeUnchanged).Inc()
		log.Debug("equivalent plan already proposed", slog.String("plan", res.Plan.ID))
	case res.Plan.DiagnosticOnly:
		s.metrics.plans.WithLabelValues(string(inc.Type), outcomeDiagnostic).Inc()
	default:
		s.metrics.plans.WithLabelValues(string(inc.Type), outcomeProposed).Inc()
	}
	if res.Created {
		log.Info("planned", slog.String("plan", res.Plan.ID), slog.String("strategy", out.Chosen),
			slog.Bool("diagnostic_only", res.Plan.DiagnosticOnly), slog.String("risk", string(res.Plan.Risk)),
			slog.Int("superseded", len(res.Superseded)))
	}
	return res.Plan, nil
}

// obsoleteLocked supersedes the proposed plans of a resolved incident:
// nothing is left to fix, so they must not be approved any more.
// "superseded" with no successor is the state for that (there is no
// "obsolete" state). The caller holds the incident's lock.
func (s *Service) obsoleteLocked(ctx context.Context, inc events.Incident, at time.Time) error {
	current, err := s.proposedFor(ctx, inc.ID, inc.Owner)
	if err != nil {
		return fmt.Errorf("resolve incident %s: %w", inc.ID, err)
	}
	for _, sp := range current {
		reason := fmt.Sprintf("incident resolved at %s: the plan is obsolete", at.UTC().Format(time.RFC3339))
		if err := s.supersede(ctx, sp.Plan.ID, "", reason); err != nil {
			return fmt.Errorf("resolve incident %s: %w", inc.ID, err)
		}
	}
	return nil
}
