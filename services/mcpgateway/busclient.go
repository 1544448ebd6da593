package mcpgateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// busErr wraps a bus failure as unavailable, keeping cancellation as is.
func busErr(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

// request sends req to a service endpoint and decodes the reply as Resp.
// fields maps the service's field names to the tool's argument names for
// invalid_argument replies.
func request[Resp any](ctx context.Context, s *Service, service, verb string, req any, timeout time.Duration, fields map[string]string) (Resp, error) {
	var zero Resp
	subj, err := events.ServiceSubject(s.cfg.Cluster, service, verb)
	if err != nil {
		return zero, fmt.Errorf("%s %s: %w", service, verb, err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return zero, fmt.Errorf("%s %s: encode request: %w", service, verb, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg := nats.NewMsg(subj)
	msg.Data = body
	reply, err := s.nc.RequestMsgWithContext(ctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return zero, fmt.Errorf("no kaar-%s answers on %s (is the %s running and connected to the bus?): %w", service, subj, service, ErrUnavailable)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		if ctxErr := context.Cause(ctx); errors.Is(ctxErr, context.Canceled) {
			return zero, fmt.Errorf("%s %s: %w", service, verb, ctxErr)
		}
		return zero, fmt.Errorf("kaar-%s did not answer on %s within %s: %w", service, subj, timeout, ErrUnavailable)
	case err != nil:
		return zero, busErr(fmt.Sprintf("request %s", subj), err)
	}
	resp, err := events.DecodeReply[Resp](reply.Data, reply.Header.Get(events.HeaderError))
	var er *events.ErrorReply
	if errors.As(err, &er) {
		f := er.Field
		if mapped, ok := fields[f]; ok {
			f = mapped
		}
		return zero, &remoteError{service: "kaar-" + service, reply: er, field: f}
	}
	if err != nil {
		return zero, fmt.Errorf("kaar-%s sent an invalid %s reply: %w", service, verb, err)
	}
	return resp, nil
}

// planStore binds to kaar_plans once it exists.
func (s *Service) planStore(ctx context.Context) (*bus.PlanStore, error) {
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	if s.plans != nil {
		return s.plans, nil
	}
	ps, err := bus.OpenPlanStore(ctx, s.js)
	if err != nil {
		return nil, busErr("open the plans bucket", err)
	}
	s.plans = ps
	return ps, nil
}

// executionsKV binds to kaar_executions once it exists.
func (s *Service) executionsKV(ctx context.Context) (jetstream.KeyValue, error) {
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	if s.execs != nil {
		return s.execs, nil
	}
	kv, err := s.js.KeyValue(ctx, events.BucketExecutions)
	if err != nil {
		return nil, busErr("open the "+events.BucketExecutions+" bucket", err)
	}
	s.execs = kv
	return kv, nil
}

// getPlan reads a plan; a missing key is ErrPlanNotFound with advice.
func (s *Service) getPlan(ctx context.Context, id string) (events.Plan, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	ps, err := s.planStore(ctx)
	if err != nil {
		return events.Plan{}, err
	}
	p, _, err := ps.Get(ctx, id)
	switch {
	case errors.Is(err, bus.ErrPlanNotFound):
		return p, fmt.Errorf("plan %s: %w: it expired (its approval window passed without an approval) or never existed; call generate_remediation_plan for a new one", id, ErrPlanNotFound)
	case errors.Is(err, events.ErrInvalid):
		return p, fmt.Errorf("plan %s is stored in a form this gateway cannot read: %w", id, err)
	case err != nil:
		return p, busErr("read plan "+id, err)
	}
	return p, nil
}

// listPlans returns every stored plan.
func (s *Service) listPlans(ctx context.Context) ([]events.Plan, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	ps, err := s.planStore(ctx)
	if err != nil {
		return nil, err
	}
	stored, err := ps.List(ctx)
	if err != nil {
		if len(stored) == 0 && !errors.Is(err, events.ErrInvalid) {
			if errors.Is(err, jetstream.ErrNoKeysFound) {
				return nil, nil
			}
			return nil, busErr("list plans", err)
		}
		// Some values did not decode: list the rest, log the others.
		s.log.Warn("skipping unreadable plans", slog.Any("error", err))
	}
	out := make([]events.Plan, 0, len(stored))
	for _, sp := range stored {
		out = append(out, sp.Plan)
	}
	return out, nil
}

// getExecution reads a plan's execution record; (nil, nil) when there is
// none yet. A value that is not a valid execution record (a marker of the
// executor, or a newer schema) is reported as none, and logged.
func (s *Service) getExecution(ctx context.Context, planID string) (*events.Execution, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	kv, err := s.executionsKV(ctx)
	if err != nil {
		return nil, err
	}
	key, err := events.ExecutionKey(planID)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, busErr("read execution "+planID, err)
	}
	return s.decodeExecution(planID, e.Value()), nil
}

func (s *Service) decodeExecution(planID string, b []byte) *events.Execution {
	var ex events.Execution
	if err := json.Unmarshal(b, &ex); err != nil {
		s.log.Warn("ignoring an execution value that does not decode", slog.String("plan", planID), slog.Any("error", err))
		return nil
	}
	if err := ex.Validate(); err != nil {
		s.log.Warn("ignoring an invalid execution record", slog.String("plan", planID), slog.Any("error", err))
		return nil
	}
	return &ex
}

// pendingDecision returns the decision about planID waiting on APPROVALS
// (published, not yet consumed by the executor), or nil.
func (s *Service) pendingDecision(ctx context.Context, planID string) (*events.Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	subj, err := events.ApprovalSubject(s.cfg.Cluster, planID)
	if err != nil {
		return nil, err
	}
	st, err := s.js.Stream(ctx, events.StreamApprovals)
	if err != nil {
		return nil, busErr("open the "+events.StreamApprovals+" stream", err)
	}
	raw, err := st.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, busErr("read pending decisions of plan "+planID, err)
	}
	env, err := events.Decode(raw.Data)
	if err != nil {
		s.log.Warn("ignoring an invalid message on the approvals stream", slog.String("plan", planID), slog.Any("error", err))
		return nil, nil
	}
	d, err := events.DecodeData[events.Decision](env)
	if err != nil {
		s.log.Warn("ignoring an invalid decision on the approvals stream", slog.String("plan", planID), slog.Any("error", err))
		return nil, nil
	}
	return &d, nil
}

// publishDecision publishes d on the plan's approval subject with its
// deduplicating message id.
func (s *Service) publishDecision(ctx context.Context, d events.Decision) (duplicate bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	subj, err := events.ApprovalSubject(s.cfg.Cluster, d.PlanID)
	if err != nil {
		return false, err
	}
	s.signer.SignDecision(&d)
	env, err := events.New(d.Decision.EventType(), events.SourceMCPGateway, s.cfg.Cluster, d.PlanID, d)
	if err != nil {
		return false, fmt.Errorf("build decision: %w", err)
	}
	dup, err := bus.Publish(ctx, s.js, subj, env, events.SignedDecisionMsgID(d))
	if err != nil {
		return false, busErr("publish decision", err)
	}
	return dup, nil
}
