package executor

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/kaar-dev/kaar/pkg/events"
)

// requestReplan asks the planner (kaar.<cluster>.svc.planner.plan) for a
// new plan for a stale plan's target and returns the new plan's id. Best
// effort: the caller logs the error.
func (s *Service) requestReplan(ctx context.Context, p events.Plan) (string, error) {
	subject, err := events.ServiceSubject(s.cfg.Cluster, events.ServicePlanner, events.VerbPlan)
	if err != nil {
		return "", err
	}
	ns := p.Target.Namespace
	if ns == "" {
		ns = p.Namespace
	}
	req := events.PlanRequest{Namespace: ns, Kind: p.Target.Kind, Name: p.Target.Name, IssueType: p.Type}
	if err := req.Validate(); err != nil {
		return "", fmt.Errorf("plan request: %w", err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("encode plan request: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ReplanTimeout)
	defer cancel()
	msg, err := s.nc.RequestWithContext(rctx, subject, body)
	if err != nil {
		return "", fmt.Errorf("request %s: %w", subject, err)
	}
	resp, err := events.DecodeReply[events.PlanResponse](msg.Data, msg.Header.Get(events.HeaderError))
	if err != nil {
		return "", fmt.Errorf("planner reply: %w", err)
	}
	return resp.Plan.ID, nil
}
