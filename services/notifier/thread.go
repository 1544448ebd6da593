package notifier

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// Status is what a Slack message says about its plan.
type Status string

// Plan statuses shown in Slack, in the order a plan moves through them.
const (
	StatusNone         Status = ""
	StatusProposed     Status = "proposed"
	StatusDecisionSent Status = "decision_sent"
	StatusApproved     Status = "approved"
	StatusExecuting    Status = "executing"
	StatusVerified     Status = "verified"
	StatusFailed       Status = "failed"
	StatusRejected     Status = "rejected"
	StatusExpired      Status = "expired"
	StatusSuperseded   Status = "superseded"
	StatusRefused      Status = "refused"
)

func (s Status) rank() int {
	switch s {
	case StatusNone:
		return 0
	case StatusProposed:
		return 1
	case StatusDecisionSent:
		return 2
	case StatusApproved:
		return 3
	case StatusExecuting:
		return 4
	}
	return 5
}

// Terminal reports a status after which the plan does not move.
func (s Status) Terminal() bool { return s.rank() == 5 }

// thread is one Slack message (and its thread of replies): one per
// incident, or per plan without an incident. It is stored in BucketState.
type thread struct {
	Key      string           `json:"key"`
	Channel  string           `json:"channel,omitempty"`
	TS       string           `json:"ts,omitempty"`
	Incident *events.Incident `json:"incident,omitempty"`
	// Transition and Observation are the incident's last seen.
	Transition  events.Transition `json:"transition,omitempty"`
	Observation int64             `json:"observation,omitempty"`
	Plan        *events.Plan      `json:"plan,omitempty"`
	Status      Status            `json:"status,omitempty"`
	// DecidedBy and Via name who approved or rejected.
	DecidedBy string     `json:"decided_by,omitempty"`
	Via       events.Via `json:"via,omitempty"`
	// Step is the step being run (executing), StepsDone how many finished.
	Step      int    `json:"step,omitempty"`
	StepsDone int    `json:"steps_done,omitempty"`
	Detail    string `json:"detail,omitempty"`
	// Pending: the first post is held back by quiet hours.
	Pending bool `json:"pending,omitempty"`
	// Posting names a first post that may have reached Slack without
	// its answer reaching kaar (the process died mid-call, the call
	// timed out): it is written before the call, and the next attempt
	// looks for a message with this id in its metadata (since
	// PostingSince) before it posts again.
	Posting      string    `json:"posting,omitempty"`
	PostingSince time.Time `json:"posting_since,omitzero"`
	// LastNotified is when people were last notified (post or reply);
	// NotifiedHash is what they were told then (incidentHash).
	LastNotified time.Time `json:"last_notified,omitzero"`
	NotifiedHash string    `json:"notified_hash,omitempty"`
}

func (t *thread) posted() bool { return t.TS != "" }

// open reports an incident not resolved (reminders are due for it).
func (t *thread) open() bool {
	return t.Incident != nil && t.Transition != events.TransitionResolved
}

// incidentHash is what a re-notification is about: the cause and the
// size of the incident (not its counters or timestamps), as in
// Alertmanager's dedup of unchanged groups.
func incidentHash(in *events.Incident, tr events.Transition) string {
	if in == nil {
		return ""
	}
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%d\x00%t", in.Reason, in.Severity, in.Type, in.PodCount, tr == events.TransitionResolved))
	return hex.EncodeToString(h[:8])
}

// threadKey is the message key of a plan: its incident, else the plan.
func threadKey(p events.Plan) string {
	if p.IncidentID != "" {
		return p.IncidentID
	}
	return "plan-" + p.ID
}

// setStatus moves the status forward only: a late or repeated event
// does not undo what the message already shows.
func (t *thread) setStatus(s Status) bool {
	if s.rank() < t.Status.rank() || (t.Status.Terminal() && s != t.Status) {
		return false
	}
	t.Status = s
	return true
}
