package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
)

// Outcomes of kaar_executor_executions_total.
const (
	outcomeSucceeded = "succeeded"
	outcomeFailed    = "failed"
	outcomeRefused   = "refused"
	outcomeRejected  = "rejected"
)

// execute runs a claimed plan (state executing at revision rev): stale
// check, steps, verification, final state. Everything is recorded in the
// execution record and the audit trail as it happens.
func (s *Service) execute(ctx context.Context, log *slog.Logger, p events.Plan, rev uint64) {
	exec := &events.Execution{PlanID: p.ID, Digest: p.Digest, State: events.ExecutionExecuting, StartedAt: s.now().UTC()}
	s.putExecution(ctx, exec)

	if stale, err := s.preStepCheck(ctx, p); stale != nil {
		s.finishStale(ctx, log, p, rev, exec, stale)
		return
	} else if err != nil {
		s.finish(ctx, log, p, rev, exec, err, nil)
		return
	}

	s.runSteps(ctx, log, p, rev, exec, newStepRunner(s, p), nil)
}

// runSteps applies the plan's steps in order, recording each, then
// verifies and finishes. prior are the step results of an interrupted
// execution being resumed (nil for a fresh one): a patch that succeeded is
// not applied again, a recorded failure ends the plan, and a step that
// was started but not recorded is applied with the runner in resume mode,
// which recognises a patch that already took effect.
func (s *Service) runSteps(ctx context.Context, log *slog.Logger, p events.Plan, rev uint64, exec *events.Execution, runner *stepRunner, prior map[int]events.StepResult) {
	for _, st := range p.Steps {
		if r, ok := prior[st.Index]; ok {
			switch {
			case r.Status == events.StepSkipped:
				continue
			case r.Status == events.StepSucceeded && !isDeletion(st):
				// Pod deletions are run again instead: they are
				// idempotent (UID preconditions) and verification needs
				// the UIDs they deleted.
				runner.restore(st, r)
				continue
			case r.Status == events.StepFailed:
				s.finish(ctx, log, p, rev, exec, fmt.Errorf("step %d (%s) failed: %s", st.Index, st.Action, r.Message), nil)
				return
			}
		}
		if st.Mutating && !s.stillOwned(ctx, p, rev) {
			log.Warn("plan taken over by another executor before step: stopping here", slog.Int("step", st.Index))
			return
		}
		res := events.StepResult{PlanID: p.ID, Digest: p.Digest, Index: st.Index, Action: st.Action,
			Status: events.StepStarted, StartedAt: s.now().UTC()}
		setStep(exec, res)
		s.putExecution(ctx, exec)
		s.audit(ctx, auditEntry{Kind: events.AuditStepStarted, PlanID: p.ID, Digest: p.Digest,
			Message: fmt.Sprintf("step %d started: %s", st.Index, st.Title), Data: res})
		s.failpoint(fmt.Sprintf("step-started:%d", st.Index))

		start := time.Now()
		status, summary, err := runner.apply(ctx, st)
		s.metrics.stepDuration.WithLabelValues(string(st.Action), string(status)).Observe(time.Since(start).Seconds())
		s.failpoint(fmt.Sprintf("step-applied:%d", st.Index))
		res.Status, res.APIResponse, res.FinishedAt = status, summary, s.now().UTC()
		res.Generation = runner.generationAfter(st)
		switch {
		case err != nil:
			res.Message = err.Error()
		case status == events.StepSkipped:
			res.Message = fmt.Sprintf("non-mutating %s step: for people, nothing applied", st.Action)
		default:
			res.Message = st.Title
		}
		setStep(exec, res)
		s.putExecution(ctx, exec)
		s.audit(ctx, auditEntry{Kind: events.AuditStepResult, PlanID: p.ID, Digest: p.Digest,
			Message: fmt.Sprintf("step %d %s: %s", st.Index, status, summaryOr(summary, res.Message)), Data: res})
		log.Info("step finished", slog.Int("step", st.Index), slog.String("action", string(st.Action)),
			slog.String("status", string(status)), slog.String("api_response", summary))
		s.failpoint(fmt.Sprintf("step-recorded:%d", st.Index))

		if err != nil {
			if runner.stale && !runner.applied {
				s.finishStale(ctx, log, p, rev, exec, refuse(events.RefusalStale, "step %d: %s changed since planning: %v", st.Index, st.Target, err))
				return
			}
			s.finish(ctx, log, p, rev, exec, fmt.Errorf("step %d (%s) failed: %w", st.Index, st.Action, err), nil)
			return
		}
	}

	v := s.verify(ctx, log, p, runner.deleted)
	if !v.Healthy && s.cfg.UndoOnFailure && len(runner.patched) > 0 {
		s.undo(ctx, log, p, exec, runner)
	}
	s.finish(ctx, log, p, rev, exec, nil, &v)
}

// staleCheck re-reads the target: a stale refusal when it changed since
// planning, an error when it could not be read, else nothing.
func (s *Service) staleCheck(ctx context.Context, p events.Plan) (*refusal, error) {
	err := s.retry(ctx, func(ctx context.Context) error {
		err := checkStale(ctx, s.kube, p)
		var r *refusal
		if errors.As(err, &r) {
			return permanent(err)
		}
		return classify(err)
	})
	var r *refusal
	switch {
	case err == nil:
		return nil, nil
	case errors.As(err, &r):
		return r, nil
	}
	return nil, fmt.Errorf("re-read target %s: %w", p.Target, err)
}

// setStep puts res into exec.Steps, replacing the result of the same
// step if there is one.
func setStep(exec *events.Execution, res events.StepResult) {
	for i := range exec.Steps {
		if exec.Steps[i].Index == res.Index {
			exec.Steps[i] = res
			return
		}
	}
	exec.Steps = append(exec.Steps, res)
}

func isDeletion(st events.Step) bool {
	return st.Action == events.ActionDeletePod || st.Action == events.ActionDeleteEvictedPods
}

func summaryOr(summary, msg string) string {
	if summary != "" {
		return summary
	}
	return msg
}

// finish records the end of an execution: the plan's final state (CAS),
// the execution record with its verification, the execution_finished
// audit record and the metrics.
func (s *Service) finish(ctx context.Context, log *slog.Logger, p events.Plan, rev uint64, exec *events.Execution, err error, v *events.Verification) {
	ok := err == nil && v != nil && v.Healthy
	state, outcome := events.PlanFailed, outcomeFailed
	exec.State = events.ExecutionFailed
	if ok {
		state, outcome = events.PlanSucceeded, outcomeSucceeded
		exec.State = events.ExecutionSucceeded
	}
	switch {
	case err != nil:
		exec.Error = err.Error()
	case v != nil && !v.Healthy:
		exec.Error = "verification failed: " + v.Message
		if n := len(exec.Undo); n > 0 {
			undone := 0
			for _, u := range exec.Undo {
				if u.Status == events.StepSucceeded {
					undone++
				}
			}
			exec.Error += fmt.Sprintf("; undone %d of %d changed steps (remediation.undo_on_failure)", undone, n)
		}
	}
	exec.Verification = v
	exec.FinishedAt = s.now().UTC()
	if !s.setPlanState(ctx, log, p, rev, state) {
		log.Warn("plan taken over by another executor: this execution records nothing more")
		return
	}
	s.putExecution(ctx, exec)
	s.metrics.executions.WithLabelValues(outcome).Inc()
	msg := fmt.Sprintf("plan %s %s", p.ID, exec.State)
	if exec.Error != "" {
		msg += ": " + exec.Error
	}
	s.audit(ctx, auditEntry{Kind: events.AuditExecutionFinished, PlanID: p.ID, Digest: p.Digest, Message: msg, Data: exec})
	log.Info("execution finished", slog.String("state", string(exec.State)), slog.String("error", exec.Error))
}

// finishStale ends a claimed plan refused before its first step: its
// target changed since planning, or a pod to delete is not the target's.
// Nothing was applied. The plan fails, the execution is refused, and for
// a stale plan the planner is asked for a new plan.
func (s *Service) finishStale(ctx context.Context, log *slog.Logger, p events.Plan, rev uint64, exec *events.Execution, r *refusal) {
	log.Warn("plan refused before its first step", slog.String("reason", string(r.Reason)), slog.String("detail", r.Message))
	s.metrics.refusals.WithLabelValues(string(r.Reason)).Inc()
	s.metrics.executions.WithLabelValues(outcomeRefused).Inc()
	exec.State, exec.RefusalReason, exec.Error, exec.FinishedAt = events.ExecutionRefused, r.Reason, r.Message, s.now().UTC()
	if !s.setPlanState(ctx, log, p, rev, events.PlanFailed) {
		log.Warn("plan taken over by another executor: this execution records nothing more")
		return
	}
	s.putExecution(ctx, exec)
	msg := fmt.Sprintf("refused: %s: %s", r.Reason, r.Message)
	// Only a stale plan is worth planning again: a pod its target does
	// not control would be in a new plan of the same making too.
	if r.Reason == events.RefusalStale {
		if id, err := s.requestReplan(ctx, p); err != nil {
			log.Warn("ask the planner for a new plan", slog.Any("error", err))
			msg += "; asking the planner for a new plan failed: " + err.Error()
		} else {
			log.Info("planner proposed a new plan", slog.String("new_plan", id))
			msg += "; new plan proposed: " + id
		}
	}
	s.audit(ctx, auditEntry{Kind: events.AuditRefused, PlanID: p.ID, Digest: p.Digest, Message: msg, Data: exec})
	s.audit(ctx, auditEntry{Kind: events.AuditExecutionFinished, PlanID: p.ID, Digest: p.Digest, Message: fmt.Sprintf("plan %s refused: %s", p.ID, r.Reason), Data: exec})
}

// setPlanState moves a claimed plan to its final state by
// compare-and-set at the revision this execution holds. Only the executor
// running a plan writes it while it is executing, so a revision mismatch
// means either that an earlier attempt of this very write landed (the
// plan is already in state) or that another executor took the plan over
// (see resume; its resume note makes the history differ, even once it
// has finished the plan itself): then it reports false and this
// execution records nothing more. Bus errors are retried for a while: a
// plan left in executing would block its workload's history.
func (s *Service) setPlanState(ctx context.Context, log *slog.Logger, p events.Plan, rev uint64, state events.PlanState) (owned bool) {
	ctx, cancel := recordContext(ctx)
	defer cancel()
	owned = true
	err := retryRecord(ctx, func(ctx context.Context) error {
		final := p
		final.State = state
		_, err := s.plans.Update(ctx, final, rev)
		if errors.Is(err, bus.ErrRevisionMismatch) {
			cur, _, gerr := s.plans.Get(ctx, p.ID)
			switch {
			case gerr != nil:
				return gerr
			case cur.State == state && slices.Equal(cur.History, final.History):
				return nil // an earlier attempt of this very write landed
			case cur.State == events.PlanExecuting || !slices.Equal(cur.History, final.History):
				// Another executor resumed the plan (its resume note is in
				// the history), and may even have finished it: it records
				// the end, not this one.
				owned = false
				return permanent(fmt.Errorf("plan %s was taken over by another executor: %w", p.ID, errTakenOver))
			}
			return permanent(fmt.Errorf("plan %s is %s, not executing: %w", p.ID, cur.State, err))
		}
		if errors.Is(err, bus.ErrPlanNotFound) || errors.Is(err, events.ErrInvalid) {
			return permanent(err)
		}
		return err
	})
	if err != nil {
		log.Error("set plan state", slog.String("state", string(state)), slog.Any("error", err))
	}
	return owned
}

// stillOwned re-reads the plan before a step changes the cluster: a plan
// whose revision moved since this execution last wrote it was taken over
// by another executor (this one lost the bus for longer than the ack
// wait), which now runs the steps.
func (s *Service) stillOwned(ctx context.Context, p events.Plan, rev uint64) bool {
	ctx, cancel := recordContext(ctx)
	defer cancel()
	var cur uint64
	err := retryRecord(ctx, func(ctx context.Context) error {
		_, r, err := s.plans.Get(ctx, p.ID)
		cur = r
		if errors.Is(err, bus.ErrPlanNotFound) {
			return permanent(err)
		}
		return err
	})
	return err == nil && cur == rev
}
