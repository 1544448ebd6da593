package watcher

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
	corev1 "k8s.io/api/core/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files (here: the shared incident of pkg/events/text/texttest)")

// hostileFixture is the shared hostile workload's pod and events.
func hostileFixture(t *testing.T) (*corev1.Pod, []corev1.Event) {
	t.Helper()
	var f struct {
		Pods   []corev1.Pod   `json:"pods"`
		Events []corev1.Event `json:"events"`
	}
	if err := json.Unmarshal(texttest.Fixture(), &f); err != nil {
		t.Fatal(err)
	}
	return &f.Pods[0], f.Events
}

// TestTerminationMessageCredentialsNeverReachTheBus: the watcher's incident
// for a pod whose termination message carries instructions, escape
// sequences and fake credentials keeps the text (it is data) but withholds
// every credential line, before anything is published. The incident is
// the shared golden file the planner, gateway, notifier and CLI tests
// render.
func TestTerminationMessageCredentialsNeverReachTheBus(t *testing.T) {
	pod, evs := hostileFixture(t)
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	issues := Classify(pod, evs, now, DefaultClassifyOptions())
	if len(issues) != 1 || issues[0].Type != events.IssueCrashLoopBackOff {
		t.Fatalf("Classify = %+v, want one CrashLoopBackOff", issues)
	}
	owner := events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "checkout", UID: "5e1f2c3a-8b7d-4c6e-9f0a-1b2c3d4e5f60", APIVersion: "apps/v1"}
	chain := []events.ObjectRef{{Kind: "ReplicaSet", Namespace: "shop", Name: "checkout-7d9f8b6c5", UID: "7b1f2c3a-8b7d-4c6e-9f0a-1b2c3d4e5f62", APIVersion: "apps/v1"}, owner}
	tr := newTracker("prod", Timing{GroupInterval: 30 * time.Second, ResolveWait: 10 * time.Second}, nil)
	ann, _ := tr.Observe(owner, []podObs{{Name: pod.Name, Chain: chain, Issues: issues}}, now)
	if len(ann) != 1 || ann[0].Transition != events.TransitionDetected {
		t.Fatalf("announcements = %+v, want one detection", ann)
	}
	in := ann[0].Incident
	if err := in.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, s := range texttest.Secrets {
		if strings.Contains(in.Message, s) {
			t.Errorf("incident message carries credential %q: %q", s, in.Message)
		}
	}
	if strings.ContainsAny(in.Message, "\x1b\a\u202e\u009b") {
		t.Errorf("incident message carries escape sequences or a bidi override: %q", in.Message)
	}
	for _, want := range []string{texttest.Injection, text.Withheld, "click to approve", "fatal: cannot reach db:5432"} {
		if !strings.Contains(in.Message, want) {
			t.Errorf("incident message lacks %q: %q", want, in.Message)
		}
	}
	got, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("..", "..", "pkg", "events", "text", "texttest", filepath.FromSlash(texttest.IncidentFile))
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
		t.Errorf("incident differs from %s (rerun with -update if intended):\n got: %s\nwant: %s", path, got, want)
	}
}
