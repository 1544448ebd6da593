package events

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func sampleWarning() Incident {
	in := sampleIncident()
	in.Type = IssueMemoryNearLimit
	in.Reason = "projected_oom"
	in.ExitCode = nil
	in.RestartCount = 0
	in.Severity = SeverityWarning
	in.Warning = &WarningEvidence{
		Measurements: []Measurement{{Name: "memory_working_set", Value: 412 << 20, Limit: 512 << 20, Unit: UnitBytes}},
		Forecast: &Forecast{Metric: "memory_working_set", Unit: UnitBytes, Current: 412 << 20, Limit: 512 << 20,
			SlopePerHour: 40 << 20, CrossesAt: t0.Add(150 * time.Minute), Confidence: 0.97, WindowSeconds: 7200, Samples: 120},
	}
	in.ID = IncidentID(in.Cluster, in.Namespace, in.Owner.Kind, in.Owner.Name, in.Container, in.Type)
	return in
}

func TestIssueClasses(t *testing.T) {
	warnings := TypesOf(ClassWarning)
	failures := TypesOf(ClassFailure)
	if len(warnings)+len(failures) != len(IssueTypes()) {
		t.Fatalf("%d warnings + %d failures != %d types", len(warnings), len(failures), len(IssueTypes()))
	}
	for _, typ := range warnings {
		if typ.DefaultSeverity() != SeverityWarning {
			t.Errorf("%s: default severity %s, want warning", typ, typ.DefaultSeverity())
		}
	}
	for _, typ := range failures {
		if typ.DefaultSeverity() == SeverityWarning || typ.IsWarning() {
			t.Errorf("failure %s ranks as a warning", typ)
		}
	}
	// Every warning ranks below every failure.
	for _, s := range []Severity{SeverityCritical, SeverityHigh, SeverityMedium, SeverityLow} {
		if s.Rank() >= SeverityWarning.Rank() {
			t.Errorf("%s ranks %d, not above warning (%d)", s, s.Rank(), SeverityWarning.Rank())
		}
	}
	for _, c := range []string{"Warning", " failure "} {
		if _, err := ParseIssueClass(c); err != nil {
			t.Errorf("ParseIssueClass(%q): %v", c, err)
		}
	}
	_, err := ParseIssueClass("info")
	if err == nil || !strings.Contains(err.Error(), "class") || !strings.Contains(err.Error(), "warning") {
		t.Errorf("ParseIssueClass(info) = %v, want an error naming the field and the allowed values", err)
	}
}

func TestWarningEvidenceValidation(t *testing.T) {
	if err := sampleWarning().Validate(); err != nil {
		t.Fatalf("valid warning: %v", err)
	}
	b, err := json.Marshal(sampleWarning())
	if err != nil {
		t.Fatal(err)
	}
	var back Incident
	if err := json.Unmarshal(b, &back); err != nil || back.Warning == nil || back.Warning.Forecast == nil ||
		!back.Warning.Forecast.CrossesAt.Equal(t0.Add(150*time.Minute)) {
		t.Fatalf("round trip: %v %+v", err, back.Warning)
	}
	for name, tc := range map[string]struct {
		mutate func(*Incident)
		field  string
	}{
		"evidence on a failure": {func(in *Incident) {
			in.Type = IssueCrashLoopBackOff
			in.ID = IncidentID(in.Cluster, in.Namespace, in.Owner.Kind, in.Owner.Name, in.Container, in.Type)
		}, "warning"},
		"bad unit":           {func(in *Incident) { in.Warning.Measurements[0].Unit = "MiB" }, "warning.measurements[0].unit"},
		"bad name":           {func(in *Incident) { in.Warning.Measurements[0].Name = "Memory Used" }, "warning.measurements[0].name"},
		"NaN value":          {func(in *Incident) { in.Warning.Measurements[0].Value = math.NaN() }, "warning.measurements[0].value"},
		"negative window":    {func(in *Incident) { in.Warning.Measurements[0].WindowSeconds = -1 }, "warning.measurements[0].window_seconds"},
		"confidence above 1": {func(in *Incident) { in.Warning.Forecast.Confidence = 1.5 }, "warning.forecast.confidence"},
		"no crossing time":   {func(in *Incident) { in.Warning.Forecast.CrossesAt = time.Time{} }, "warning.forecast.crosses_at"},
		"infinite slope":     {func(in *Incident) { in.Warning.Forecast.SlopePerHour = math.Inf(1) }, "warning.forecast.slope_per_hour"},
		"too many measurements": {func(in *Incident) {
			for range MaxMeasurements {
				in.Warning.Measurements = append(in.Warning.Measurements, in.Warning.Measurements[0])
			}
		}, "warning.measurements"},
	} {
		t.Run(name, func(t *testing.T) {
			in := sampleWarning()
			tc.mutate(&in)
			err := in.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

func TestAnalyzeRequestClass(t *testing.T) {
	ok := []AnalyzeRequest{{}, {Class: ClassWarning}, {Class: ClassFailure, Type: IssueOOMKilled}, {Type: IssueQuotaNearLimit}}
	for _, r := range ok {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	for _, r := range []AnalyzeRequest{{Class: "info"}, {Class: ClassWarning, Type: IssueOOMKilled}} {
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "class") {
			t.Errorf("%+v: %v, want an error naming class", r, err)
		}
	}
}

func TestWarningSummary(t *testing.T) {
	w := sampleWarning().Warning
	w.Measurements = append(w.Measurements, Measurement{Name: "requests.cpu", Value: 3.7, Limit: 4, Unit: UnitCores},
		Measurement{Name: "restarts", Value: 4, Unit: UnitCount, WindowSeconds: 86400})
	want := "memory_working_set 412Mi of 512Mi (80%); requests.cpu 3.7 of 4 (92%); restarts 4 over 24h; " +
		"memory_working_set 412Mi of 512Mi, +40Mi/h over 2h (120 samples), reaches the limit at 2026-11-24 12:30 UTC (R² 0.97)"
	if got := w.Summary(); got != want {
		t.Errorf("Summary()\n got %s\nwant %s", got, want)
	}
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{{0.25, UnitCores, "250m"}, {1536, UnitBytes, "1.5Ki"}, {3 << 30, UnitBytes, "3Gi"}, {95.04, UnitPercent, "95%"}, {5400, UnitSeconds, "90m"}, {93, UnitSeconds, "1m33s"}, {7, UnitCount, "7"}} {
		if got := FormatAmount(c.v, c.unit); got != c.want {
			t.Errorf("FormatAmount(%g, %s) = %s, want %s", c.v, c.unit, got, c.want)
		}
	}
	var none *WarningEvidence
	if none.Summary() != "" {
		t.Error("nil evidence has a summary")
	}
}
