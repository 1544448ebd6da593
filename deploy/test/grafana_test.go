package deploytest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// codeMetric is a Prometheus metric kaar's code declares.
type codeMetric struct {
	kind   string // Counter, Gauge, Histogram, Summary
	labels []string
	file   string
}

var (
	// prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kaar_...", ...}, []string{"a", "b"})
	metricDecl   = regexp.MustCompile(`prometheus\.New(Counter|Gauge|Histogram|Summary)(Vec)?\(\s*prometheus\.(?:Counter|Gauge|Histogram|Summary)Opts\{\s*Name:\s*"(kaar_[a-z0-9_]+)"`)
	labelList    = regexp.MustCompile(`\}\s*,\s*\[\]string\{([^}]*)\}`)
	quoted       = regexp.MustCompile(`"([^"]*)"`)
	metricInExpr = regexp.MustCompile(`\bkaar_[a-z0-9_]+`)
	byClause     = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
	legendLabel  = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

// kaarMetrics greps the Go sources of services/, pkg/ and cmd/ (tests
// excluded) for the metrics they declare, with their kind and labels.
func kaarMetrics(t *testing.T) map[string]codeMetric {
	t.Helper()
	root := repoRoot(t)
	out := map[string]codeMetric{}
	for _, dir := range []string{"services", "pkg", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			src := string(b)
			decls := metricDecl.FindAllStringSubmatchIndex(src, -1)
			for i, m := range decls {
				kind, vec, name := src[m[2]:m[3]], m[4] >= 0, src[m[6]:m[7]]
				cm := codeMetric{kind: kind, file: path}
				if vec {
					// The label list follows the options, before the next
					// declaration.
					end := len(src)
					if i+1 < len(decls) {
						end = decls[i+1][0]
					}
					l := labelList.FindStringSubmatch(src[m[7]:end])
					if l == nil {
						t.Fatalf("%s: cannot find the labels of %s", path, name)
					}
					for _, q := range quoted.FindAllStringSubmatch(l[1], -1) {
						cm.labels = append(cm.labels, q[1])
					}
				}
				if prev, dup := out[name]; dup {
					t.Fatalf("metric %s declared twice (%s, %s)", name, prev.file, path)
				}
				out[name] = cm
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// dashboardPanel is what the test reads of a Grafana panel.
type dashboardPanel struct {
	ID         int               `json:"id"`
	Type       string            `json:"type"`
	Title      string            `json:"title"`
	GridPos    map[string]int    `json:"gridPos"`
	Datasource map[string]string `json:"datasource"`
	Targets    []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// TestGrafanaDashboardQueriesKaarMetrics parses deploy/grafana/kaar.json
// and checks every query against the metrics the code declares (grepped
// from the Go sources): each kaar_* name exists, histograms are read
// through _bucket with histogram_quantile and counters through rate or
// increase, grouping and legend labels are the metric's own, and the
// metrics an operator needs are all on the dashboard.
func TestGrafanaDashboardQueriesKaarMetrics(t *testing.T) {
	code := kaarMetrics(t)
	if len(code) < 15 {
		t.Fatalf("found only %d kaar metrics in the code: the grep is broken", len(code))
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "grafana", "kaar.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID           string           `json:"uid"`
		Title         string           `json:"title"`
		SchemaVersion int              `json:"schemaVersion"`
		Panels        []dashboardPanel `json:"panels"`
		Templating    struct {
			List []struct {
				Name string `json:"name"`
				Type string `json:"type"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("kaar.json is not a dashboard: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || dash.SchemaVersion < 36 {
		t.Errorf("uid %q title %q schemaVersion %d", dash.UID, dash.Title, dash.SchemaVersion)
	}
	if !slices.ContainsFunc(dash.Templating.List, func(v struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource"
	}) {
		t.Error("no datasource variable: the dashboard would be tied to one Prometheus")
	}
	var panels []dashboardPanel
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			panels = append(panels, p)
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	ids := map[int]bool{}
	used := map[string]bool{}
	queries := 0
	for _, p := range panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos["w"] == 0 || p.GridPos["h"] == 0 {
			t.Errorf("panel %q has no size", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource["uid"] != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %v, %d queries", p.Title, p.Datasource, len(p.Targets))
		}
		for _, tg := range p.Targets {
			queries++
			checkQuery(t, p.Title, tg.Expr, tg.LegendFormat, code, used)
		}
	}
	// What the dashboard is for: each of these must be on it.
	for _, m := range []string{
		"kaar_watcher_detections_total", "kaar_watcher_incidents", "kaar_planner_plans_total", "kaar_planner_dryrun_failures_total",
		"kaar_mcpgateway_approvals_total", "kaar_executor_executions_total", "kaar_executor_refusals_total", "kaar_executor_resumed_total",
		"kaar_executor_step_duration_seconds", "kaar_executor_verification_duration_seconds", "kaar_executor_api_retries_total",
	} {
		if !used[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
	var unused []string
	for m := range code {
		if !used[m] {
			unused = append(unused, m)
		}
	}
	sort.Strings(unused)
	t.Logf("%d panels, %d queries over %d of %d metrics; not shown: %v", len(panels), queries, len(used), len(code), unused)
}

func checkQuery(t *testing.T, panel, expr, legend string, code map[string]codeMetric, used map[string]bool) {
	t.Helper()
	names := metricInExpr.FindAllString(expr, -1)
	if len(names) == 0 {
		t.Errorf("panel %q: query %q reads no kaar metric", panel, expr)
		return
	}
	labels := map[string]bool{"namespace": true} // added by the scrape ($namespace)
	for _, name := range names {
		base, series := name, ""
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok {
				if _, declared := code[b]; declared {
					base, series = b, suffix
				}
			}
		}
		m, ok := code[base]
		if !ok {
			t.Errorf("panel %q: %s is not a metric of kaar's code", panel, name)
			continue
		}
		used[base] = true
		for _, l := range m.labels {
			labels[l] = true
		}
		switch m.kind {
		case "Histogram":
			if series != "_bucket" || !strings.Contains(expr, "histogram_quantile(") || !strings.Contains(expr, "le") {
				t.Errorf("panel %q: histogram %s read as %q, want histogram_quantile over %s_bucket by le", panel, base, expr, base)
			}
			labels["le"] = true
		case "Counter":
			if !strings.Contains(expr, "rate("+name) && !strings.Contains(expr, "increase("+name) {
				t.Errorf("panel %q: counter %s not read through rate() or increase(): %q", panel, name, expr)
			}
		case "Gauge":
			if strings.Contains(expr, "rate("+name) || strings.Contains(expr, "increase("+name) {
				t.Errorf("panel %q: rate of gauge %s: %q", panel, name, expr)
			}
		}
	}
	for _, by := range byClause.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(by[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !labels[l] {
				t.Errorf("panel %q: groups by %q, which %v do not have", panel, l, names)
			}
		}
	}
	for _, l := range legendLabel.FindAllStringSubmatch(legend, -1) {
		if !labels[l[1]] {
			t.Errorf("panel %q: legend uses {{%s}}, which %v do not have", panel, l[1], names)
		}
	}
}
