package events

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Request/reply convention for kaar.<cluster>.svc.<service>.<verb>:
//
//   - the request body is the JSON of the verb's request type (not an
//     envelope);
//   - a successful reply body is the JSON of the verb's response type and
//     has no HeaderError header;
//   - a failed reply body is an ErrorReply and the reply carries the header
//     HeaderError = ErrorReply.Code.
//
// Servers build replies with EncodeReply, clients read them with
// DecodeReply.

// HeaderError is the NATS header set on an error reply; its value is the
// ErrorReply code.
const HeaderError = "Kaar-Error"

// Error reply codes.
const (
	// CodeInvalidArgument: the request is malformed; Field names the culprit.
	CodeInvalidArgument = "invalid_argument"
	// CodeNotFound: the incident, plan, workload or execution does not exist.
	CodeNotFound = "not_found"
	// CodeConflict: the object changed concurrently, or already exists.
	CodeConflict = "conflict"
	// CodeFailedPrecondition: the request is valid but not now (plan
	// expired, stale, not approved, protected namespace...).
	CodeFailedPrecondition = "failed_precondition"
	// CodeUnavailable: a dependency (cache not synced, bus) is not ready;
	// retry later.
	CodeUnavailable = "unavailable"
	// CodeInternal: a bug or an unexpected failure.
	CodeInternal = "internal"
)

// ErrorCodes lists every error reply code.
func ErrorCodes() []string {
	return []string{CodeInvalidArgument, CodeNotFound, CodeConflict,
		CodeFailedPrecondition, CodeUnavailable, CodeInternal}
}

// ErrorReply is the body of a failed reply. It is an error, so a handler
// can return one and a client gets one back from DecodeReply (use
// errors.As). A reply with code invalid_argument matches ErrInvalid.
type ErrorReply struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Error renders "<code>: <message>".
func (e *ErrorReply) Error() string { return e.Code + ": " + e.Message }

// Is makes an invalid_argument reply match ErrInvalid.
func (e *ErrorReply) Is(target error) bool {
	return target == ErrInvalid && e.Code == CodeInvalidArgument
}

// Validate requires a known Code and a Message.
func (e ErrorReply) Validate() error {
	if err := validateEnum("code", e.Code, ErrorCodes()); err != nil {
		return err
	}
	return requiredString("message", e.Message)
}

// NewErrorReply builds an ErrorReply for err: an *ErrorReply in err's chain
// is used as is, a ValidationError gives invalid_argument with its field,
// anything else gives code (internal when empty).
func NewErrorReply(code string, err error) *ErrorReply {
	var er *ErrorReply
	if errors.As(err, &er) {
		return er
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		return &ErrorReply{Code: CodeInvalidArgument, Message: err.Error(), Field: ve.Field}
	}
	if code == "" {
		code = CodeInternal
	}
	msg := "unknown error"
	if err != nil {
		msg = err.Error()
	}
	return &ErrorReply{Code: code, Message: msg}
}

// EncodeReply builds a reply body. With err == nil the body is the JSON of
// v and errCode is "". Otherwise the body is NewErrorReply("", err) and
// errCode is its code, which the server must set as the HeaderError header.
func EncodeReply(v any, err error) (body []byte, errCode string) {
	if err == nil {
		b, merr := json.Marshal(v)
		if merr == nil {
			return b, ""
		}
		err = fmt.Errorf("encode reply: %w", merr)
	}
	er := NewErrorReply("", err)
	b, merr := json.Marshal(er)
	if merr != nil { // an ErrorReply is three strings: cannot happen
		b = []byte(`{"code":"internal","message":"encode error reply"}`)
	}
	return b, er.Code
}

// DecodeReply reads a reply. errCode is the reply's HeaderError header
// value: when it is set the body is decoded as an ErrorReply and returned as
// the error. Otherwise the body is decoded as T (unknown fields ignored) and,
// when T is Validatable, validated.
func DecodeReply[T any](body []byte, errCode string) (T, error) {
	var v T
	if errCode != "" {
		er := &ErrorReply{}
		if err := json.Unmarshal(body, er); err != nil || er.Code == "" {
			er = &ErrorReply{Code: errCode, Message: string(body)}
		}
		return v, er
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, jsonFieldErr("reply", err)
	}
	if val, ok := any(v).(Validatable); ok {
		if err := under("reply", val.Validate()); err != nil {
			return v, err
		}
	}
	return v, nil
}

// DecodeRequest decodes a request body as T (unknown fields ignored) and
// validates it; errors are ValidationErrors naming the field, ready for
// EncodeReply.
func DecodeRequest[T Validatable](body []byte) (T, error) {
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		return v, jsonFieldErr("request", err)
	}
	return v, v.Validate()
}

// Analyze request limits.
const (
	DefaultAnalyzeLimit = 100
	MaxAnalyzeLimit     = 1000
)

// AnalyzeRequest asks the watcher for the current incidents (verb analyze).
// Every filter is optional.
type AnalyzeRequest struct {
	Namespace string    `json:"namespace,omitempty"`
	Type      IssueType `json:"type,omitempty"`
	// Class filters on the class: empty lists the failures and only
	// counts the warnings (AnalyzeResponse.Warnings), "warning" lists the
	// warnings, "failure" the failures. A Type implies its class.
	Class IssueClass `json:"class,omitempty"`
	// Owner filters on the owner's name, or "Kind/name".
	Owner string `json:"owner,omitempty"`
	// Limit is the page size: 0 means DefaultAnalyzeLimit, at most
	// MaxAnalyzeLimit.
	Limit int `json:"limit,omitempty"`
	// Cursor is the previous page's NextCursor (opaque).
	Cursor string `json:"cursor,omitempty"`
}

// Validate checks the optional filters and the limit.
func (r AnalyzeRequest) Validate() error {
	if r.Namespace != "" {
		if err := ValidateToken("namespace", r.Namespace); err != nil {
			return err
		}
	}
	if err := validateOptionalEnum("type", r.Type, IssueTypes()); err != nil {
		return err
	}
	if err := validateOptionalEnum("class", r.Class, IssueClasses()); err != nil {
		return err
	}
	if r.Type != "" && r.Class != "" && r.Type.Class() != r.Class {
		return fieldErr("class", fmt.Sprintf("%q contradicts type %s, which is of class %s", r.Class, r.Type, r.Type.Class()))
	}
	if r.Limit < 0 || r.Limit > MaxAnalyzeLimit {
		return fieldErr("limit", fmt.Sprintf("%d is not between 0 and %d", r.Limit, MaxAnalyzeLimit))
	}
	return nil
}

// ListsClass says whether the request lists incidents of type t (by its
// class: the one asked for, the type's, else the failures) and, for one
// it does not list, whether it counts it in AnalyzeResponse.Warnings (a
// warning, when no class or type was asked for). The other filters
// (namespace, type, owner) apply before it.
func (r AnalyzeRequest) ListsClass(t IssueType) (listed, counted bool) {
	class := r.Class
	if r.Type != "" {
		class = r.Type.Class()
	}
	if t.Class() == cmp.Or(class, ClassFailure) {
		return true, false
	}
	return false, class == "" && t.IsWarning()
}

// AnalyzeResponse is one page of incidents, worst first.
type AnalyzeResponse struct {
	Cluster   string     `json:"cluster"`
	Incidents []Incident `json:"incidents"`
	// Total counts every incident matching the filters, across pages.
	Total int `json:"total"`
	// ByType counts the matching incidents per type.
	ByType map[IssueType]int `json:"by_type,omitempty"`
	// BySeverity counts the matching incidents per severity.
	BySeverity map[Severity]int `json:"by_severity,omitempty"`
	// Warnings counts the open warnings per type when the request did
	// not ask for class warning (they are not listed then).
	Warnings    map[IssueType]int `json:"warnings,omitempty"`
	NextCursor  string            `json:"next_cursor,omitempty"`
	GeneratedAt time.Time         `json:"generated_at"`
}

// Validate checks the cluster, every incident and the counts.
func (r AnalyzeResponse) Validate() error {
	if err := validateCluster("cluster", r.Cluster); err != nil {
		return err
	}
	for i, in := range r.Incidents {
		if err := under(fmt.Sprintf("incidents[%d]", i), in.Validate()); err != nil {
			return err
		}
	}
	if r.Total < len(r.Incidents) {
		return fieldErr("total", fmt.Sprintf("%d is less than the %d incidents returned", r.Total, len(r.Incidents)))
	}
	for t := range r.ByType {
		if err := under("by_type", t.Validate()); err != nil {
			return err
		}
	}
	for s := range r.BySeverity {
		if err := under("by_severity", s.Validate()); err != nil {
			return err
		}
	}
	return validateTime("generated_at", r.GeneratedAt)
}

// PlanRequest asks the planner for a plan for one workload now (verb plan).
type PlanRequest struct {
	Namespace string `json:"namespace"`
	// Kind is the workload kind (Deployment, StatefulSet, DaemonSet, Pod...).
	Kind string `json:"kind"`
	Name string `json:"name"`
	// IssueType is optional: the planner uses the workload's current
	// incident when it is empty.
	IssueType IssueType `json:"issue_type,omitempty"`
	// RequestedBy is the identity that asked for the plan (the gateway's
	// caller); the planner copies it into Plan.RequestedBy, so
	// remediation.require_distinct_approver can refuse its approval by
	// the same identity. Empty for plans nobody asked for.
	RequestedBy string `json:"requested_by,omitempty"`
}

// Validate requires Namespace, Kind and Name.
func (r PlanRequest) Validate() error {
	return firstErr(
		ValidateToken("namespace", r.Namespace),
		requiredString("kind", r.Kind),
		requiredString("name", r.Name),
		validateOptionalEnum("issue_type", r.IssueType, IssueTypes()),
		validateRequester("requested_by", r.RequestedBy),
	)
}

// PlanResponse carries the stored, sealed plan.
type PlanResponse struct {
	Plan Plan `json:"plan"`
}

// Validate checks the plan.
func (r PlanResponse) Validate() error { return under("plan", r.Plan.Validate()) }

// ExecutionStatusRequest asks the executor where a plan is (verb status).
type ExecutionStatusRequest struct {
	PlanID string `json:"plan_id"`
}

// Validate requires a plan id.
func (r ExecutionStatusRequest) Validate() error { return validateUUID("plan_id", r.PlanID) }

// ExecutionStatusResponse tells a plan's state and, once the executor has
// claimed or refused it, its execution record.
type ExecutionStatusResponse struct {
	PlanID    string     `json:"plan_id"`
	PlanState PlanState  `json:"plan_state,omitempty"`
	Execution *Execution `json:"execution,omitempty"`
}

// Validate requires the plan id; the state and execution are checked when
// set.
func (r ExecutionStatusResponse) Validate() error {
	if err := firstErr(
		validateUUID("plan_id", r.PlanID),
		validateOptionalEnum("plan_state", r.PlanState, PlanStates()),
	); err != nil {
		return err
	}
	if r.Execution != nil {
		return under("execution", r.Execution.Validate())
	}
	return nil
}
