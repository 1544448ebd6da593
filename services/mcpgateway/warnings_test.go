package mcpgateway

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// testWarning is a MemoryNearLimit warning with its projection.
func testWarning() events.Incident {
	in := testIncident("shop", "Deployment", "cart", "app", events.IssueMemoryNearLimit, "projected_oom", 2, 0)
	in.Warning = &events.WarningEvidence{
		Measurements: []events.Measurement{{Name: "memory_working_set", Value: 412 << 20, Limit: 512 << 20, Unit: events.UnitBytes}},
		Forecast: &events.Forecast{Metric: "memory_working_set", Unit: events.UnitBytes, Current: 412 << 20, Limit: 512 << 20,
			SlopePerHour: 40 << 20, CrossesAt: time.Date(2026, 12, 6, 17, 40, 0, 0, time.UTC), Confidence: 0.97, WindowSeconds: 7200, Samples: 120},
	}
	return in
}

// Warnings are counted by analyze_cluster unless asked for, listed with
// class warning and in kaar://warnings, and get_incident shows their
// numbers and projection.
func TestWarningsOverMCP(t *testing.T) {
	e := newEnv(t, withTokens)
	failures := []events.Incident{
		testIncident("shop", "Deployment", "payments-api", "app", events.IssueCrashLoopBackOff, "exit_code_1", 2, 9),
	}
	probes := testIncident("web", "Deployment", "front", "nginx", events.IssueMissingProbes, "no_probes", 3, 0)
	e.watcher.setIncidents(append(failures, testWarning(), probes))
	cs, err := e.sdkConnect(nil, readToken, "")
	if err != nil {
		t.Fatal(err)
	}

	res := callTool(t, e.ctx, cs, "analyze_cluster", map[string]any{})
	out := structured[AnalyzeOut](t, res)
	if out.Total != 1 || len(out.Incidents) != 1 || out.Incidents[0].Type != "CrashLoopBackOff" {
		t.Errorf("analyze_cluster listed %+v, want the one failure", out.Incidents)
	}
	if out.Warnings["MemoryNearLimit"] != 1 || out.Warnings["MissingProbes"] != 1 {
		t.Errorf("warnings = %v, want one MemoryNearLimit and one MissingProbes", out.Warnings)
	}
	if txt := resultText(res); !strings.Contains(txt, "2 warning(s), not failing yet (MemoryNearLimit=1, MissingProbes=1)") ||
		!strings.Contains(txt, `class: "warning"`) {
		t.Errorf("analyze_cluster text does not count the warnings:\n%s", txt)
	}

	res = callTool(t, e.ctx, cs, "analyze_cluster", map[string]any{"class": "warning"})
	ws := structured[AnalyzeOut](t, res)
	if ws.Total != 2 || ws.Incidents[0].Severity != "warning" || len(ws.Warnings) != 0 {
		t.Errorf("class warning = %+v", ws)
	}
	if only := structured[AnalyzeOut](t, callTool(t, e.ctx, cs, "analyze_cluster", map[string]any{"issue_type": "MissingProbes"})); only.Total != 1 || only.Incidents[0].OwnerName != "front" {
		t.Errorf("issue_type MissingProbes = %+v", only)
	}

	res = callTool(t, e.ctx, cs, "get_incident", map[string]any{"incident_id": testWarning().ID})
	in := structured[IncidentDetailOut](t, res)
	if in.Class != "warning" || in.Forecast == nil || in.Forecast.Samples != 120 || len(in.Measurements) != 1 ||
		!strings.Contains(in.Evidence, "reaches the limit at 2026-12-06 17:40 UTC (R² 0.97)") {
		t.Errorf("get_incident of a warning = %+v", in)
	}
	if txt := resultText(res); !strings.Contains(txt, "A warning: nothing has failed yet. Evidence: memory_working_set 412Mi of 512Mi (80%)") {
		t.Errorf("get_incident text:\n%s", txt)
	}
	if f := structured[IncidentDetailOut](t, callTool(t, e.ctx, cs, "get_incident", map[string]any{"incident_id": failures[0].ID})); f.Class != "failure" || f.Evidence != "" {
		t.Errorf("get_incident of a failure = %+v", f)
	}
	// A failure is found among the failures: the warnings, which most
	// workloads carry, are not read for it.
	if last, _ := e.watcher.lastRequest(); last.Class != events.ClassFailure {
		t.Errorf("get_incident of a failure last asked the watcher for %+v: the warnings were scanned too", last)
	}

	res2 := readJSON[AnalyzeOut](t, cs, "kaar://warnings")
	if res2.Total != 2 || len(res2.Incidents) != 2 {
		t.Errorf("kaar://warnings = %+v", res2)
	}
	if inc := readJSON[AnalyzeOut](t, cs, "kaar://incidents"); inc.Total != 1 || inc.Warnings["MissingProbes"] != 1 {
		t.Errorf("kaar://incidents = %+v", inc)
	}
}
