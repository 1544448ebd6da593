package planner

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
)

// expiryRetry is how long the expiry watcher waits before watching again
// after its watch ended while the service still runs.
const expiryRetry = time.Second

// watchExpiry announces plan-expired (PLAN_EVENTS and an AUDIT record)
// when a proposed plan's key reaches its TTL. The purge marker JetStream
// leaves carries no value, so the watcher keeps the last value of every
// proposed plan it has seen (primed with List); a key that expires while
// it was superseded (its TTL re-armed by supersede) is not announced.
// Several planner replicas announce the same expiry with the same message
// ids, and the streams keep one.
func (s *Service) watchExpiry(ctx context.Context) error {
	for {
		err := s.watchExpiryOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("plan expiry watch ended; restarting", slog.Any("error", err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(expiryRetry):
		}
	}
}

func (s *Service) watchExpiryOnce(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes, err := s.store.Watch(ctx)
	if err != nil {
		return err
	}
	proposed := map[string]events.Plan{}
	all, err := s.store.List(ctx)
	if err != nil {
		s.log.Warn("priming the plan expiry watch", slog.Any("error", err))
	}
	for _, sp := range all {
		if sp.Plan.State == events.PlanProposed && sp.Plan.Cluster == s.cfg.Cluster {
			proposed[sp.Plan.ID] = sp.Plan
		}
	}
	s.markWatching()
	for ch := range changes {
		switch ch.Op {
		case bus.PlanPut:
			if ch.Err == nil && ch.Plan.State == events.PlanProposed && ch.Plan.Cluster == s.cfg.Cluster {
				proposed[ch.PlanID] = ch.Plan
			} else {
				delete(proposed, ch.PlanID)
			}
		case bus.PlanDeleted:
			delete(proposed, ch.PlanID)
		case bus.PlanExpired:
			p, ok := proposed[ch.PlanID]
			if !ok {
				continue
			}
			delete(proposed, ch.PlanID)
			if err := s.announceExpired(ctx, p); err != nil {
				s.log.Error("announce plan expiry", slog.String("plan", p.ID), slog.Any("error", err))
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("watch %s: channel closed", events.BucketPlans)
}

// announceExpired publishes the expiry of a proposed plan, retrying
// briefly: the message ids make retries and other replicas harmless.
func (s *Service) announceExpired(ctx context.Context, p events.Plan) error {
	p.State = events.PlanExpired
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			}
		}
		msg := fmt.Sprintf("approval window ended at %s without a decision", p.ExpiresAt.UTC().Format(time.RFC3339))
		if err = s.announce(ctx, p, events.PlanEventExpired, events.AuditPlanExpired, msg); err == nil {
			s.metrics.plans.WithLabelValues(string(p.Type), outcomeExpired).Inc()
			return nil
		}
	}
	return err
}
