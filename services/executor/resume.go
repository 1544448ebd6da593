package executor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// resume takes over a plan whose execution an executor crash interrupted.
// The decision that claimed it was never acknowledged, so JetStream
// redelivers it once the ack wait passes without the in-progress signal
// of a live executor; the plan is still executing. What the execution
// record says was done is not done again:
//
//   - no record: the crash came between the claim and the first record;
//     nothing was applied and the execution starts from the stale check;
//   - a final record: the crash came between the record and the plan's
//     final state; only the plan state is completed;
//   - otherwise the steps go on from the first one not recorded as done
//     (see runSteps), then verification.
//
// The executor takes the plan over by compare-and-set (a note on the plan):
// an executor that was only cut off from the bus, not dead, sees the
// revision move and stops before its next step (see stillOwned).
func (s *Service) resume(ctx context.Context, log *slog.Logger, p events.Plan, rev uint64, exec *events.Execution) error {
	log = log.With(slog.Bool("resumed", true))
	if exec != nil && exec.State != events.ExecutionExecuting {
		state := events.PlanFailed
		if exec.State == events.ExecutionSucceeded {
			state = events.PlanSucceeded
		}
		log.Warn("interrupted after the execution finished: completing the plan state", slog.String("state", string(state)))
		s.setPlanState(ctx, log, p, rev, state)
		return nil
	}
	taken := p
	taken.History = append(slices.Clone(p.History), fmt.Sprintf("%s%s", resumeNotePrefix, s.now().UTC().Format(time.RFC3339Nano)))
	newRev, err := s.plans.Update(ctx, taken, rev)
	if err != nil {
		// Someone else moved the plan first: decide again later.
		return transient(fmt.Errorf("take over plan %s: %w", p.ID, err))
	}
	p, rev = taken, newRev
	s.metrics.resumed.Inc()
	untrack := s.track(p.ID)
	defer untrack()
	// The steps are checked again: the claim may predate the catalogue
	// (an executor upgraded mid-plan), and no step of a plan outside it
	// runs, whatever was done before.
	if r := validatePlanSteps(p, s.cfg.catalogue()); r != nil {
		if exec == nil {
			exec = &events.Execution{PlanID: p.ID, Digest: p.Digest, State: events.ExecutionExecuting, StartedAt: s.now().UTC()}
		}
		s.finishStale(ctx, log, p, rev, exec, r)
		return nil
	}
	if exec == nil {
		s.audit(ctx, auditEntry{Kind: events.AuditResumed, PlanID: p.ID, Digest: p.Digest,
			Message: fmt.Sprintf("resumed plan %s after an interruption between the claim and the first step", p.ID)})
		log.Warn("resuming an interrupted execution: no step was recorded")
		s.execute(ctx, log, p, rev)
		return nil
	}
	prior := map[int]events.StepResult{}
	var done []string
	for _, r := range exec.Steps {
		prior[r.Index] = r
		done = append(done, fmt.Sprintf("step %d %s", r.Index, r.Status))
	}
	if len(done) == 0 {
		done = append(done, "no step started")
	}
	s.audit(ctx, auditEntry{Kind: events.AuditResumed, PlanID: p.ID, Digest: p.Digest, Data: exec,
		Message: fmt.Sprintf("resumed plan %s after an interruption (%s)", p.ID, strings.Join(done, ", "))})
	log.Warn("resuming an interrupted execution", slog.String("recorded", strings.Join(done, ", ")))
	runner := newStepRunner(s, p)
	runner.resuming = true
	if len(exec.Steps) == 0 {
		// Interrupted before the first step: the stale and pod checks
		// may not have run.
		if stale, err := s.preStepCheck(ctx, p); stale != nil {
			s.finishStale(ctx, log, p, rev, exec, stale)
			return nil
		} else if err != nil {
			s.finish(ctx, log, p, rev, exec, err, nil)
			return nil
		}
	}
	s.runSteps(ctx, log, p, rev, exec, runner, prior)
	return nil
}

// resumeNotePrefix starts the note a resuming executor adds to the plan.
const resumeNotePrefix = "executor: resumed after an interruption at "

// track marks plan id as executing in this process until the returned
// function is called.
func (s *Service) track(id string) (done func()) {
	ch := make(chan struct{})
	s.inflightMu.Lock()
	s.inflight[id] = ch
	s.inflightMu.Unlock()
	return func() {
		s.inflightMu.Lock()
		delete(s.inflight, id)
		s.inflightMu.Unlock()
		close(ch)
	}
}

// runningHere returns a channel closed when this process's execution of
// plan id ends, or nil when this process is not executing it.
func (s *Service) runningHere(id string) <-chan struct{} {
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	if ch, ok := s.inflight[id]; ok {
		return ch
	}
	return nil
}

// EnvCrashAt is the environment variable the executor commands read
// Config.CrashAt from.
const EnvCrashAt = "KAAR_EXECUTOR_CRASH_AT"

func validCrashAt(v string) bool {
	if v == "claimed" {
		return true
	}
	point, n, ok := strings.Cut(v, ":")
	if !ok || (point != "step-started" && point != "step-applied" && point != "step-recorded") {
		return false
	}
	i, err := strconv.Atoi(n)
	return err == nil && i >= 0
}

// failpoint kills the process (SIGKILL, no clean-up) when name is the
// configured CrashAt point: the crash tests' way to stop an executor at
// an exact step boundary.
func (s *Service) failpoint(name string) {
	if s.cfg.CrashAt == "" || s.cfg.CrashAt != name {
		return
	}
	s.log.Warn("failpoint reached: killing the process", slog.String("failpoint", name))
	self, err := os.FindProcess(os.Getpid())
	if err == nil {
		err = self.Kill()
	}
	if err != nil {
		s.log.Error("failpoint: kill", slog.Any("error", err))
	}
	select {} // the signal is on its way
}
