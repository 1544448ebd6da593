package events

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestNewAndDecodeRoundTrip(t *testing.T) {
	ev := sampleIncidentEvent()
	env, err := New(ev.Transition.EventType(), SourceWatcher, "prod-eu", ev.Incident.ID, ev)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	id, err := uuid.Parse(env.ID)
	if err != nil || id.Version() != 7 {
		t.Fatalf("id %q is not a UUIDv7 (%v)", env.ID, err)
	}
	if env.SpecVersion != "1.0" || env.DataContentType != "application/json" || env.SchemaVersion != "v1" ||
		env.Type != "dev.kaar.incident.detected" || env.Cluster != "prod-eu" || env.Time.Location() != time.UTC {
		t.Fatalf("unexpected attributes: %+v", env)
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	// CloudEvents structured mode: attributes are top-level members.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "kaarschemaversion", "kaarcluster", "data"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("attribute %q missing from %s", k, b)
		}
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	data, err := DecodeData[IncidentEvent](got)
	if err != nil {
		t.Fatalf("DecodeData: %v", err)
	}
	if data.Incident.ID != ev.Incident.ID || data.Observation != 1 || !data.ObservedAt.Equal(ev.ObservedAt) {
		t.Fatalf("data differs: %+v", data)
	}
}

func TestNewAcceptsPointerData(t *testing.T) {
	p := samplePlan()
	if _, err := New(PlanEventProposed.EventType(), SourcePlanner, "prod-eu", p.ID, &p); err != nil {
		t.Fatalf("New with *Plan: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	ev := sampleIncidentEvent()
	bad := ev
	bad.Incident.Reason = ""
	cases := []struct {
		name                  string
		kind, source, cluster string
		data                  Validatable
		field                 string
	}{
		{"unknown type", "dev.kaar.nope", SourceWatcher, "prod-eu", ev, "type"},
		{"wrong data type", TypePlanProposed, SourceWatcher, "prod-eu", ev, "data"},
		{"nil data", TypeIncidentDetected, SourceWatcher, "prod-eu", nil, "data"},
		{"nil pointer data", TypePlanProposed, SourcePlanner, "prod-eu", (*Plan)(nil), "data"},
		{"invalid data", TypeIncidentDetected, SourceWatcher, "prod-eu", bad, "data.incident.reason"},
		{"no source", TypeIncidentDetected, "", "prod-eu", ev, "source"},
		{"bad cluster", TypeIncidentDetected, SourceWatcher, "prod.eu", ev, "kaarcluster"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.kind, tc.source, tc.cluster, "", tc.data)
			assertField(t, err, tc.field)
		})
	}
}

func assertField(t *testing.T, err error, field string) {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	if ve.Field != field {
		t.Fatalf("error blames %q, want %q: %v", ve.Field, field, err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error does not match ErrInvalid: %v", err)
	}
}

func envJSON(t *testing.T, mutate func(m map[string]any)) []byte {
	t.Helper()
	b, err := json.Marshal(sampleEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	mutate(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDecodeValidatesEnvelope(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(m map[string]any)
		field  string
	}{
		{"no specversion", func(m map[string]any) { delete(m, "specversion") }, "specversion"},
		{"old specversion", func(m map[string]any) { m["specversion"] = "0.3" }, "specversion"},
		{"no id", func(m map[string]any) { delete(m, "id") }, "id"},
		{"no source", func(m map[string]any) { m["source"] = "" }, "source"},
		{"no type", func(m map[string]any) { delete(m, "type") }, "type"},
		{"unknown type", func(m map[string]any) { m["type"] = "dev.kaar.incident.vanished" }, "type"},
		{"no time", func(m map[string]any) { delete(m, "time") }, "time"},
		{"xml content", func(m map[string]any) { m["datacontenttype"] = "application/xml" }, "datacontenttype"},
		{"no schema version", func(m map[string]any) { delete(m, "kaarschemaversion") }, "kaarschemaversion"},
		{"future schema version", func(m map[string]any) { m["kaarschemaversion"] = "v2" }, "kaarschemaversion"},
		{"no cluster", func(m map[string]any) { delete(m, "kaarcluster") }, "kaarcluster"},
		{"no data", func(m map[string]any) { delete(m, "data") }, "data"},
		{"null data", func(m map[string]any) { m["data"] = nil }, "data"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(envJSON(t, tc.mutate))
			assertField(t, err, tc.field)
		})
	}
	if _, err := Decode([]byte(`{"specversion":`)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("truncated JSON: %v, want ErrInvalid", err)
	}
}

func TestDecodeIgnoresUnknownAttributesAndFields(t *testing.T) {
	b := envJSON(t, func(m map[string]any) {
		m["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		m["data"].(map[string]any)["added_in_v1_1"] = true
		m["data"].(map[string]any)["incident"].(map[string]any)["new_field"] = "x"
	})
	env, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if _, err := DecodeData[IncidentEvent](env); err != nil {
		t.Fatalf("DecodeData must ignore unknown fields (forward compatibility): %v", err)
	}
}

func TestDecodeDataErrors(t *testing.T) {
	env := sampleEnvelope()
	_, err := DecodeData[Plan](env)
	assertField(t, err, "type")

	env.Data = json.RawMessage(`{"transition":"detected","observation":"one"}`)
	_, err = DecodeData[IncidentEvent](env)
	assertField(t, err, "data.observation")

	env.Data = json.RawMessage(`{"transition":"detected","incident":{},"observed_at":"2026-11-24T10:00:00Z","observation":1}`)
	_, err = DecodeData[IncidentEvent](env)
	assertField(t, err, "data.incident.id")

	env.Data = json.RawMessage(`null`)
	_, err = DecodeData[IncidentEvent](env)
	assertField(t, err, "data")
}

func TestEventTypesCoverEveryKind(t *testing.T) {
	want := len(Transitions()) + len(PlanEvents()) + len(DecisionKinds()) + len(AuditKinds())
	if got := len(EventTypes()); got != want {
		t.Fatalf("%d event types, want %d", got, want)
	}
	for _, ty := range EventTypes() {
		if !strings.HasPrefix(ty, "dev.kaar.") || !IsKnownEventType(ty) {
			t.Errorf("bad event type %q", ty)
		}
	}
	for got, want := range map[string]string{
		TransitionDetected.EventType():  TypeIncidentDetected,
		TransitionChanged.EventType():   TypeIncidentChanged,
		TransitionResolved.EventType():  TypeIncidentResolved,
		PlanEventProposed.EventType():   TypePlanProposed,
		PlanEventSuperseded.EventType(): TypePlanSuperseded,
		PlanEventExpired.EventType():    TypePlanExpired,
		DecisionApproved.EventType():    TypeDecisionApproved,
		DecisionRejected.EventType():    TypeDecisionRejected,
	} {
		if got != want {
			t.Errorf("EventType() = %q, constant %q", got, want)
		}
	}
	for ty, want := range map[string]string{
		TypeIncidentDetected:               "dev.kaar.incident.detected",
		TypeIncidentChanged:                "dev.kaar.incident.changed",
		TypeIncidentResolved:               "dev.kaar.incident.resolved",
		TypePlanProposed:                   "dev.kaar.plan.proposed",
		TypePlanSuperseded:                 "dev.kaar.plan.superseded",
		TypePlanExpired:                    "dev.kaar.plan.expired",
		TypeDecisionApproved:               "dev.kaar.decision.approved",
		TypeDecisionRejected:               "dev.kaar.decision.rejected",
		AuditExecutionFinished.EventType(): "dev.kaar.audit.execution_finished",
	} {
		if ty != want {
			t.Errorf("event type %q, want %q", ty, want)
		}
	}
}
