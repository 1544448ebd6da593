package events

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden")

// goldenCase is one payload type with a sample value and a constructor of
// an empty value of the same type.
type goldenCase struct {
	name  string
	value Validatable
	empty func() any
}

func goldenCases() []goldenCase {
	return []goldenCase{
		{"envelope", sampleEnvelope(), func() any { return new(Envelope) }},
		{"incident", sampleIncident(), func() any { return new(Incident) }},
		{"incident_event", sampleIncidentEvent(), func() any { return new(IncidentEvent) }},
		{"plan", samplePlan(), func() any { return new(Plan) }},
		{"step", sampleStep(0), func() any { return new(Step) }},
		{"evidence", samplePlan().Evidence[0], func() any { return new(Evidence) }},
		{"decision", sampleDecision(), func() any { return new(Decision) }},
		{"step_result", sampleStepResult(), func() any { return new(StepResult) }},
		{"verification", sampleVerification(), func() any { return new(Verification) }},
		{"execution", sampleExecution(), func() any { return new(Execution) }},
		{"execution_refused", sampleRefusal(), func() any { return new(Execution) }},
		{"audit_record", sampleAudit(), func() any { return new(AuditRecord) }},
		{"analyze_request", sampleAnalyzeRequest(), func() any { return new(AnalyzeRequest) }},
		{"analyze_response", sampleAnalyzeResponse(), func() any { return new(AnalyzeResponse) }},
		{"plan_request", samplePlanRequest(), func() any { return new(PlanRequest) }},
		{"plan_response", PlanResponse{Plan: samplePlan()}, func() any { return new(PlanResponse) }},
		{"execution_status_request", ExecutionStatusRequest{PlanID: testPlanID}, func() any { return new(ExecutionStatusRequest) }},
		{"execution_status_response", sampleStatusResponse(), func() any { return new(ExecutionStatusResponse) }},
		{"error_reply", sampleErrorReply(), func() any { return new(ErrorReply) }},
	}
}

// TestGoldenJSON freezes the JSON field names of every type: a rename shows
// up as a diff against testdata/golden (regenerate with -update only for an
// intended, versioned change).
func TestGoldenJSON(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.value.Validate(); err != nil {
				t.Fatalf("sample does not validate: %v", err)
			}
			got, err := json.MarshalIndent(tc.value, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "golden", tc.name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run go test -update once to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("JSON of %s changed:\n got: %s\nwant: %s", tc.name, got, want)
			}
		})
	}
}

// TestRoundTrip decodes each golden file and checks that it re-encodes to
// the same JSON and still validates.
func TestRoundTrip(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "golden", tc.name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			v := tc.empty()
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatalf("decode golden: %v", err)
			}
			if err := v.(Validatable).Validate(); err != nil {
				t.Fatalf("decoded golden does not validate: %v", err)
			}
			again, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			orig, err := json.Marshal(tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, orig) {
				t.Errorf("round trip differs:\n got: %s\nwant: %s", again, orig)
			}
		})
	}
}
