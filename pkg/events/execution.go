package events

import (
	"encoding/json"
	"fmt"
	"time"
)

// DecisionKind is an approver's answer.
type DecisionKind string

// Decisions.
const (
	DecisionApproved DecisionKind = "approved"
	DecisionRejected DecisionKind = "rejected"
)

// DecisionKinds lists every DecisionKind.
func DecisionKinds() []DecisionKind { return []DecisionKind{DecisionApproved, DecisionRejected} }

// Validate reports an unknown decision (field "decision").
func (d DecisionKind) Validate() error { return validateEnum("decision", d, DecisionKinds()) }

// EventType is the envelope type of a Decision ("dev.kaar.decision.approved").
func (d DecisionKind) EventType() string { return typePrefix + "decision." + string(d) }

// Via is the channel a decision or action came through.
type Via string

// Channels.
const (
	ViaMCP     Via = "mcp"
	ViaREST    Via = "rest"
	ViaSlack   Via = "slack"
	ViaWebhook Via = "webhook"
	ViaCLI     Via = "cli"
	// ViaAuto is an approval by policy (remediation.auto_approve).
	ViaAuto Via = "auto"
	// ViaMCPElicitation is an MCP decision the client's user confirmed in
	// a dialog the server asked for (MCP elicitation), not only the model.
	ViaMCPElicitation Via = "mcp-elicitation"
)

// Vias lists every Via.
func Vias() []Via {
	return []Via{ViaMCP, ViaREST, ViaSlack, ViaWebhook, ViaCLI, ViaAuto, ViaMCPElicitation}
}

// Validate reports an unknown channel (field "via").
func (v Via) Validate() error { return validateEnum("via", v, Vias()) }

// Decision approves or rejects exactly one plan version: it names the plan
// id and the digest the approver saw. Published on ApprovalSubject with
// Nats-Msg-Id DecisionMsgID.
type Decision struct {
	PlanID    string       `json:"plan_id"`
	Digest    string       `json:"digest"`
	Decision  DecisionKind `json:"decision"`
	DecidedBy string       `json:"decided_by"`
	Via       Via          `json:"via"`
	At        time.Time    `json:"at"`
	Reason    string       `json:"reason,omitempty"`
	// Signature is the deciding channel's (Signer.SignDecision); the
	// executor accepts it only from a key trusted for Via.
	Signature *Signature `json:"signature,omitempty"`
}

// Validate requires every field but Reason.
func (d Decision) Validate() error {
	return firstErr(
		validateUUID("plan_id", d.PlanID),
		validateDigest("digest", d.Digest),
		d.Decision.Validate(),
		requiredString("decided_by", d.DecidedBy),
		d.Via.Validate(),
		validateTime("at", d.At),
	)
}

func requiredString(field, s string) error {
	if s == "" {
		return required(field)
	}
	return nil
}

func validateDigest(field, d string) error {
	if d == "" {
		return required(field)
	}
	if len(d) != len(DigestPrefix)+64 || d[:len(DigestPrefix)] != DigestPrefix {
		return fieldErr(field, fmt.Sprintf("%q is not a plan digest (%s followed by 64 hex characters)", d, DigestPrefix))
	}
	for _, c := range d[len(DigestPrefix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fieldErr(field, fmt.Sprintf("%q is not a plan digest (%s followed by 64 hex characters)", d, DigestPrefix))
		}
	}
	return nil
}

// StepStatus is the outcome of one step.
type StepStatus string

// Step statuses.
const (
	StepStarted   StepStatus = "started"
	StepSucceeded StepStatus = "succeeded"
	StepFailed    StepStatus = "failed"
	StepSkipped   StepStatus = "skipped"
	StepUndone    StepStatus = "undone"
)

// StepStatuses lists every StepStatus.
func StepStatuses() []StepStatus {
	return []StepStatus{StepStarted, StepSucceeded, StepFailed, StepSkipped, StepUndone}
}

// Validate reports an unknown status (field "status").
func (s StepStatus) Validate() error { return validateEnum("status", s, StepStatuses()) }

// StepResult records one step's execution.
type StepResult struct {
	PlanID  string     `json:"plan_id"`
	Digest  string     `json:"digest"`
	Index   int        `json:"index"`
	Action  ActionType `json:"action"`
	Status  StepStatus `json:"status"`
	Message string     `json:"message,omitempty"`
	// APIResponse summarises the API server's answer ("200 OK: deployment.apps/web patched").
	APIResponse string `json:"api_response,omitempty"`
	// Generation is the patched object's metadata.generation after a
	// successful patch step: an executor resuming an interrupted plan
	// guards the next patch of the same object with it.
	Generation int64     `json:"generation,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	// FinishedAt is zero while Status is started.
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// Validate requires the plan, digest, action, status and start time.
func (r StepResult) Validate() error {
	return firstErr(
		validateUUID("plan_id", r.PlanID),
		validateDigest("digest", r.Digest),
		validateNonNegative("index", r.Index),
		r.Action.Validate(),
		r.Status.Validate(),
		validateTime("started_at", r.StartedAt),
		validateNotBefore("finished_at", r.FinishedAt, "started_at", r.StartedAt),
	)
}

// Verification is the executor's check of the workload after a plan ran.
type Verification struct {
	PlanID          string    `json:"plan_id"`
	Digest          string    `json:"digest"`
	Healthy         bool      `json:"healthy"`
	DesiredReplicas int32     `json:"desired_replicas"`
	ReadyReplicas   int32     `json:"ready_replicas"`
	UpdatedReplicas int32     `json:"updated_replicas"`
	FailingPods     []string  `json:"failing_pods,omitempty"`
	Message         string    `json:"message,omitempty"`
	CheckedAt       time.Time `json:"checked_at"`
}

// Validate requires the plan, digest and time; replica counts are not
// negative.
func (v Verification) Validate() error {
	return firstErr(
		validateUUID("plan_id", v.PlanID),
		validateDigest("digest", v.Digest),
		validateNonNegative("desired_replicas", v.DesiredReplicas),
		validateNonNegative("ready_replicas", v.ReadyReplicas),
		validateNonNegative("updated_replicas", v.UpdatedReplicas),
		validateTime("checked_at", v.CheckedAt),
	)
}

// ExecutionState is where an execution is.
type ExecutionState string

// Execution states.
const (
	ExecutionExecuting ExecutionState = "executing"
	ExecutionSucceeded ExecutionState = "succeeded"
	ExecutionFailed    ExecutionState = "failed"
	// ExecutionRefused: the executor did not run any step (see
	// RefusalReason).
	ExecutionRefused ExecutionState = "refused"
)

// ExecutionStates lists every ExecutionState.
func ExecutionStates() []ExecutionState {
	return []ExecutionState{ExecutionExecuting, ExecutionSucceeded, ExecutionFailed, ExecutionRefused}
}

// Validate reports an unknown state (field "state").
func (s ExecutionState) Validate() error { return validateEnum("state", s, ExecutionStates()) }

// RefusalReason says why the executor refused a plan.
type RefusalReason string

// Refusal reasons.
const (
	// RefusalExpired: the plan's expires_at had passed (or its key expired).
	RefusalExpired RefusalReason = "expired"
	// RefusalStale: the target changed since planning.
	RefusalStale RefusalReason = "stale"
	// RefusalDigestMismatch: the approval names another digest.
	RefusalDigestMismatch RefusalReason = "digest_mismatch"
	// RefusalNotApproved: no approval, a rejection, or a diagnostic-only plan.
	RefusalNotApproved RefusalReason = "not_approved"
	// RefusalAlreadyExecuted: the plan was claimed before.
	RefusalAlreadyExecuted RefusalReason = "already_executed"
	// RefusalPaused: remediation is paused by policy.
	RefusalPaused RefusalReason = "paused"
	// RefusalUntrusted: the plan is not signed by a trusted planner key,
	// or the decision not by a key trusted for its channel (or via auto
	// with auto-approval off).
	RefusalUntrusted RefusalReason = "untrusted"
	// RefusalInvalidStep: a step is outside the executor's action
	// catalogue (another object, a patch that is not a generation-guarded
	// JSON patch, a path its action may not touch, pods not listed by uid
	// or more than remediation.max_pods), whatever the plan claims.
	RefusalInvalidStep RefusalReason = "invalid_step"
)

// RefusalReasons lists every RefusalReason.
func RefusalReasons() []RefusalReason {
	return []RefusalReason{RefusalExpired, RefusalStale, RefusalDigestMismatch,
		RefusalNotApproved, RefusalAlreadyExecuted, RefusalPaused, RefusalUntrusted, RefusalInvalidStep}
}

// Validate reports an unknown reason (field "refusal_reason").
func (r RefusalReason) Validate() error {
	return validateEnum("refusal_reason", r, RefusalReasons())
}

// Execution is the executor's record of running (or refusing) a plan,
// stored in kaar_executions under the plan id.
type Execution struct {
	PlanID       string         `json:"plan_id"`
	Digest       string         `json:"digest"`
	State        ExecutionState `json:"state"`
	Steps        []StepResult   `json:"steps,omitempty"`
	Verification *Verification  `json:"verification,omitempty"`
	// Undo are the undo patches applied after a failed verification
	// (remediation.undo_on_failure), newest step first; Index and Action
	// name the step undone.
	Undo      []StepResult `json:"undo,omitempty"`
	StartedAt time.Time    `json:"started_at"`
	// FinishedAt is zero while State is executing.
	FinishedAt    time.Time     `json:"finished_at,omitzero"`
	Error         string        `json:"error,omitempty"`
	RefusalReason RefusalReason `json:"refusal_reason,omitempty"`
}

// Validate checks the fields; RefusalReason is required exactly when State
// is refused.
func (e Execution) Validate() error {
	if err := firstErr(
		validateUUID("plan_id", e.PlanID),
		validateDigest("digest", e.Digest),
		e.State.Validate(),
	); err != nil {
		return err
	}
	for i, s := range e.Undo {
		if err := under(fmt.Sprintf("undo[%d]", i), s.Validate()); err != nil {
			return err
		}
	}
	for i, s := range e.Steps {
		if err := under(fmt.Sprintf("steps[%d]", i), s.Validate()); err != nil {
			return err
		}
	}
	if e.Verification != nil {
		if err := under("verification", e.Verification.Validate()); err != nil {
			return err
		}
	}
	if err := firstErr(
		validateTime("started_at", e.StartedAt),
		validateNotBefore("finished_at", e.FinishedAt, "started_at", e.StartedAt),
	); err != nil {
		return err
	}
	if e.State == ExecutionRefused {
		return e.RefusalReason.Validate()
	}
	if e.RefusalReason != "" {
		return fieldErr("refusal_reason", fmt.Sprintf("set, but state is %q, not %q", e.State, ExecutionRefused))
	}
	return nil
}

// AuditKind is what an audit record records.
type AuditKind string

// Audit kinds.
const (
	AuditPlanProposed       AuditKind = "plan_proposed"
	AuditPlanSuperseded     AuditKind = "plan_superseded"
	AuditPlanExpired        AuditKind = "plan_expired"
	AuditApproved           AuditKind = "approved"
	AuditRejected           AuditKind = "rejected"
	AuditAutoApproved       AuditKind = "auto_approved"
	AuditClaimed            AuditKind = "claimed"
	AuditRefused            AuditKind = "refused"
	AuditStepStarted        AuditKind = "step_started"
	AuditStepResult         AuditKind = "step_result"
	AuditVerified           AuditKind = "verified"
	AuditVerificationFailed AuditKind = "verification_failed"
	AuditUndo               AuditKind = "undo"
	// AuditResumed: an executor took over an execution that an executor
	// crash interrupted (its claiming decision was redelivered).
	AuditResumed           AuditKind = "resumed"
	AuditExecutionFinished AuditKind = "execution_finished"
)

// AuditKinds lists every AuditKind.
func AuditKinds() []AuditKind {
	return []AuditKind{AuditPlanProposed, AuditPlanSuperseded, AuditPlanExpired,
		AuditApproved, AuditRejected, AuditAutoApproved, AuditClaimed, AuditRefused,
		AuditStepStarted, AuditStepResult, AuditVerified, AuditVerificationFailed,
		AuditUndo, AuditResumed, AuditExecutionFinished}
}

// Validate reports an unknown kind (field "kind").
func (k AuditKind) Validate() error { return validateEnum("kind", k, AuditKinds()) }

// EventType is the envelope type of an AuditRecord of this kind
// ("dev.kaar.audit.approved").
func (k AuditKind) EventType() string { return typePrefix + "audit." + string(k) }

// AuditRecord is one entry of the audit trail, published on AuditSubject
// with Nats-Msg-Id AuditMsgID(ID).
type AuditRecord struct {
	ID     string    `json:"id"`
	PlanID string    `json:"plan_id"`
	Digest string    `json:"digest,omitempty"`
	Kind   AuditKind `json:"kind"`
	// Actor is who did it: a person ("alice@example.com") or a service
	// ("kaar-executor").
	Actor   string    `json:"actor"`
	Via     Via       `json:"via,omitempty"`
	At      time.Time `json:"at"`
	Message string    `json:"message,omitempty"`
	// Data carries the record's subject matter as JSON: a Decision for
	// approved/rejected, a StepResult for step_*, a Verification for
	// verified/verification_failed, an Execution for execution_finished and
	// refused, a Plan for plan_*.
	Data json.RawMessage `json:"data,omitempty"`
}

// Validate requires ID, PlanID, Kind, Actor and At; Digest and Via are
// checked when set and Data must be valid JSON.
func (a AuditRecord) Validate() error {
	if err := firstErr(
		validateUUID("id", a.ID),
		validateUUID("plan_id", a.PlanID),
	); err != nil {
		return err
	}
	if a.Digest != "" {
		if err := validateDigest("digest", a.Digest); err != nil {
			return err
		}
	}
	return firstErr(
		a.Kind.Validate(),
		requiredString("actor", a.Actor),
		validateOptionalEnum("via", a.Via, Vias()),
		validateTime("at", a.At),
		validateJSON("data", a.Data),
	)
}

// MaxIdentityLen bounds an identity recorded in a plan or a decision
// (requested_by).
const MaxIdentityLen = 256

// validateRequester accepts an empty identity or printable text of at
// most MaxIdentityLen bytes: identities are shown to people.
func validateRequester(field, s string) error {
	if len(s) > MaxIdentityLen {
		return fieldErr(field, fmt.Sprintf("is %d bytes long (at most %d)", len(s), MaxIdentityLen))
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fieldErr(field, fmt.Sprintf("%q contains a control character", s))
		}
	}
	return nil
}
