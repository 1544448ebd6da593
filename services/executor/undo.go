package executor

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/kaar-dev/kaar/pkg/events"
)

// undo reverts, newest first, the patch steps of a plan whose
// verification failed, with the undo patches the planner wrote. Each undo
// patch is guarded by the generation this plan left the object at, so a
// change somebody made since is never overwritten: that undo fails and
// the rest are not attempted. Every attempt is recorded in exec.Undo and
// the audit trail.
func (s *Service) undo(ctx context.Context, log *slog.Logger, p events.Plan, exec *events.Execution, runner *stepRunner) {
	applied := slices.Clone(runner.patched) // runner.patch appends the undo patches
	for _, st := range slices.Backward(applied) {
		res := events.StepResult{PlanID: p.ID, Digest: p.Digest, Index: st.Index, Action: st.Action, StartedAt: s.now().UTC()}
		var err error
		if len(st.UndoPatch) == 0 {
			err = fmt.Errorf("step %d has no undo patch: %s", st.Index, st.Undo)
		} else {
			undoStep := st
			undoStep.Patch, undoStep.Title = st.UndoPatch, "undo: "+st.Title
			res.APIResponse, err = runner.patch(ctx, resolveNamespace(st.Target, p.Namespace), undoStep)
		}
		res.FinishedAt = s.now().UTC()
		res.Status, res.Message = events.StepSucceeded, "undone: "+st.Title
		if err != nil {
			res.Status, res.Message = events.StepFailed, "undo failed: "+err.Error()
			if res.APIResponse == "" {
				res.APIResponse = apiSummary(err)
			}
		}
		exec.Undo = append(exec.Undo, res)
		s.putExecution(ctx, exec)
		s.audit(ctx, auditEntry{Kind: events.AuditUndo, PlanID: p.ID, Digest: p.Digest,
			Message: fmt.Sprintf("undo of step %d %s: %s", st.Index, res.Status, summaryOr(res.APIResponse, res.Message)), Data: res})
		log.Info("undo", slog.Int("step", st.Index), slog.String("status", string(res.Status)), slog.String("api_response", res.APIResponse))
		if err != nil {
			return
		}
	}
}

func resolveNamespace(ref events.ObjectRef, ns string) events.ObjectRef {
	if ref.Namespace == "" {
		ref.Namespace = ns
	}
	return ref
}
