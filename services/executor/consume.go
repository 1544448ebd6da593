package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// redeliverDelay is how long a decision waits before it is retried after
// a transient failure (the bus or the plans bucket unavailable).
const redeliverDelay = 5 * time.Second

// transientError marks a failure worth a redelivery: nothing was claimed
// or changed yet.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func transient(err error) error { return &transientError{err} }

// handle processes one delivery of a decision and acks it, except after a
// transient failure before the claim (nak with delay) or for a message
// that can never be processed (terminated).
func (s *Service) handle(ctx context.Context, msg jetstream.Msg) {
	stop := s.keepAlive(msg)
	defer stop()

	env, d, err := s.decodeDecision(msg)
	if err != nil {
		s.metrics.invalid.Inc()
		s.log.Warn("invalid decision message: terminated", slog.String("subject", msg.Subject()), slog.Any("error", err))
		if err := msg.TermWithReason(err.Error()); err != nil {
			s.log.Warn("terminate message", slog.Any("error", err))
		}
		return
	}
	log := s.log.With(slog.String("plan", d.PlanID), slog.String("decision", string(d.Decision)),
		slog.String("decided_by", d.DecidedBy), slog.String("via", string(d.Via)))
	switch d.Decision {
	case events.DecisionRejected:
		err = s.reject(ctx, log, d)
	default:
		err = s.approve(ctx, log, env, d)
	}
	var te *transientError
	if errors.As(err, &te) {
		log.Warn("decision will be redelivered", slog.Any("error", err))
		if err := msg.NakWithDelay(redeliverDelay); err != nil {
			log.Warn("nak decision", slog.Any("error", err))
		}
		return
	}
	if err != nil {
		log.Error("decision processed with an error", slog.Any("error", err))
	}
	if err := msg.Ack(); err != nil {
		log.Warn("ack decision", slog.Any("error", err))
	}
}

// decodeDecision validates the envelope, the decision and that both
// belong to the subject the message came on.
func (s *Service) decodeDecision(msg jetstream.Msg) (events.Envelope, events.Decision, error) {
	env, err := events.Decode(msg.Data())
	if err != nil {
		return env, events.Decision{}, err
	}
	if env.Type != events.TypeDecisionApproved && env.Type != events.TypeDecisionRejected {
		return env, events.Decision{}, fmt.Errorf("envelope type %q is not a decision (allowed: %s, %s): %w",
			env.Type, events.TypeDecisionApproved, events.TypeDecisionRejected, events.ErrInvalid)
	}
	d, err := events.DecodeData[events.Decision](env)
	if err != nil {
		return env, d, err
	}
	if env.Type != d.Decision.EventType() {
		return env, d, fmt.Errorf("envelope type %q does not match data.decision %q: %w", env.Type, d.Decision, events.ErrInvalid)
	}
	if env.Cluster != s.cfg.Cluster {
		return env, d, fmt.Errorf("kaarcluster %q is not this executor's cluster %q: %w", env.Cluster, s.cfg.Cluster, events.ErrInvalid)
	}
	want, err := events.ApprovalSubject(s.cfg.Cluster, d.PlanID)
	if err != nil {
		return env, d, err
	}
	if msg.Subject() != want {
		return env, d, fmt.Errorf("decision for plan %s arrived on %s, want %s: %w", d.PlanID, msg.Subject(), want, events.ErrInvalid)
	}
	return env, d, nil
}

// keepAlive marks msg in progress every InProgressInterval until the
// returned stop is called, so a long execution is not redelivered.
func (s *Service) keepAlive(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(s.cfg.InProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					s.log.Warn("mark decision in progress", slog.Any("error", err))
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
