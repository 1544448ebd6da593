package mcpgateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

type remediateArgs struct {
	PlanID         string `json:"plan_id"`
	ResourceType   string `json:"resource_type"`
	Namespace      string `json:"namespace"`
	ResourceName   string `json:"resource_name"`
	TimeoutSeconds int    `json:"timeout_seconds"`
}

// validate requires either plan_id or the whole target, not both.
func (a *remediateArgs) validate() error {
	target := a.ResourceType != "" || a.Namespace != "" || a.ResourceName != ""
	if a.PlanID != "" && target {
		return argErr("plan_id", "give either plan_id, or resource_type, namespace and resource_name; not both")
	}
	if a.PlanID != "" {
		return nil
	}
	switch {
	case a.ResourceType == "":
		return argErr("resource_type", "required when plan_id is not given", resourceTypeNames()...)
	case a.Namespace == "":
		return argErr("namespace", "required when plan_id is not given")
	case a.ResourceName == "":
		return argErr("resource_name", "required when plan_id is not given")
	}
	return nil
}

func (s *Service) remediateTool() (*tool, error) {
	maxSec := int(s.cfg.MaxRemediateTimeout / time.Second)
	defSec := int(s.cfg.RemediateTimeout / time.Second)
	return defineTool("remediate_issue", "Follow a remediation",
		"Follow an approved remediation plan to its end and return the execution: state (succeeded, failed or "+
			"refused), each step's result and the verification of the workload. Give plan_id, or resource_type, "+
			"namespace and resource_name to use the newest plan for that workload. This tool changes nothing by "+
			"itself: the plan runs because it was approved. A plan that is still proposed is refused with "+
			"\"approve it first with approve_remediation_plan\". Waits at most timeout_seconds (default "+
			fmt.Sprint(defSec)+"); when the wait ends first the execution goes on and the answer says timed_out. "+
			"Sends progress notifications when the client asks for them. Cancelling stops the wait, not the execution.",
		hints{readOnly: true, destructive: false, idempotent: true, openWorld: false},
		[]argSpec{
			planIDArg("The approved plan to follow.", false),
			resourceTypeArg("Kind of the workload, when plan_id is not given.", false),
			namespaceArg("Namespace of the workload, when plan_id is not given.", false),
			resourceNameArg("Name of the workload, when plan_id is not given.", false),
			{name: "timeout_seconds", typ: typeInteger, desc: "How long to wait for a final state.", min: 1, max: maxSec, def: defSec},
		},
		s.remediate)
}

func (s *Service) remediate(ctx context.Context, c *call, a remediateArgs) (RemediateOut, string, error) {
	started := time.Now()
	p, err := s.resolvePlan(ctx, a)
	if err != nil {
		return RemediateOut{}, "", err
	}
	ex, err := s.getExecution(ctx, p.ID)
	if err != nil {
		return RemediateOut{}, "", fmt.Errorf("remediate plan %s: %w", p.ID, err)
	}
	if ex == nil {
		if p, err = s.checkRunnable(ctx, p); err != nil {
			return RemediateOut{}, "", err
		}
	}
	timeout := s.cfg.RemediateTimeout
	if a.TimeoutSeconds > 0 {
		timeout = time.Duration(a.TimeoutSeconds) * time.Second
	}
	ex, stop, err := s.waitExecution(ctx, c, p, timeout)
	if err != nil {
		return RemediateOut{}, "", fmt.Errorf("remediate plan %s: %w", p.ID, err)
	}
	// The plan's state as the wait ends (executing -> succeeded...).
	if fresh, err := s.getPlan(ctx, p.ID); err == nil {
		p = fresh
	}
	out := RemediateOut{PlanID: p.ID, Digest: p.Digest, Target: targetOut(p.Target), PlanState: string(p.State),
		Execution: executionOut(ex), WaitedSeconds: time.Since(started).Round(time.Millisecond).Seconds()}
	out.Final = ex != nil && finalExecution(ex.State)
	out.TimedOut = !out.Final
	out.Message = remediateMessage(out, stop)
	text := out.Message
	if out.Execution != nil {
		text += "\n" + executionText(out.Execution)
	}
	return out, text, nil
}

func remediateMessage(out RemediateOut, stop string) string {
	target := events.DisplayRef(out.Target.Kind, out.Target.Namespace, out.Target.Name)
	if !out.Final {
		state := "waiting for the executor"
		if out.Execution != nil {
			state = out.Execution.State
		}
		return fmt.Sprintf("Plan %s for %s is still %s after %.0fs (%s): the execution goes on; call get_execution_status {plan_id: %q} later.",
			out.PlanID, target, state, out.WaitedSeconds, stop, out.PlanID)
	}
	e := out.Execution
	switch events.ExecutionState(e.State) {
	case events.ExecutionSucceeded:
		msg := fmt.Sprintf("Plan %s for %s succeeded.", out.PlanID, target)
		if v := e.Verification; v != nil {
			msg += fmt.Sprintf(" Verification: healthy=%t, ready %d/%d.", v.Healthy, v.ReadyReplicas, v.DesiredReplicas)
		}
		return msg
	case events.ExecutionRefused:
		return fmt.Sprintf("The executor refused plan %s for %s (%s)%s; nothing was changed.", out.PlanID, target, e.RefusalReason, suffix(e.Error))
	default:
		return fmt.Sprintf("Plan %s for %s failed%s.", out.PlanID, target, suffix(e.Error))
	}
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// resolvePlan finds the plan by id, or the newest plan for the target.
func (s *Service) resolvePlan(ctx context.Context, a remediateArgs) (events.Plan, error) {
	if a.PlanID != "" {
		p, err := s.getPlan(ctx, a.PlanID)
		if err != nil {
			return p, fmt.Errorf("remediate: %w", err)
		}
		return p, nil
	}
	kind := workloadKinds[a.ResourceType]
	plans, err := s.listPlans(ctx)
	if err != nil {
		return events.Plan{}, fmt.Errorf("remediate %s %s/%s: %w", kind, a.Namespace, a.ResourceName, err)
	}
	var best *events.Plan
	for i := range plans {
		p := &plans[i]
		if p.Namespace != a.Namespace || !planTargets(*p, kind, a.ResourceName) {
			continue
		}
		if best == nil || p.CreatedAt.After(best.CreatedAt) {
			best = p
		}
	}
	if best == nil {
		return events.Plan{}, fmt.Errorf("remediate %s %s/%s: %w: no stored plan for it (unapproved plans expire); call generate_remediation_plan, then approve_remediation_plan",
			kind, a.Namespace, a.ResourceName, ErrPlanNotFound)
	}
	return *best, nil
}

// planTargets reports whether a plan repairs kind/name: its target, or for
// a Pod, one of its steps' targets.
func planTargets(p events.Plan, kind, name string) bool {
	if p.Target.Kind == kind && p.Target.Name == name {
		return true
	}
	if kind != "Pod" {
		return false
	}
	for _, st := range p.Steps {
		if st.Target.Kind == "Pod" && st.Target.Name == name {
			return true
		}
	}
	return false
}

// checkRunnable decides, for a plan without an execution record, whether
// an execution is coming. A proposed plan is runnable only if an approval
// naming its digest waits on APPROVALS; since the executor claims the plan
// before it acks the decision, a plan that is still proposed with no
// pending approval and no record after the decision was looked up was not
// approved.
func (s *Service) checkRunnable(ctx context.Context, p events.Plan) (events.Plan, error) {
	switch p.State {
	case events.PlanApproved, events.PlanExecuting, events.PlanSucceeded, events.PlanFailed:
		return p, nil
	case events.PlanProposed:
	default:
		return p, fmt.Errorf("remediate plan %s: %w: it is %s, so nothing will run%s", p.ID, ErrPlanNotProposed, p.State, stateAdvice(p))
	}
	if p.DiagnosticOnly {
		return p, fmt.Errorf("remediate plan %s: %w: it is diagnostic-only (no step changes the cluster), so nothing will run", p.ID, ErrPlanNotProposed)
	}
	pending, err := s.pendingDecision(ctx, p.ID)
	if err != nil {
		return p, fmt.Errorf("remediate plan %s: %w", p.ID, err)
	}
	if pending != nil && pending.Decision == events.DecisionApproved && pending.Digest == p.Digest {
		return p, nil
	}
	if pending != nil && pending.Decision == events.DecisionRejected {
		return p, fmt.Errorf("remediate plan %s: %w: it was rejected by %s via %s", p.ID, ErrPlanNotProposed, pending.DecidedBy, pending.Via)
	}
	fresh, err := s.getPlan(ctx, p.ID)
	if err != nil {
		return p, fmt.Errorf("remediate: %w", err)
	}
	if fresh.State != events.PlanProposed {
		return s.checkRunnable(ctx, fresh)
	}
	if ex, err := s.getExecution(ctx, p.ID); err != nil || ex != nil {
		return fresh, err
	}
	return fresh, fmt.Errorf("remediate plan %s: %w: approve it first with approve_remediation_plan (plan id %s, digest %s)",
		p.ID, ErrNotApproved, p.ID, p.Digest)
}

// waitExecution watches the plan's execution record until it is final, the
// timeout passes, ctx is cancelled or the gateway shuts down. It returns
// the last record seen (nil if none) and why it stopped waiting when that
// was not a final state. Cancellation of ctx is returned as an error; the
// execution itself is never affected.
func (s *Service) waitExecution(ctx context.Context, c *call, p events.Plan, timeout time.Duration) (*events.Execution, string, error) {
	kv, err := s.executionsKV(ctx)
	if err != nil {
		return nil, "", err
	}
	key, err := events.ExecutionKey(p.ID)
	if err != nil {
		return nil, "", err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := kv.Watch(wctx, key)
	if err != nil {
		return nil, "", busErr("watch execution "+p.ID, err)
	}
	defer func() { _ = w.Stop() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()

	progress := newExecutionProgress(c, p)
	progress.report(nil)

	var ex *events.Execution
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return ex, "the request deadline passed", nil
			}
			return ex, "", fmt.Errorf("stopped waiting (the execution goes on): %w", ctx.Err())
		case <-timer.C:
			return ex, fmt.Sprintf("timeout of %s reached", timeout), nil
		case <-s.draining:
			return ex, "the gateway is shutting down", nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					continue // reported by the ctx case
				}
				return ex, "", fmt.Errorf("watch execution %s: %w: the watch closed", p.ID, ErrUnavailable)
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			if got := s.decodeExecution(p.ID, e.Value()); got != nil {
				ex = got
				progress.report(ex)
				if finalExecution(ex.State) {
					return ex, "", nil
				}
			}
		}
	}
}

// executionProgress reports an execution's progress to the caller: one
// unit per mutating step and one for the verification, only when it grows.
type executionProgress struct {
	c     *call
	total float64
	last  float64
}

func newExecutionProgress(c *call, p events.Plan) *executionProgress {
	total := float64(1) // verification
	for _, st := range p.Steps {
		if st.Mutating {
			total++
		}
	}
	return &executionProgress{c: c, total: total, last: -1}
}

// report reports the execution record ex (nil before the executor claims
// the plan) if it advanced since the last report.
func (pr *executionProgress) report(ex *events.Execution) {
	done, msg := 0.0, "waiting for the executor to claim the plan"
	if ex != nil {
		for _, r := range ex.Steps {
			if r.Status != events.StepStarted {
				done++
			}
		}
		if ex.Verification != nil || finalExecution(ex.State) {
			done = pr.total
		}
		done = min(done, pr.total)
		msg = fmt.Sprintf("execution %s: %d step result(s)", ex.State, len(ex.Steps))
	}
	if done > pr.last {
		pr.last = done
		pr.c.report(done, pr.total, msg)
	}
}

func (s *Service) executionStatusTool() (*tool, error) {
	return defineTool("get_execution_status", "Get execution status",
		"Show where a plan is: its state and, once the executor has picked it up, the execution record (state, "+
			"each step's result, the verification of the workload). Returns at once; use remediate_issue to wait.",
		readOnlyHints,
		[]argSpec{planIDArg("The plan id.", true)},
		s.executionStatus)
}

func (s *Service) executionStatus(ctx context.Context, _ *call, a planIDArgs) (ExecutionStatusOut, string, error) {
	p, perr := s.getPlan(ctx, a.PlanID)
	if perr != nil && !errors.Is(perr, ErrPlanNotFound) {
		return ExecutionStatusOut{}, "", perr
	}
	ex, err := s.getExecution(ctx, a.PlanID)
	if err != nil {
		return ExecutionStatusOut{}, "", fmt.Errorf("execution status of plan %s: %w", a.PlanID, err)
	}
	if perr != nil && ex == nil {
		return ExecutionStatusOut{}, "", perr
	}
	out := ExecutionStatusOut{PlanID: a.PlanID, Execution: executionOut(ex)}
	if perr == nil {
		out.PlanState = string(p.State)
	}
	switch {
	case ex != nil:
		out.Message = fmt.Sprintf("Plan %s: %s", a.PlanID, executionText(out.Execution))
	case p.State == events.PlanProposed:
		out.Message = fmt.Sprintf("Plan %s is proposed and has no execution yet: approve it with approve_remediation_plan (plan id %s, digest %s), or it expires at %s.",
			a.PlanID, p.ID, p.Digest, p.ExpiresAt.UTC().Format(time.RFC3339))
	default:
		out.Message = fmt.Sprintf("Plan %s is %s and has no execution record%s.", a.PlanID, p.State, stateAdvice(p))
	}
	return out, out.Message, nil
}
