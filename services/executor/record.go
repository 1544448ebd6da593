package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// recordTimeout bounds the writing of one record (audit, execution, plan
// state), retries included: long enough to ride out a NATS server
// restart, after which the record is written.
const recordTimeout = 90 * time.Second

// retryRecord runs write until it succeeds or ctx ends, backing off from
// 100ms to 2s: while the bus is down (a NATS restart) records wait for it
// instead of being lost. A duplicate write after an ambiguous failure is
// harmless: audit records carry a message id, execution records are
// whole-value puts.
func retryRecord(ctx context.Context, write func(context.Context) error) error {
	wait := 100 * time.Millisecond
	for {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := write(wctx)
		cancel()
		var perm *backoff.PermanentError
		switch {
		case errors.As(err, &perm):
			return perm.Err
		case err == nil || errors.Is(err, events.ErrInvalid):
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// recordContext is ctx without its cancellation, bounded by
// recordTimeout: what happened is recorded even when the execution was
// cancelled (shutdown past the drain timeout).
func recordContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}

// auditEntry is what one audit record says; audit fills in the rest.
type auditEntry struct {
	Kind    events.AuditKind
	PlanID  string
	Digest  string
	Actor   string // default Actor
	Via     events.Via
	Message string
	Data    any // JSON-encoded into AuditRecord.Data
	// DecisionID, when set, makes the record's id a function of the
	// decision envelope id and the kind, so the record a redelivered
	// decision produces again is dropped by the stream's duplicate window.
	DecisionID string
}

// auditIDSpace is the UUIDv5 namespace of decision-bound audit record ids.
var auditIDSpace = uuid.MustParse("6f1d3c52-8a7e-4a8e-9b0e-2c3f6a1d9e41")

// audit publishes one record to kaar.<cluster>.audit.<kind>. The audit
// trail is best effort for the execution: a failure is logged, never
// stops a plan half-way.
// It reports whether the stream dropped the record as a duplicate.
func (s *Service) audit(ctx context.Context, e auditEntry) (duplicate bool) {
	ctx, cancel := recordContext(ctx)
	defer cancel()
	var dup bool
	id, err := auditID(e)
	if err == nil {
		err = retryRecord(ctx, func(ctx context.Context) error {
			dup, err = s.publishAudit(ctx, e, id)
			return err
		})
	}
	if err != nil {
		s.log.Error("publish audit record", slog.String("plan", e.PlanID), slog.String("kind", string(e.Kind)), slog.Any("error", err))
	}
	return dup
}

// auditID is the id of an audit record, fixed before the first attempt
// so that retries are deduplicated by the stream.
func auditID(e auditEntry) (uuid.UUID, error) {
	if e.DecisionID != "" {
		return uuid.NewSHA1(auditIDSpace, []byte(e.DecisionID+"/"+string(e.Kind))), nil
	}
	return uuid.NewV7()
}

func (s *Service) publishAudit(ctx context.Context, e auditEntry, id uuid.UUID) (bool, error) {
	var err error
	rec := events.AuditRecord{
		ID:      id.String(),
		PlanID:  e.PlanID,
		Digest:  e.Digest,
		Kind:    e.Kind,
		Actor:   e.Actor,
		Via:     e.Via,
		At:      s.now().UTC(),
		Message: e.Message,
	}
	if rec.Actor == "" {
		rec.Actor = Actor
	}
	if e.Data != nil {
		if rec.Data, err = json.Marshal(e.Data); err != nil {
			return false, fmt.Errorf("encode %s data: %w", e.Kind, err)
		}
	}
	env, err := events.New(e.Kind.EventType(), events.SourceExecutor, s.cfg.Cluster, e.PlanID, rec)
	if err != nil {
		return false, err
	}
	subject, err := events.AuditSubject(s.cfg.Cluster, e.Kind)
	if err != nil {
		return false, err
	}
	return bus.Publish(ctx, s.js, subject, env, events.AuditMsgID(rec.ID))
}

// putExecution stores the execution record under the plan id. Only the
// executor that claimed the plan writes its record, so a plain Put is
// safe.
func (s *Service) putExecution(ctx context.Context, e *events.Execution) {
	ctx, cancel := recordContext(ctx)
	defer cancel()
	if err := retryRecord(ctx, func(ctx context.Context) error { return s.storeExecution(ctx, e) }); err != nil {
		s.log.Error("store execution record", slog.String("plan", e.PlanID), slog.Any("error", err))
	}
}

func (s *Service) storeExecution(ctx context.Context, e *events.Execution) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("execution record %s: %w", e.PlanID, err)
	}
	key, err := events.ExecutionKey(e.PlanID)
	if err != nil {
		return err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode execution %s: %w", e.PlanID, err)
	}
	if _, err := s.executions.Put(ctx, key, b); err != nil {
		return fmt.Errorf("put execution %s: %w", e.PlanID, err)
	}
	return nil
}

// getExecution reads a plan's execution record; (nil, nil) when there is
// none.
func (s *Service) getExecution(ctx context.Context, planID string) (*events.Execution, error) {
	key, err := events.ExecutionKey(planID)
	if err != nil {
		return nil, err
	}
	entry, err := s.executions.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get execution %s: %w", planID, err)
	}
	var e events.Execution
	if err := json.Unmarshal(entry.Value(), &e); err != nil {
		return nil, fmt.Errorf("decode execution %s: %w: %w", planID, events.ErrInvalid, err)
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("execution %s: %w", planID, err)
	}
	return &e, nil
}

// storeRefusal records a refused execution unless the plan already has a
// record of a real execution, which a late refusal must never overwrite.
func (s *Service) storeRefusal(ctx context.Context, e *events.Execution) {
	prev, err := s.getExecution(ctx, e.PlanID)
	if err != nil && !errors.Is(err, events.ErrInvalid) {
		s.log.Error("read execution record", slog.String("plan", e.PlanID), slog.Any("error", err))
		return
	}
	if prev != nil && prev.State != events.ExecutionRefused {
		return
	}
	s.putExecution(ctx, e)
}
