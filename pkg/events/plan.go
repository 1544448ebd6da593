package events

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// RiskLevel grades what a step or plan can break.
type RiskLevel string

// Risk levels from harmless to dangerous.
const (
	RiskNone   RiskLevel = "none"
	RiskLow    RiskLevel = "low"
	RiskMedium RiskLevel = "medium"
	RiskHigh   RiskLevel = "high"
)

// RiskLevels lists every RiskLevel from harmless to dangerous.
func RiskLevels() []RiskLevel { return []RiskLevel{RiskNone, RiskLow, RiskMedium, RiskHigh} }

// Validate reports an unknown risk level (field "risk").
func (r RiskLevel) Validate() error { return validateEnum("risk", r, RiskLevels()) }

// PlanState is where a plan is in its lifecycle.
type PlanState string

// Plan states. Succeeded, failed, rejected, expired and superseded are
// terminal. See CanTransition.
const (
	PlanProposed   PlanState = "proposed"
	PlanApproved   PlanState = "approved"
	PlanExecuting  PlanState = "executing"
	PlanSucceeded  PlanState = "succeeded"
	PlanFailed     PlanState = "failed"
	PlanRejected   PlanState = "rejected"
	PlanExpired    PlanState = "expired"
	PlanSuperseded PlanState = "superseded"
)

// PlanStates lists every PlanState.
func PlanStates() []PlanState {
	return []PlanState{PlanProposed, PlanApproved, PlanExecuting, PlanSucceeded,
		PlanFailed, PlanRejected, PlanExpired, PlanSuperseded}
}

// Validate reports an unknown plan state (field "state").
func (s PlanState) Validate() error { return validateEnum("state", s, PlanStates()) }

// planTransitions is the allowed state machine.
//
//	proposed  -> approved | executing | rejected | expired | superseded | failed
//	approved  -> executing | expired | superseded | failed
//	executing -> succeeded | failed
//
// proposed -> executing is the executor's claim after an approval message
// (the KV entry need not pass through approved); -> failed from proposed or
// approved records a refusal (stale target, digest mismatch).
var planTransitions = map[PlanState][]PlanState{
	PlanProposed:  {PlanApproved, PlanExecuting, PlanRejected, PlanExpired, PlanSuperseded, PlanFailed},
	PlanApproved:  {PlanExecuting, PlanExpired, PlanSuperseded, PlanFailed},
	PlanExecuting: {PlanSucceeded, PlanFailed},
}

// CanTransition reports whether a plan may move from one state to another.
// Staying in the same state is not a transition.
func CanTransition(from, to PlanState) bool {
	return slices.Contains(planTransitions[from], to)
}

// Terminal reports a state with no way out.
func (s PlanState) Terminal() bool {
	return s.Validate() == nil && len(planTransitions[s]) == 0
}

// ActionType is a typed remediation step the executor knows how to perform
// through client-go. It is never a shell command.
type ActionType string

// Actions. Diagnostic and CheckLogs are non-mutating steps for people.
const (
	ActionRollback            ActionType = "rollback"
	ActionSetImage            ActionType = "set_image"
	ActionSetMemoryLimit      ActionType = "set_memory_limit"
	ActionRolloutRestart      ActionType = "rollout_restart"
	ActionDeletePod           ActionType = "delete_pod"
	ActionDeleteEvictedPods   ActionType = "delete_evicted_pods"
	ActionAddToleration       ActionType = "add_toleration"
	ActionSetNodeSelector     ActionType = "set_node_selector"
	ActionSetResourceRequests ActionType = "set_resource_requests"
	ActionDiagnostic          ActionType = "diagnostic"
	ActionCheckLogs           ActionType = "check_logs"
)

// Step parameter names used by the known action shapes.
const (
	ParamContainer = "container"
	ParamImage     = "image"
	ParamMemory    = "memory"
	ParamCPU       = "cpu"
	ParamRevision  = "revision"
	ParamKey       = "key"
	ParamOperator  = "operator"
	ParamValue     = "value"
	ParamEffect    = "effect"
)

// ActionTypes lists every ActionType.
func ActionTypes() []ActionType {
	return []ActionType{ActionRollback, ActionSetImage, ActionSetMemoryLimit,
		ActionRolloutRestart, ActionDeletePod, ActionDeleteEvictedPods,
		ActionAddToleration, ActionSetNodeSelector, ActionSetResourceRequests,
		ActionSetServiceSelector, ActionSetServiceTargetPort,
		ActionDiagnostic, ActionCheckLogs}
}

// Validate reports an unknown action (field "action").
func (a ActionType) Validate() error { return validateEnum("action", a, ActionTypes()) }

// Mutating reports whether the action changes the cluster.
func (a ActionType) Mutating() bool {
	return a.Validate() == nil && a != ActionDiagnostic && a != ActionCheckLogs
}

// RequiredParams lists the params a step of this action needs when it
// carries no Patch. set_node_selector has no param shape: it needs a Patch
// or at least one param (label=value). set_resource_requests also needs one
// of "cpu" or "memory".
func (a ActionType) RequiredParams() []string {
	switch a {
	case ActionSetImage:
		return []string{ParamContainer, ParamImage}
	case ActionSetMemoryLimit:
		return []string{ParamContainer, ParamMemory}
	case ActionSetResourceRequests:
		return []string{ParamContainer}
	case ActionAddToleration:
		return []string{ParamKey}
	case ActionSetServiceSelector:
		return []string{ParamSelector, ParamFrom}
	case ActionSetServiceTargetPort:
		return []string{ParamPort, ParamTargetPort, ParamFrom}
	}
	return nil
}

// PatchType is the Kubernetes patch flavour of Step.Patch.
type PatchType string

// Patch types ("" when the step has no patch).
const (
	PatchNone      PatchType = ""
	PatchJSON      PatchType = "json"
	PatchMerge     PatchType = "merge"
	PatchStrategic PatchType = "strategic"
)

// PatchTypes lists the non-empty PatchTypes.
func PatchTypes() []PatchType { return []PatchType{PatchJSON, PatchMerge, PatchStrategic} }

// Validate reports an unknown patch type (field "patch_type"); "" is valid.
func (p PatchType) Validate() error { return validateOptionalEnum("patch_type", p, PatchTypes()) }

// DryRunResult is the outcome of the planner's server-side dry run of a
// mutating step.
type DryRunResult struct {
	OK      bool      `json:"ok"`
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at"`
}

// Validate requires At.
func (d DryRunResult) Validate() error { return validateTime("at", d.At) }

// Step is one typed action of a plan.
type Step struct {
	Index  int        `json:"index"`
	Action ActionType `json:"action"`
	Title  string     `json:"title"`
	// Params are the action's arguments (see ActionType.RequiredParams).
	Params map[string]string `json:"params,omitempty"`
	// Target is the object the step acts on; required for mutating steps.
	Target    ObjectRef       `json:"target,omitzero"`
	PatchType PatchType       `json:"patch_type,omitempty"`
	Patch     json.RawMessage `json:"patch,omitempty"`
	// Kubectl is the equivalent command, for people only: never executed.
	Kubectl       string    `json:"kubectl,omitempty"`
	Risk          RiskLevel `json:"risk"`
	Mutating      bool      `json:"mutating"`
	Preconditions []string  `json:"preconditions,omitempty"`
	// Undo says how to undo the step; UndoPatch, when set, is the patch that
	// does it (same PatchType).
	Undo         string          `json:"undo,omitempty"`
	UndoPatch    json.RawMessage `json:"undo_patch,omitempty"`
	SuccessCheck string          `json:"success_check,omitempty"`
	DryRun       *DryRunResult   `json:"dry_run,omitempty"`
}

// Validate checks the step on its own (Plan.Validate checks Index).
// Mutating must equal Action.Mutating(); a mutating step needs a Target and
// either a Patch (with a PatchType) or its action's params.
func (s Step) Validate() error {
	if s.Index < 0 {
		return fieldErr("index", "must not be negative")
	}
	if err := s.Action.Validate(); err != nil {
		return err
	}
	if s.Title == "" {
		return required("title")
	}
	if err := s.Risk.Validate(); err != nil {
		return err
	}
	if s.Mutating != s.Action.Mutating() {
		return fieldErr("mutating", fmt.Sprintf("must be %t for action %q", s.Action.Mutating(), s.Action))
	}
	if err := s.validatePatch(); err != nil {
		return err
	}
	if s.DryRun != nil {
		if err := under("dry_run", s.DryRun.Validate()); err != nil {
			return err
		}
	}
	if !s.Mutating {
		if !s.Target.IsZero() {
			return under("target", s.Target.Validate())
		}
		return nil
	}
	return s.validateChange()
}

// validatePatch checks the patch, the undo patch and their patch type
// together.
func (s Step) validatePatch() error {
	if err := s.PatchType.Validate(); err != nil {
		return err
	}
	if err := validateJSON("patch", s.Patch); err != nil {
		return err
	}
	if err := validateJSON("undo_patch", s.UndoPatch); err != nil {
		return err
	}
	if len(s.Patch) > 0 && s.PatchType == PatchNone {
		return fieldErr("patch_type", "required with a patch", enumStrings(PatchTypes())...)
	}
	if len(s.Patch) == 0 && s.PatchType != PatchNone {
		return fieldErr("patch", "required with a patch_type")
	}
	if len(s.UndoPatch) > 0 && s.PatchType == PatchNone {
		return fieldErr("patch_type", "required with an undo_patch", enumStrings(PatchTypes())...)
	}
	return nil
}

// validateChange checks what a mutating step changes: a namespaced target,
// and either a patch or its action's params.
func (s Step) validateChange() error {
	if s.Target.IsZero() {
		return required("target")
	}
	if err := under("target", s.Target.Validate()); err != nil {
		return err
	}
	if s.Target.Namespace == "" {
		return required("target.namespace")
	}
	if s.Action == ActionDeletePod && s.Target.Kind != "Pod" {
		return fieldErr("target.kind", fmt.Sprintf("must be Pod for action %q, not %q", s.Action, s.Target.Kind))
	}
	if s.Action == ActionSetServiceSelector || s.Action == ActionSetServiceTargetPort {
		return s.validateServiceParams()
	}
	if len(s.Patch) > 0 {
		return nil
	}
	for _, p := range s.Action.RequiredParams() {
		if s.Params[p] == "" {
			return fieldErr("params."+p, fmt.Sprintf("required for action %q without a patch", s.Action))
		}
	}
	switch s.Action {
	case ActionSetResourceRequests:
		if s.Params[ParamCPU] == "" && s.Params[ParamMemory] == "" {
			return fieldErr("params.cpu", fmt.Sprintf("cpu or memory required for action %q without a patch", s.Action))
		}
	case ActionSetNodeSelector:
		if len(s.Params) == 0 {
			return fieldErr("patch", fmt.Sprintf("a patch or node selector params required for action %q", s.Action))
		}
	}
	return nil
}

func validateJSON(field string, raw json.RawMessage) error {
	if len(raw) > 0 && !json.Valid(raw) {
		return fieldErr(field, "is not valid JSON")
	}
	return nil
}

// EvidenceKind says what a piece of evidence is.
type EvidenceKind string

// Evidence kinds.
const (
	EvidenceLogs           EvidenceKind = "logs"
	EvidenceEvents         EvidenceKind = "events"
	EvidenceExitCode       EvidenceKind = "exit_code"
	EvidenceResources      EvidenceKind = "resources"
	EvidenceRolloutHistory EvidenceKind = "rollout_history"
	EvidenceOwnerChain     EvidenceKind = "owner_chain"
	EvidenceImagePull      EvidenceKind = "image_pull"
	EvidenceScheduling     EvidenceKind = "scheduling"
	EvidenceEviction       EvidenceKind = "eviction"
	// EvidenceConditions: the status conditions of the workload (a
	// Deployment's Progressing, a Job's Failed) and its recent runs.
	EvidenceConditions EvidenceKind = "conditions"
	// EvidencePolicy: the policy object that refused the pods (a
	// ResourceQuota, LimitRange, Pod Security level, admission webhook or
	// missing ServiceAccount), as read or as the controller's message
	// names it.
	EvidencePolicy EvidenceKind = "policy"
	// EvidenceTraffic: a Service and what it routes to: its selector and
	// ports, its EndpointSlices' endpoints, the pods it selects with their
	// container ports, and the workloads whose pod labels nearly match.
	EvidenceTraffic EvidenceKind = "traffic"
	// EvidenceStorage: the volumes a pod waits for: its claims with their
	// phase, StorageClass and PersistentVolume (and its node affinity),
	// the StorageClasses, the provisioner's events, and where the pod
	// template references a missing ConfigMap, Secret or claim.
	EvidenceStorage EvidenceKind = "storage"
	// EvidenceProbe: a container's liveness, readiness or startup probe
	// as its pod template declares it, and the kubelet's Unhealthy and
	// Killing events about it.
	EvidenceProbe EvidenceKind = "probe"
)

// EvidenceKinds lists every EvidenceKind.
func EvidenceKinds() []EvidenceKind {
	return []EvidenceKind{EvidenceLogs, EvidenceEvents, EvidenceExitCode, EvidenceResources,
		EvidenceRolloutHistory, EvidenceOwnerChain, EvidenceImagePull, EvidenceScheduling, EvidenceEviction,
		EvidenceConditions, EvidencePolicy, EvidenceTraffic, EvidenceStorage, EvidenceProbe}
}

// Validate reports an unknown evidence kind (field "kind").
func (k EvidenceKind) Validate() error { return validateEnum("kind", k, EvidenceKinds()) }

// MaxEvidenceLines bounds Evidence.Lines.
const MaxEvidenceLines = 200

// Evidence is cluster data quoted in a plan to justify it. Lines are quoted
// verbatim (untrusted: render, never interpret).
type Evidence struct {
	Kind  EvidenceKind `json:"kind"`
	Title string       `json:"title"`
	// Source says where it came from, e.g. "pod/web-1 container app previous
	// logs".
	Source string            `json:"source"`
	Lines  []string          `json:"lines,omitempty"`
	Data   map[string]string `json:"data,omitempty"`
}

// Validate requires Kind, Title and Source and bounds Lines.
func (e Evidence) Validate() error {
	if err := e.Kind.Validate(); err != nil {
		return err
	}
	if e.Title == "" {
		return required("title")
	}
	if e.Source == "" {
		return required("source")
	}
	return validateMaxLen("lines", e.Lines, MaxEvidenceLines)
}

// Plan is a proposed remediation of one incident (or an on-demand request),
// stored in the kaar_plans bucket under its ID.
type Plan struct {
	ID         string `json:"id"`
	IncidentID string `json:"incident_id,omitempty"`
	Cluster    string `json:"cluster"`
	Namespace  string `json:"namespace"`
	// Target is the workload the plan repairs (the incident's owner).
	Target ObjectRef `json:"target"`
	// TargetResourceVersion and TargetGeneration are the target's as seen
	// when planning; the executor refuses the plan as stale if they changed.
	TargetResourceVersion string     `json:"target_resource_version"`
	TargetGeneration      int64      `json:"target_generation,omitempty"`
	Type                  IssueType  `json:"type"`
	Summary               string     `json:"summary"`
	Steps                 []Step     `json:"steps"`
	Evidence              []Evidence `json:"evidence,omitempty"`
	Risk                  RiskLevel  `json:"risk"`
	State                 PlanState  `json:"state"`
	// Digest is ComputeDigest of the plan, set by Seal. An approval names it.
	Digest    string    `json:"digest"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// SupersededBy is the id of the plan that replaced this one.
	SupersededBy string `json:"superseded_by,omitempty"`
	// DiagnosticOnly plans have no mutating step (e.g. a protected
	// namespace, or no safe automatic fix); they are never executed.
	DiagnosticOnly bool `json:"diagnostic_only,omitempty"`
	// ManagedBy names the GitOps or Helm tool that manages the target
	// ("Argo CD", "Flux", "Helm"), empty when none: a live fix is reverted
	// by the next sync, so auto-approval never applies to such a plan.
	ManagedBy string `json:"managed_by,omitempty"`
	// Notes are the planner's reasoning, shown to people: sealed with the
	// rest of the plan.
	Notes []string `json:"notes,omitempty"`
	// RequestedBy is the identity that asked for the plan
	// (PlanRequest.RequestedBy), empty for a plan made from an incident
	// on the planner's own initiative. Sealed with the rest, so it cannot
	// be changed to get around remediation.require_distinct_approver.
	RequestedBy string `json:"requested_by,omitempty"`
	// History records what happened to the plan after it was sealed (a
	// supersede reason, the executor's claim and take-over notes). It is
	// the only free text outside the digest.
	History []string `json:"history,omitempty"`
	// Signature is the planner's signature of Digest (Signer.SignPlan).
	// The executor acts only on a plan signed by a key its config trusts.
	Signature *Signature `json:"signature,omitempty"`
}

// DigestPrefix starts every plan digest.
const DigestPrefix = "sha256:"

// digestVersion names the canonical form hashed by ComputeDigest.
const digestVersion = "kaar-plan-digest-v2"

// ComputeDigest is "sha256:" + the hex SHA-256 of a canonical JSON of the
// whole plan as a person is shown it and the executor acts on it: id,
// incident, cluster, target and its resourceVersion and generation, type,
// summary, risk, every step (action, title, params, target, patch type,
// patch, kubectl text, risk, preconditions, undo text and undo patch,
// success check, dry run), the evidence, notes, managed_by, created_at and
// expires_at. Only what changes over the plan's life is left out: state,
// superseded_by, history, and the signature (which signs the digest).
// Object keys are sorted and insignificant whitespace removed, so the
// digest survives any JSON round trip; numbers keep their text.
func ComputeDigest(p Plan) string {
	p.State, p.SupersededBy, p.History, p.Signature, p.Digest = "", "", nil, nil, ""
	b, err := json.Marshal(struct {
		V    string `json:"v"`
		Plan Plan   `json:"plan"`
	}{digestVersion, p})
	if err != nil {
		// Only strings, numbers, times and valid JSON (RawMessage fields
		// that are not valid JSON fail here and are hashed as text).
		b, _ = json.Marshal(fmt.Sprintf("%s %#v", digestVersion, p))
	}
	sum := sha256.Sum256(canonicalJSON(b))
	return DigestPrefix + hex.EncodeToString(sum[:])
}

// actionDigestV1 is the canonical form hashed by ActionDigest. Field order
// and names are frozen.
type actionDigestV1 struct {
	V                     string       `json:"v"`
	Target                ObjectRef    `json:"target"`
	TargetResourceVersion string       `json:"target_resource_version"`
	TargetGeneration      int64        `json:"target_generation"`
	Steps                 []digestStep `json:"steps"`
}

type digestStep struct {
	Action    ActionType        `json:"action"`
	Target    ObjectRef         `json:"target"`
	Params    map[string]string `json:"params"`
	PatchType PatchType         `json:"patch_type"`
	Patch     json.RawMessage   `json:"patch"`
}

// ActionDigest is "sha256:" + the hex SHA-256 of what the plan will do,
// and nothing else: the target (kind, namespace, name, uid, api_version),
// its resourceVersion and generation, and for each step in order its
// action, target, params (keys sorted), patch type and patch (canonical
// JSON). Two plans with one ActionDigest make the same change; the planner
// uses it to keep one proposed plan per incident. Approvals name Digest,
// never this.
func ActionDigest(p Plan) string {
	d := actionDigestV1{
		V:                     "kaar-plan-digest-v1",
		Target:                p.Target,
		TargetResourceVersion: p.TargetResourceVersion,
		TargetGeneration:      p.TargetGeneration,
		Steps:                 make([]digestStep, len(p.Steps)),
	}
	for i, s := range p.Steps {
		params := s.Params
		if params == nil {
			params = map[string]string{}
		}
		d.Steps[i] = digestStep{Action: s.Action, Target: s.Target, Params: params,
			PatchType: s.PatchType, Patch: canonicalJSON(s.Patch)}
	}
	b, err := json.Marshal(d)
	if err != nil {
		// Only strings, ints and canonical JSON are marshalled: cannot fail.
		panic(fmt.Sprintf("events: digest marshal: %v", err))
	}
	sum := sha256.Sum256(b)
	return DigestPrefix + hex.EncodeToString(sum[:])
}

// canonicalJSON re-encodes raw JSON with sorted object keys and no
// insignificant whitespace; numbers keep their text. Invalid JSON (rejected
// by Validate anyway) is hashed as a JSON string of its bytes.
func canonicalJSON(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		b, _ := json.Marshal(string(raw))
		return b
	}
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(string(raw))
	}
	return b
}

// Seal sets p.Digest to ComputeDigest(*p). Call it after the last change to
// anything but the state and history, before signing, storing or
// publishing the plan.
func (p *Plan) Seal() { p.Digest = ComputeDigest(*p) }

// Mutating reports whether any step changes the cluster.
func (p Plan) Mutating() bool {
	return slices.ContainsFunc(p.Steps, func(s Step) bool { return s.Mutating })
}

// Validate checks every field and that Digest equals ComputeDigest (the
// plan is sealed). Steps must be indexed 0..n-1 in order; a diagnostic-only
// plan has no mutating step and any other plan has at least one.
func (p Plan) Validate() error {
	if err := p.validateSubject(); err != nil {
		return err
	}
	if err := p.validateSteps(); err != nil {
		return err
	}
	for i, e := range p.Evidence {
		if err := under(fmt.Sprintf("evidence[%d]", i), e.Validate()); err != nil {
			return err
		}
	}
	if err := p.Risk.Validate(); err != nil {
		return err
	}
	if err := p.State.Validate(); err != nil {
		return err
	}
	if err := validateTime("created_at", p.CreatedAt); err != nil {
		return err
	}
	if err := validateTime("expires_at", p.ExpiresAt); err != nil {
		return err
	}
	if !p.ExpiresAt.After(p.CreatedAt) {
		return fieldErr("expires_at", "must be after created_at")
	}
	if err := validateOptionalUUID("superseded_by", p.SupersededBy); err != nil {
		return err
	}
	if err := validateRequester("requested_by", p.RequestedBy); err != nil {
		return err
	}
	if p.Signature != nil {
		if _, err := ParsePublicKey(p.Signature.Key); err != nil {
			return fieldErr("signature.key", err.Error())
		}
	}
	if p.Digest == "" {
		return fieldErr("digest", "required: call Seal")
	}
	if want := ComputeDigest(p); p.Digest != want {
		return fieldErr("digest", fmt.Sprintf("%q does not match the plan's content (%q)", p.Digest, want))
	}
	return nil
}

// validateSubject checks what the plan is about: its id, incident, cluster,
// target and issue, and its summary.
func (p Plan) validateSubject() error {
	if err := validateUUID("id", p.ID); err != nil {
		return err
	}
	if p.IncidentID != "" {
		if err := validateIncidentID("incident_id", p.IncidentID); err != nil {
			return err
		}
	}
	if err := validateCluster("cluster", p.Cluster); err != nil {
		return err
	}
	if err := ValidateToken("namespace", p.Namespace); err != nil {
		return err
	}
	if err := under("target", p.Target.Validate()); err != nil {
		return err
	}
	if p.TargetResourceVersion == "" {
		return required("target_resource_version")
	}
	if err := validateNonNegative("target_generation", p.TargetGeneration); err != nil {
		return err
	}
	if err := p.Type.Validate(); err != nil {
		return err
	}
	if p.Summary == "" {
		return required("summary")
	}
	return nil
}

// validateSteps checks the steps, indexed 0..n-1 in order, and that the
// plan is diagnostic-only exactly when none of them is mutating.
func (p Plan) validateSteps() error {
	if len(p.Steps) == 0 {
		return required("steps")
	}
	for i, s := range p.Steps {
		field := fmt.Sprintf("steps[%d]", i)
		if s.Index != i {
			return fieldErr(field+".index", fmt.Sprintf("is %d, want %d", s.Index, i))
		}
		if err := under(field, s.Validate()); err != nil {
			return err
		}
	}
	if p.DiagnosticOnly && p.Mutating() {
		return fieldErr("diagnostic_only", "a diagnostic-only plan has a mutating step")
	}
	if !p.DiagnosticOnly && !p.Mutating() {
		return fieldErr("steps", "no mutating step: set diagnostic_only")
	}
	return nil
}
