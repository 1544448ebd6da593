package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"time"

	"github.com/google/uuid"
)

// CloudEvents attributes and kaar's schema version.
const (
	// SpecVersion is the CloudEvents version of the envelope.
	SpecVersion = "1.0"
	// ContentTypeJSON is the only data content type.
	ContentTypeJSON = "application/json"
	// ContentTypeCloudEvents is the Content-Type header of a structured-mode
	// CloudEvent, for HTTP webhooks and NATS headers.
	ContentTypeCloudEvents = "application/cloudevents+json"
	// SchemaVersion is the version of every payload type in this package,
	// carried in the kaarschemaversion extension attribute.
	SchemaVersion = "v1"

	typePrefix = "dev.kaar."
)

// SupportedSchemaVersions lists the schema versions Decode accepts.
func SupportedSchemaVersions() []string { return []string{SchemaVersion} }

// Envelope types (CloudEvents "type") and their data:
//
//	dev.kaar.incident.{detected,changed,resolved}    IncidentEvent
//	dev.kaar.plan.{proposed,superseded,expired}      Plan
//	dev.kaar.decision.{approved,rejected}            Decision
//	dev.kaar.audit.<AuditKind>                       AuditRecord
//
// Use Transition.EventType, PlanEvent.EventType, DecisionKind.EventType and
// AuditKind.EventType to name them.
const (
	TypeIncidentDetected = "dev.kaar.incident.detected"
	TypeIncidentChanged  = "dev.kaar.incident.changed"
	TypeIncidentResolved = "dev.kaar.incident.resolved"
	TypePlanProposed     = "dev.kaar.plan.proposed"
	TypePlanSuperseded   = "dev.kaar.plan.superseded"
	TypePlanExpired      = "dev.kaar.plan.expired"
	TypeDecisionApproved = "dev.kaar.decision.approved"
	TypeDecisionRejected = "dev.kaar.decision.rejected"
)

// EventType is the envelope type of a plan notification ("dev.kaar.plan.proposed").
func (e PlanEvent) EventType() string { return typePrefix + "plan." + string(e) }

// dataTypes maps each known envelope type to the Go type of its data.
var dataTypes = func() map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for _, t := range Transitions() {
		m[t.EventType()] = reflect.TypeFor[IncidentEvent]()
	}
	for _, e := range PlanEvents() {
		m[e.EventType()] = reflect.TypeFor[Plan]()
	}
	for _, d := range DecisionKinds() {
		m[d.EventType()] = reflect.TypeFor[Decision]()
	}
	for _, k := range AuditKinds() {
		m[k.EventType()] = reflect.TypeFor[AuditRecord]()
	}
	return m
}()

// EventTypes lists every known envelope type, sorted.
func EventTypes() []string {
	out := make([]string, 0, len(dataTypes))
	for t := range dataTypes {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// IsKnownEventType reports whether t is an envelope type of this schema.
func IsKnownEventType(t string) bool {
	_, ok := dataTypes[t]
	return ok
}

// Validatable is every payload type: it can check itself.
type Validatable interface {
	Validate() error
}

// Envelope is a CloudEvents 1.0 event in structured JSON mode, so webhook
// receivers can take a kaar message as is. Cluster and SchemaVersion are
// CloudEvents extension attributes.
type Envelope struct {
	SpecVersion string `json:"specversion"`
	// ID is a UUIDv7 (time-ordered).
	ID string `json:"id"`
	// Source is the producing service, e.g. SourceWatcher ("/kaar/watcher").
	Source string `json:"source"`
	// Type is one of EventTypes, e.g. "dev.kaar.incident.detected".
	Type string `json:"type"`
	// Subject is what the event is about: the incident id or the plan id.
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	SchemaVersion   string          `json:"kaarschemaversion"`
	Cluster         string          `json:"kaarcluster"`
	Data            json.RawMessage `json:"data"`
}

// New wraps data in an envelope of type kind: it validates data (errors
// name "data.<field>"), checks that data is the Go type kind carries, and
// sets a UUIDv7 id and the current UTC time.
func New(kind, source, cluster, subject string, data Validatable) (Envelope, error) {
	want, ok := dataTypes[kind]
	if !ok {
		return Envelope{}, fieldErr("type", fmt.Sprintf("unknown event type %q", kind), EventTypes()...)
	}
	if data == nil || reflect.ValueOf(data).Kind() == reflect.Pointer && reflect.ValueOf(data).IsNil() {
		return Envelope{}, required("data")
	}
	if got := reflect.Indirect(reflect.ValueOf(data)).Type(); got != want {
		return Envelope{}, fieldErr("data", fmt.Sprintf("is a %s, event type %q carries a %s", got, kind, want))
	}
	if err := under("data", data.Validate()); err != nil {
		return Envelope{}, err
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return Envelope{}, fmt.Errorf("events: marshal %s data: %w", kind, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Envelope{}, fmt.Errorf("events: new id: %w", err)
	}
	e := Envelope{
		SpecVersion:     SpecVersion,
		ID:              id.String(),
		Source:          source,
		Type:            kind,
		Subject:         subject,
		Time:            time.Now().UTC(),
		DataContentType: ContentTypeJSON,
		SchemaVersion:   SchemaVersion,
		Cluster:         cluster,
		Data:            raw,
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// Validate checks the envelope's attributes (not its data): specversion
// 1.0, an id, a source, a known type, a time, a JSON content type (or none),
// a supported schema version, a valid cluster name and present data.
func (e Envelope) Validate() error {
	if e.SpecVersion != SpecVersion {
		if e.SpecVersion == "" {
			return fieldErr("specversion", "required", SpecVersion)
		}
		return fieldErr("specversion", fmt.Sprintf("unsupported %q", e.SpecVersion), SpecVersion)
	}
	if e.ID == "" {
		return required("id")
	}
	if e.Source == "" {
		return required("source")
	}
	if e.Type == "" {
		return fieldErr("type", "required", EventTypes()...)
	}
	if !IsKnownEventType(e.Type) {
		return fieldErr("type", fmt.Sprintf("unknown event type %q", e.Type), EventTypes()...)
	}
	if e.Time.IsZero() {
		return required("time")
	}
	if e.DataContentType != "" && e.DataContentType != ContentTypeJSON {
		return fieldErr("datacontenttype", fmt.Sprintf("unsupported %q", e.DataContentType), ContentTypeJSON)
	}
	if e.SchemaVersion == "" {
		return fieldErr("kaarschemaversion", "required", SupportedSchemaVersions()...)
	}
	if !slices.Contains(SupportedSchemaVersions(), e.SchemaVersion) {
		return fieldErr("kaarschemaversion", fmt.Sprintf("unsupported %q", e.SchemaVersion), SupportedSchemaVersions()...)
	}
	if err := validateCluster("kaarcluster", e.Cluster); err != nil {
		return err
	}
	if d := bytes.TrimSpace(e.Data); len(d) == 0 || string(d) == "null" {
		return required("data")
	}
	return nil
}

// Decode parses and validates an envelope (not its data: see DecodeData).
// Unknown attributes, such as other CloudEvents extensions, are ignored.
func Decode(b []byte) (Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return Envelope{}, fmt.Errorf("events: decode envelope: %w: %w", ErrInvalid, err)
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// DecodeData decodes and validates the envelope's data as a T, which must
// be the type the envelope's type carries (an IncidentEvent for
// dev.kaar.incident.*). Unknown JSON fields are ignored (a newer producer
// may add optional fields within a schema version); missing or invalid
// required fields are errors naming "data.<field>".
func DecodeData[T Validatable](e Envelope) (T, error) {
	var v T
	want, ok := dataTypes[e.Type]
	if !ok {
		return v, fieldErr("type", fmt.Sprintf("unknown event type %q", e.Type), EventTypes()...)
	}
	if got := reflect.TypeFor[T](); got != want {
		return v, fieldErr("type", fmt.Sprintf("event type %q carries a %s, not a %s", e.Type, want, got))
	}
	if d := bytes.TrimSpace(e.Data); len(d) == 0 || string(d) == "null" {
		return v, required("data")
	}
	if err := json.Unmarshal(e.Data, &v); err != nil {
		return v, jsonFieldErr("data", err)
	}
	if err := under("data", v.Validate()); err != nil {
		return v, err
	}
	return v, nil
}

// jsonFieldErr turns a json error into a ValidationError naming the field
// when json says which.
func jsonFieldErr(prefix string, err error) error {
	var te *json.UnmarshalTypeError
	if ok := errors.As(err, &te); ok && te.Field != "" {
		return fieldErr(prefix+"."+te.Field, fmt.Sprintf("cannot decode JSON %s into %s", te.Value, te.Type))
	}
	return fieldErr(prefix, "invalid JSON: "+err.Error())
}
