package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/micro"
)

// ServiceName is the executor's name in the NATS micro framework.
const ServiceName = "kaar-executor"

// Version is the executor's version reported by the micro framework.
const Version = "0.1.0"

// statusTimeout bounds the bucket reads of one status request.
const statusTimeout = 5 * time.Second

// serveStatus registers the kaar.<cluster>.svc.executor.status endpoint.
func (s *Service) serveStatus(ctx context.Context) (micro.Service, error) {
	subject, err := events.ServiceSubject(s.cfg.Cluster, events.ServiceExecutor, events.VerbStatus)
	if err != nil {
		return nil, fmt.Errorf("executor: status subject: %w", err)
	}
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        ServiceName,
		Version:     Version,
		Description: "kaar executor: where an approved plan is (plan state and execution record)",
		Metadata:    map[string]string{"cluster": s.cfg.Cluster},
	})
	if err != nil {
		return nil, fmt.Errorf("executor: add micro service: %w", err)
	}
	if err := svc.AddEndpoint(events.VerbStatus, micro.ContextHandler(ctx, s.handleStatus), micro.WithEndpointSubject(subject)); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("executor: add endpoint %s: %w", subject, err)
	}
	return svc, nil
}

func (s *Service) handleStatus(ctx context.Context, req micro.Request) {
	resp, err := s.status(ctx, req.Data())
	body, code := events.EncodeReply(resp, err)
	var opts []micro.RespondOpt
	if code != "" {
		opts = append(opts, micro.WithHeaders(micro.Headers{events.HeaderError: []string{code}}))
	}
	if err := req.Respond(body, opts...); err != nil {
		s.log.Warn("respond to status request", slog.Any("error", err))
	}
}

// status answers an ExecutionStatusRequest from the plans and executions
// buckets.
func (s *Service) status(ctx context.Context, body []byte) (events.ExecutionStatusResponse, error) {
	req, err := events.DecodeRequest[events.ExecutionStatusRequest](body)
	if err != nil {
		return events.ExecutionStatusResponse{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	resp := events.ExecutionStatusResponse{PlanID: req.PlanID}
	p, _, err := s.plans.Get(ctx, req.PlanID)
	switch {
	case err == nil:
		resp.PlanState = p.State
	case errors.Is(err, bus.ErrPlanNotFound):
	case errors.Is(err, events.ErrInvalid):
		s.log.Warn("status: stored plan is invalid", slog.String("plan", req.PlanID), slog.Any("error", err))
	default:
		return resp, &events.ErrorReply{Code: events.CodeUnavailable, Message: "read plan: " + err.Error()}
	}
	exec, err := s.getExecution(ctx, req.PlanID)
	if err != nil {
		if errors.Is(err, events.ErrInvalid) {
			return resp, &events.ErrorReply{Code: events.CodeInternal, Message: "stored execution record is invalid: " + err.Error()}
		}
		return resp, &events.ErrorReply{Code: events.CodeUnavailable, Message: "read execution: " + err.Error()}
	}
	resp.Execution = exec
	if resp.PlanState == "" && exec == nil {
		return resp, &events.ErrorReply{Code: events.CodeNotFound, Message: fmt.Sprintf("no plan or execution with id %s (plans expire after their approval window)", req.PlanID), Field: "plan_id"}
	}
	return resp, nil
}
