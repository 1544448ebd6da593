package executor

import (
	"errors"
	"fmt"

	"github.com/kaar-dev/kaar/pkg/events"
)

// Sentinel errors, one per refusal reason, so callers (and tests) can
// test a refusal with errors.Is.
var (
	// ErrPlanExpired: the plan's expires_at passed (by the executor's
	// clock) or its key expired before the approval was processed.
	ErrPlanExpired = errors.New("plan expired")
	// ErrDigestMismatch: the decision names a digest other than the plan's.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrStale: the target changed since planning.
	ErrStale = errors.New("target changed since planning")
	// ErrNotApproved: the plan is not in a state an approval can start
	// (rejected, superseded, diagnostic-only, another cluster's, a
	// protected namespace).
	ErrNotApproved = errors.New("plan not approvable")
	// ErrAlreadyExecuted: the plan was claimed before.
	ErrAlreadyExecuted = errors.New("plan already executed")
	// ErrPaused: remediation.paused is set.
	ErrPaused = errors.New("remediation paused")
	// ErrUnsupportedKind: the executor has no typed client for the kind.
	ErrUnsupportedKind = errors.New("unsupported kind")
	// ErrUnsupportedStep: a mutating step the executor cannot apply (no
	// patch and not a delete).
	ErrUnsupportedStep = errors.New("unsupported step")
	// ErrInvalidStep: a step outside the action catalogue (another
	// object, an unguarded or non-JSON patch, a path its action may not
	// touch, too many or unlisted pods).
	ErrInvalidStep = errors.New("step outside the action catalogue")
)

// refusal is a refused decision: the reason recorded and a message for
// people.
type refusal struct {
	Reason  events.RefusalReason
	Message string
}

func (r *refusal) Error() string { return fmt.Sprintf("refused (%s): %s", r.Reason, r.Message) }

// Is matches the sentinel of the reason.
func (r *refusal) Is(target error) bool { return reasonErr(r.Reason) == target }

func reasonErr(r events.RefusalReason) error {
	switch r {
	case events.RefusalExpired:
		return ErrPlanExpired
	case events.RefusalDigestMismatch:
		return ErrDigestMismatch
	case events.RefusalStale:
		return ErrStale
	case events.RefusalNotApproved:
		return ErrNotApproved
	case events.RefusalAlreadyExecuted:
		return ErrAlreadyExecuted
	case events.RefusalPaused:
		return ErrPaused
	case events.RefusalInvalidStep:
		return ErrInvalidStep
	}
	return nil
}

func refuse(reason events.RefusalReason, format string, a ...any) *refusal {
	return &refusal{Reason: reason, Message: fmt.Sprintf(format, a...)}
}

// errTakenOver: another executor resumed the plan this one was executing
// (this one lost the bus for longer than the consumer's ack wait).
var errTakenOver = errors.New("taken over by another executor")
