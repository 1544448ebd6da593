package mcpinterop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/sandbox"
)

var (
	scenarioLineRE = regexp.MustCompile(`^\s+-\s+(\S+)`)
	resultDirRE    = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$`)
)

// conformance runs the suite's CLI and returns its combined output.
func conformance(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(mcpTools(t), "conformance"), args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "NO_COLOR=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestConformanceServerScenarios runs every server scenario of the MCP
// conformance suite (--suite all: the active and the pending ones) against
// kaar serve's streamable HTTP endpoint and compares each scenario's
// verdict with testdata/expected-failures.txt.
func TestConformanceServerScenarios(t *testing.T) {
	t.Parallel()
	mcpTools(t)
	c := sandbox.ForTest(t)
	s := startServe(t, c, sandbox.NewNamespace(t, c.Clientset()), serveOptions{})
	expected := loadExpectedFailures(t)

	listed, err := conformance(t, time.Minute, "list", "--server")
	if err != nil {
		t.Fatalf("conformance list --server: %v\n%s", err, listed)
	}
	var scenarios []string
	for _, line := range strings.Split(listed, "\n") {
		if m := scenarioLineRE.FindStringSubmatch(line); m != nil {
			scenarios = append(scenarios, m[1])
		}
	}
	if len(scenarios) < 20 {
		t.Fatalf("conformance list --server names %d scenarios, want the suite's 30 or so:\n%s", len(scenarios), listed)
	}

	results := t.TempDir()
	out, runErr := conformance(t, 10*time.Minute, "server", "--url", s.mcpURL, "--suite", "all", "-o", results)
	// The suite exits 1 when a scenario fails; the verdicts are judged
	// below from its result files, against the list of expected failures.
	entries, err := os.ReadDir(results)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]outcome{}
	for _, e := range entries {
		m := resultDirRE.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(results, e.Name(), "checks.json"))
		if err != nil {
			t.Errorf("scenario %s: %v", m[1], err)
			continue
		}
		var checks []struct {
			ID           string `json:"id"`
			Status       string `json:"status"`
			ErrorMessage string `json:"errorMessage"`
			Description  string `json:"description"`
		}
		if err := json.Unmarshal(raw, &checks); err != nil {
			t.Errorf("scenario %s: checks.json: %v", m[1], err)
			continue
		}
		var o outcome
		var msgs []string
		for _, c := range checks {
			// FAILURE and WARNING make the suite's own summary mark
			// the scenario failed; SUCCESS, INFO and SKIPPED do not.
			if c.Status == "FAILURE" || c.Status == "WARNING" {
				o.failed = true
				msg := c.ErrorMessage
				if msg == "" {
					msg = c.Description
				}
				msgs = append(msgs, c.Status+" "+c.ID+": "+msg)
			}
		}
		o.message = strings.Join(msgs, "; ")
		got["conformance/"+m[1]] = o
	}
	var missing []string
	for _, sc := range scenarios {
		if _, ok := got["conformance/"+sc]; !ok {
			missing = append(missing, sc)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the suite listed these server scenarios but left no result for them: %v (exit: %v)\n%s", missing, runErr, tail(out, 60))
	}
	compareExpected(t, "conformance/", expected, got)
	if t.Failed() {
		t.Logf("conformance server output (last lines):\n%s", tail(out, 80))
	}
}
