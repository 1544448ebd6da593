package events

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// fuzzSeeds are valid envelopes of every data type plus some raw bodies.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	add := func(kind, subject string, data Validatable) {
		env, err := New(kind, "/kaar/test", "prod-eu", subject, data)
		if err != nil {
			t.Fatalf("seed %s: %v", kind, err)
		}
		b, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	add(TypeIncidentDetected, sampleIncident().ID, sampleIncidentEvent())
	add(TypePlanProposed, testPlanID, samplePlan())
	add(TypeDecisionApproved, testPlanID, sampleDecision())
	add(AuditApproved.EventType(), testPlanID, sampleAudit())
	for _, v := range []any{sampleAnalyzeRequest(), sampleAnalyzeResponse(), samplePlanRequest(), sampleExecution(), sampleErrorReply()} {
		b, _ := json.Marshal(v)
		seeds = append(seeds, b)
	}
	seeds = append(seeds, []byte(`{}`), []byte(`null`), []byte(`{"specversion":"1.0","data":{"steps":[{"patch":"x"}]}}`))
	return seeds
}

// TestWriteFuzzCorpus (with -update) regenerates testdata/fuzz/FuzzDecode.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*update {
		return
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func decodeAll(env Envelope) {
	if p, err := DecodeData[Plan](env); err == nil {
		_ = ComputeDigest(p)
	} else {
		_ = err.Error()
	}
	if _, err := DecodeData[IncidentEvent](env); err != nil {
		_ = err.Error()
	}
	if _, err := DecodeData[Decision](env); err != nil {
		_ = err.Error()
	}
	if _, err := DecodeData[AuditRecord](env); err != nil {
		_ = err.Error()
	}
}

// FuzzDecode checks that no input makes Decode, DecodeData (for every data
// type), the request/reply decoders or ComputeDigest panic, and that what
// Decode accepts re-encodes to an envelope Decode accepts again.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if env, err := Decode(b); err == nil {
			decodeAll(env)
			again, merr := json.Marshal(env)
			if merr != nil {
				t.Fatalf("re-encode accepted envelope: %v", merr)
			}
			if _, err := Decode(again); err != nil {
				t.Fatalf("re-encoded envelope rejected: %v\n%s", err, again)
			}
		} else {
			_ = err.Error()
		}
		// The input as the data of an envelope of every type.
		for _, ty := range []string{TypeIncidentDetected, TypePlanProposed, TypeDecisionApproved, AuditStepResult.EventType()} {
			env := Envelope{SpecVersion: SpecVersion, ID: "x", Source: "/f", Type: ty, Time: t0,
				SchemaVersion: SchemaVersion, Cluster: "c", Data: b}
			decodeAll(env)
		}
		_, _ = DecodeRequest[AnalyzeRequest](b)
		_, _ = DecodeRequest[PlanRequest](b)
		_, _ = DecodeRequest[ExecutionStatusRequest](b)
		_, _ = DecodeReply[AnalyzeResponse](b, "")
		_, _ = DecodeReply[ExecutionStatusResponse](b, "")
		_, _ = DecodeReply[PlanResponse](b, CodeInternal)
		var raw json.RawMessage = b
		var p Plan
		p.Steps = []Step{{Patch: raw}}
		_ = ComputeDigest(p)
	})
}
