package mcpgateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
)

// Error classes. Every error a tool returns matches exactly one of them with
// errors.Is; it decides the MCP text, the REST status and the metrics
// outcome.
var (
	// ErrInvalidArgument: a tool argument is missing or wrong (REST 400).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound: the tool, plan or execution does not exist (REST 404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request is valid but not now, or not any more
	// (REST 409): digest mismatch, plan expired, not proposed, not approved.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: the bus or a service did not answer (REST 503).
	ErrUnavailable = errors.New("unavailable")
	// ErrForbidden: the caller's role does not allow the tool, or the
	// approval needs a person the channel cannot reach (REST 403).
	ErrForbidden = errors.New("forbidden")
	// ErrNotConfirmed: the person asked to confirm an approval declined or
	// cancelled; nothing was published (REST 409, never over REST today).
	ErrNotConfirmed = errors.New("not confirmed")
)

// Specific errors, each matching one class above.
var (
	// ErrUnknownTool: no tool of that name (matches ErrNotFound).
	ErrUnknownTool = fmt.Errorf("unknown tool: %w", ErrNotFound)
	// ErrPlanNotFound: no such plan, or its approval window passed
	// unclaimed so its key expired (matches ErrNotFound).
	ErrPlanNotFound = fmt.Errorf("plan not found: %w", ErrNotFound)
	// ErrDigestMismatch: the approval names a digest other than the plan's
	// (matches ErrConflict).
	ErrDigestMismatch = fmt.Errorf("digest mismatch: %w", ErrConflict)
	// ErrPlanExpired: the plan's expires_at has passed (matches ErrConflict).
	ErrPlanExpired = fmt.Errorf("plan expired: %w", ErrConflict)
	// ErrPlanNotProposed: the plan was already decided, executed,
	// superseded or is diagnostic-only (matches ErrConflict).
	ErrPlanNotProposed = fmt.Errorf("plan not proposed: %w", ErrConflict)
	// ErrNotApproved: remediate_issue found a plan nobody approved
	// (matches ErrConflict).
	ErrNotApproved = fmt.Errorf("plan not approved: %w", ErrConflict)
	// ErrConfirmationRequired: a decision by an assistant that no person
	// confirmed: over REST, or from an MCP client that cannot ask its
	// user with mcp.approval.without_elicitation = refuse (matches
	// ErrForbidden).
	ErrConfirmationRequired = fmt.Errorf("the decision needs a person's confirmation: %w", ErrForbidden)
	// ErrSameRequester: an approval by the identity that asked for the
	// plan, with remediation.require_distinct_approver (matches
	// ErrForbidden).
	ErrSameRequester = fmt.Errorf("approval by the plan's requester: %w", ErrForbidden)
	// ErrIncidentNotFound: no open incident has that id (matches
	// ErrNotFound).
	ErrIncidentNotFound = fmt.Errorf("incident not found: %w", ErrNotFound)
)

// ArgError is a bad tool argument: Field is the argument's name (a JSON
// path for nested values), Allowed the accepted values when they are a
// list. It matches ErrInvalidArgument.
type ArgError struct {
	Field   string
	Problem string
	Allowed []string
}

// Error renders `argument "namespace": "Foo" is not a DNS label (allowed: ...)`.
func (e *ArgError) Error() string {
	var b strings.Builder
	if e.Field != "" {
		fmt.Fprintf(&b, "argument %q: ", e.Field)
	}
	b.WriteString(e.Problem)
	if len(e.Allowed) > 0 {
		b.WriteString(" (allowed: " + strings.Join(e.Allowed, ", ") + ")")
	}
	return b.String()
}

// Is makes every ArgError match ErrInvalidArgument.
func (e *ArgError) Is(target error) bool { return target == ErrInvalidArgument }

func argErr(field, problem string, allowed ...string) error {
	return &ArgError{Field: field, Problem: problem, Allowed: allowed}
}

// remoteError is an error reply of another service, classified by its code.
type remoteError struct {
	service string
	reply   *events.ErrorReply
	// field is the reply's field translated to the tool's argument name.
	field string
}

func (e *remoteError) Error() string {
	msg := e.service + " answered " + e.reply.Code + ": " + e.reply.Message
	if e.field != "" && !strings.Contains(e.reply.Message, e.field) {
		msg += fmt.Sprintf(" (argument %q)", e.field)
	}
	return msg
}

func (e *remoteError) Is(target error) bool {
	switch e.reply.Code {
	case events.CodeInvalidArgument:
		return target == ErrInvalidArgument
	case events.CodeNotFound:
		return target == ErrNotFound
	case events.CodeConflict, events.CodeFailedPrecondition:
		return target == ErrConflict
	case events.CodeUnavailable:
		return target == ErrUnavailable
	}
	return false
}

// Outcome labels of kaar_mcpgateway_tool_calls_total.
const (
	outcomeOK          = "ok"
	outcomeInvalid     = "invalid_argument"
	outcomeNotFound    = "not_found"
	outcomeConflict    = "conflict"
	outcomeUnavailable = "unavailable"
	outcomeCanceled    = "canceled"
	outcomeInternal    = "internal"
	outcomeForbidden   = "forbidden"
	outcomeDeclined    = "declined"
	// outcomeInputRequired: the call asked the client for input (the
	// confirmation of an approval) and will be called again.
	outcomeInputRequired = "input_required"
	// outcomeUnauthenticated is the REST code of a 401; never a tool
	// outcome (the call does not reach a tool).
	outcomeUnauthenticated = "unauthenticated"
	// outcomeUnsupportedMedia is the REST code of a 415 (a POST body not
	// declared application/json); never a tool outcome.
	outcomeUnsupportedMedia = "unsupported_media_type"
)

// classify maps an error to its metrics outcome, REST status and the error
// code shown to REST clients.
func classify(err error) (outcome string, status int) {
	switch {
	case err == nil:
		return outcomeOK, http.StatusOK
	case errors.As(err, new(*inputRequired)):
		return outcomeInputRequired, http.StatusOK
	case errors.Is(err, ErrForbidden):
		return outcomeForbidden, http.StatusForbidden
	case errors.Is(err, ErrNotConfirmed):
		return outcomeDeclined, http.StatusConflict
	case errors.Is(err, ErrInvalidArgument):
		return outcomeInvalid, http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return outcomeNotFound, http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return outcomeConflict, http.StatusConflict
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return outcomeUnavailable, http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		// The client went away; 499 is nginx's "client closed request".
		return outcomeCanceled, 499
	}
	return outcomeInternal, http.StatusInternalServerError
}

// errorField returns the argument an error names, if any.
func errorField(err error) (field string, allowed []string) {
	var ae *ArgError
	if errors.As(err, &ae) {
		return ae.Field, ae.Allowed
	}
	var re *remoteError
	if errors.As(err, &re) {
		return re.field, nil
	}
	return "", nil
}
