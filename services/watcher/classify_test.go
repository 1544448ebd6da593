package watcher

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
)

// fixtureNow is the time the crafted fixtures are classified at.
var fixtureNow = time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)

func loadPod(t testing.TB, name string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	var p corev1.Pod
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("decode fixture %s: %v", name, err)
	}
	return &p
}

// loadEvents reads the events recorded with a pod fixture
// (testdata/<name>.events.json, an EventList), nil when there are none.
func loadEvents(t testing.TB, name string) []corev1.Event {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".events.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("read events fixture: %v", err)
	}
	var l corev1.EventList
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatalf("decode events fixture %s: %v", name, err)
	}
	if len(l.Items) == 0 {
		t.Fatalf("events fixture %s has no events", name)
	}
	return l.Items
}

// want is an expected issue; ExitCode -1 means "no exit code".
type want struct {
	Type      events.IssueType
	Container string
	Reason    string
	ExitCode  int32
	Restarts  int32
}

func TestClassifyFixtures(t *testing.T) {
	crash := func(code int32, reason string) []want {
		return []want{{events.IssueCrashLoopBackOff, "app", reason, code, 3}}
	}
	cases := []struct {
		fixture string
		want    []want
	}{
		// CrashLoopBackOff: the reason class comes from the exit code.
		{"sandbox-crash-exit-0", crash(0, "completed")},
		{"sandbox-crash-exit-1", crash(1, "exit_code_1")},
		{"sandbox-crash-exit-2", crash(2, "exit_code_2")},
		{"sandbox-crash-exit-126", crash(126, "command_not_executable")},
		{"sandbox-crash-exit-127", crash(127, "command_not_found")},
		{"sandbox-crash-exit-137", crash(137, "sigkill")},
		{"sandbox-crash-exit-139", crash(139, "segfault")},
		{"sandbox-crash-exit-143", crash(143, "sigterm")},
		{"crafted-crash-running-again", []want{{events.IssueCrashLoopBackOff, "app", "exit_code_1", 1, 5}}},
		{"crafted-crash-terminated", []want{{events.IssueCrashLoopBackOff, "app", "exit_code_1", 1, 5}}},
		// OOMKilled: 137 with reason OOMKilled, also once running again.
		{"sandbox-oom", []want{{events.IssueOOMKilled, "app", "oom_killed", 137, 3}}},
		{"crafted-oom-running-again", []want{{events.IssueOOMKilled, "app", "oom_killed", 137, 4}}},
		{"crafted-job-oom-failed", []want{{events.IssueOOMKilled, "app", "oom_killed", 137, 0}}},
		// ImagePullBackOff, ErrImagePull, InvalidImageName.
		{"sandbox-errpull-notfound", []want{{events.IssueImagePullBackOff, "web", "image_not_found", -1, 0}}},
		{"sandbox-errpull-unauth", []want{{events.IssueImagePullBackOff, "web", "unauthorized", -1, 0}}},
		// ImagePullBackOff says only "Back-off pulling image": the cause
		// comes from the kubelet's Failed events recorded with the pod.
		{"sandbox-image-not-found", []want{{events.IssueImagePullBackOff, "web", "image_not_found", -1, 0}}},
		{"sandbox-image-unauthorized", []want{{events.IssueImagePullBackOff, "web", "unauthorized", -1, 0}}},
		{"crafted-image-rate-limited", []want{{events.IssueImagePullBackOff, "web", "rate_limited", -1, 0}}},
		{"crafted-image-registry-unreachable", []want{{events.IssueImagePullBackOff, "web", "registry_unavailable", -1, 0}}},
		{"crafted-invalid-image-name", []want{{events.IssueImagePullBackOff, "app", "invalid_image_name", -1, 0}}},
		// Pending: the scheduler's message gives the class.
		{"sandbox-unschedulable-cpu", []want{{events.IssuePending, "", "insufficient_cpu", -1, 0}}},
		{"sandbox-unschedulable-memory", []want{{events.IssuePending, "", "insufficient_memory", -1, 0}}},
		{"sandbox-unschedulable-selector", []want{{events.IssuePending, "", "node_selector", -1, 0}}},
		{"crafted-unschedulable-taint", []want{{events.IssuePending, "", "taint", -1, 0}}},
		{"crafted-unschedulable-pvc", []want{{events.IssuePending, "", "unbound_pvc", -1, 0}}},
		{"crafted-unschedulable-too-many-pods", []want{{events.IssuePending, "", "too_many_pods", -1, 0}}},
		{"crafted-unschedulable-nodes", []want{{events.IssuePending, "", "unschedulable_nodes", -1, 0}}},
		{"crafted-unschedulable-mixed", []want{{events.IssuePending, "", "taint", -1, 0}}},
		{"crafted-unschedulable-affinity", []want{{events.IssuePending, "", "pod_affinity", -1, 0}}},
		// FailedMount: the kubelet's event names the volume and the
		// missing ConfigMap; the pod itself only says ContainerCreating.
		{"sandbox-failed-mount-configmap", []want{{events.IssueFailedMount, "", "missing_configmap", -1, 0}}},
		// Evicted.
		{"sandbox-evicted", []want{{events.IssueEvicted, "", "evicted_memory", -1, 0}}},
		{"crafted-evicted-ephemeral", []want{{events.IssueEvicted, "", "evicted_ephemeral_storage", -1, 0}}},
		{"crafted-evicted-disk", []want{{events.IssueEvicted, "", "evicted_disk", -1, 0}}},
		// CreateContainerConfigError.
		{"sandbox-missing-configmap", []want{{events.IssueCreateContainerConfigError, "app", "missing_configmap", -1, 0}}},
		{"sandbox-missing-secret", []want{{events.IssueCreateContainerConfigError, "app", "missing_secret", -1, 0}}},
		// Beyond the brief's list: init containers, readiness, terminating.
		{"crafted-init-crash", []want{{events.IssueInitContainerFailing, "migrate", "exit_code_2", 2, 3}}},
		{"crafted-not-ready-long", []want{{events.IssueNotReady, "app", "not_ready", -1, 0}}},
		{"crafted-stuck-terminating", []want{{events.IssueStuckTerminating, "", "finalizers", -1, 0}}},

		// No false positives.
		{"sandbox-running", nil},
		{"sandbox-scheduled-starting", nil},
		{"sandbox-job-succeeded", nil},
		{"crafted-container-creating", nil},
		{"crafted-pod-initializing", nil},
		{"crafted-terminating-rollout", nil},
		{"crafted-single-restart-recovered", nil},
		{"crafted-crashloop-first-backoff", nil},
		{"crafted-oom-recovered", nil},
		{"crafted-job-error-failed", nil},
		{"crafted-not-ready-short", nil},
	}
	seen := map[events.IssueType]bool{}
	covered := map[string]bool{}
	ran := 0
	for _, tc := range cases {
		covered[tc.fixture] = true
		t.Run(tc.fixture, func(t *testing.T) {
			ran++
			pod := loadPod(t, tc.fixture)
			evs := loadEvents(t, tc.fixture)
			got := Classify(pod, evs, fixtureNow, DefaultClassifyOptions())
			if len(got) != len(tc.want) {
				t.Fatalf("Classify = %+v, want %d issues %+v", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				g := got[i]
				seen[g.Type] = true
				if g.Type != w.Type || g.Container != w.Container || g.Reason != w.Reason || g.RestartCount != w.Restarts {
					t.Errorf("issue %d = {%s %q %s restarts=%d}, want {%s %q %s restarts=%d}", i,
						g.Type, g.Container, g.Reason, g.RestartCount, w.Type, w.Container, w.Reason, w.Restarts)
				}
				switch {
				case w.ExitCode < 0 && g.ExitCode != nil:
					t.Errorf("exit code = %d, want none", *g.ExitCode)
				case w.ExitCode >= 0 && (g.ExitCode == nil || *g.ExitCode != w.ExitCode):
					t.Errorf("exit code = %v, want %d", g.ExitCode, w.ExitCode)
				}
				if g.Message == "" {
					t.Errorf("issue %d has no message", i)
				}
				// Every reason must be a valid incident reason.
				in := events.Incident{ID: events.IncidentID("c", "ns", "Pod", "p", g.Container, g.Type), Cluster: "c", Namespace: "ns",
					Owner: events.ObjectRef{Kind: "Pod", Name: "p"}, Container: g.Container, Type: g.Type, Reason: g.Reason,
					FirstSeen: fixtureNow, LastSeen: fixtureNow, Severity: g.Type.DefaultSeverity()}
				if err := in.Validate(); err != nil {
					t.Errorf("issue does not make a valid incident: %v", err)
				}
			}
			// The trimmed pod and events the informers cache classify the
			// same.
			trimmed, _ := transform(pod)
			trimmedEvs := make([]corev1.Event, len(evs))
			for i := range evs {
				e, _ := transform(&evs[i])
				trimmedEvs[i] = *e.(*corev1.Event)
			}
			if again := Classify(trimmed.(*corev1.Pod), trimmedEvs, fixtureNow, DefaultClassifyOptions()); !sameIssues(again, got) {
				t.Errorf("trimmed pod classifies as %+v, want %+v", again, got)
			}
		})
	}
	if ran < len(cases) {
		return // a -run filter selected some cases: no coverage check
	}
	for _, typ := range events.IssueTypes() {
		// Those: TestClassifyControllerFixtures, TestClassifyService,
		// TestClassifyNode, TestClassifyHPA, TestClassifyClaim,
		// TestClassifyIngress and TestClassifyCronJob; the warnings have
		// tests of their own (warn_*_test.go).
		if !seen[typ] && !controllerTypes[typ] && !serviceTypes[typ] && !nodeTypes[typ] && !hpaTypes[typ] && !storageTypes[typ] &&
			!ingressTypes[typ] && !cronJobTypes[typ] && !typ.IsWarning() {
			t.Errorf("no fixture covers issue type %s", typ)
		}
	}
	fixturesInTable(t, "testdata", covered)
}

// fixturesInTable fails for every fixture in dir (name.json, with its
// name.events.json) whose name is not covered by the test's table.
func fixturesInTable(t *testing.T, dir string, covered map[string]bool) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(f), ".json"), ".events")
		if !covered[name] {
			t.Errorf("fixture %s is not in the table", filepath.Join(dir, filepath.Base(f)))
		}
	}
}

func sameIssues(a, b []PodIssue) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].Container != b[i].Container || a[i].Reason != b[i].Reason || a[i].Message != b[i].Message ||
			a[i].RestartCount != b[i].RestartCount || !equalPtr(a[i].ExitCode, b[i].ExitCode) {
			return false
		}
	}
	return true
}

func TestClassifyOptions(t *testing.T) {
	opts := DefaultClassifyOptions()

	t.Run("pending grace", func(t *testing.T) {
		pod := loadPod(t, "sandbox-unschedulable-cpu")
		since := condition(pod, corev1.PodScheduled).LastTransitionTime.Time
		o := opts
		o.PendingGrace = time.Minute
		got, recheck := classify(pod, Evidence{}, since.Add(30*time.Second), o)
		if len(got) != 0 {
			t.Fatalf("within the grace period: %+v, want none", got)
		}
		if !recheck.Equal(since.Add(time.Minute)) {
			t.Errorf("recheck = %s, want the end of the grace period %s", recheck, since.Add(time.Minute))
		}
		if got := Classify(pod, nil, since.Add(time.Minute), o); len(got) != 1 || got[0].Type != events.IssuePending {
			t.Errorf("after the grace period: %+v, want Pending", got)
		}
	})

	t.Run("restart threshold", func(t *testing.T) {
		pod := loadPod(t, "sandbox-crash-exit-1") // 3 restarts
		for thr, wantN := range map[int32]int{0: 1, 2: 1, 3: 0, 10: 0} {
			o := opts
			o.RestartThreshold = thr
			if got := Classify(pod, nil, fixtureNow, o); len(got) != wantN {
				t.Errorf("threshold %d: %d issues, want %d", thr, len(got), wantN)
			}
		}
	})

	t.Run("recovery window", func(t *testing.T) {
		pod := loadPod(t, "crafted-oom-running-again") // running since 00:58:30
		started := pod.Status.ContainerStatuses[0].State.Running.StartedAt.Time
		_, recheck := classify(pod, Evidence{}, fixtureNow, opts)
		if !recheck.Equal(started.Add(opts.RecoveredAfter)) {
			t.Errorf("recheck = %s, want %s", recheck, started.Add(opts.RecoveredAfter))
		}
		if got := Classify(pod, nil, started.Add(opts.RecoveredAfter), opts); len(got) != 0 {
			t.Errorf("after the recovery window: %+v, want none", got)
		}
		o := opts
		o.RecoveredAfter = 0
		if got := Classify(pod, nil, fixtureNow, o); len(got) != 0 {
			t.Errorf("RecoveredAfter 0: %+v, want none (running is recovered)", got)
		}
	})

	t.Run("disabled checks", func(t *testing.T) {
		o := opts
		o.NotReadyAfter, o.StuckTerminatingAfter = 0, 0
		for _, f := range []string{"crafted-not-ready-long", "crafted-stuck-terminating"} {
			if got := Classify(loadPod(t, f), nil, fixtureNow, o); len(got) != 0 {
				t.Errorf("%s with the check disabled: %+v, want none", f, got)
			}
		}
	})

	t.Run("nil pod", func(t *testing.T) {
		if got := Classify(nil, nil, fixtureNow, opts); got != nil {
			t.Errorf("Classify(nil) = %+v", got)
		}
	})
}

func TestPendingIssue(t *testing.T) {
	const notHelpful = " preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
	for _, tc := range []struct{ msg, reason, message string }{
		{"", "unschedulable", ""},
		{"no nodes available to schedule pods", "no_nodes", "no nodes available to schedule pods"},
		{"0/2 nodes are available: 2 Insufficient nvidia.com/gpu.", "insufficient_resources", "0/2 nodes: 2 insufficient nvidia.com/gpu"},
		{"0/4 nodes are available: 3 Insufficient memory, 1 Insufficient cpu. preemption: 0/4 nodes are available: 4 No preemption victims found for incoming pod.",
			"insufficient_memory", "0/4 nodes: 3 insufficient memory, 1 insufficient cpu"},
		{"0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}." + notHelpful,
			"taint", "0/3 nodes: 2 untolerated taint dedicated=gpu, 1 insufficient cpu"},
		{"0/3 nodes are available: 3 node(s) had untolerated taint(s)." + notHelpful, "taint", "0/3 nodes: 3 untolerated taint(s)"},
		{"0/3 nodes are available: 1 node(s) had volume node affinity conflict, 2 node(s) didn't match Pod's node affinity/selector.",
			"node_selector", "0/3 nodes: 2 node selector/affinity mismatch, 1 volume node affinity conflict"},
		{"0/3 nodes are available: 3 node(s) had volume node affinity conflict.", "volume_node_affinity", "0/3 nodes: 3 volume node affinity conflict"},
		{"0/3 nodes are available: 3 node(s) didn't have free ports for the requested pod ports." + notHelpful, "host_port", "0/3 nodes: 3 host port in use"},
		{`0/3 nodes are available: persistentvolumeclaim "data" not found.` + notHelpful, "missing_pvc", `0/3 nodes: 3 persistentvolumeclaim "data" not found`},
		{"0/3 nodes are available: 2 node(s) had untolerated taint {node.kubernetes.io/unschedulable: }, 1 Insufficient cpu.",
			"unschedulable_nodes", "0/3 nodes: 2 cordoned, 1 insufficient cpu"},
		{"0/3 nodes are available: 3 node(s) didn't match pod topology spread constraints.", "topology_spread", "0/3 nodes: 3 topology spread"},
		{"something new", "unschedulable", "something new"},
	} {
		got := pendingIssue(tc.msg)
		if got.Type != events.IssuePending || got.Reason != tc.reason || got.Message != tc.message {
			t.Errorf("pendingIssue(%q) = %s %q %q, want Pending %q %q", tc.msg, got.Type, got.Reason, got.Message, tc.reason, tc.message)
		}
	}
}

func TestExitReason(t *testing.T) {
	for code, want := range map[int32]string{0: "completed", 1: "exit_code_1", 42: "exit_code_42", 126: "command_not_executable",
		127: "command_not_found", 130: "sigint", 134: "sigabrt", 137: "sigkill", 139: "segfault", 143: "sigterm", 129: "signal_1", 255: "exit_code_255", -1: "exit_code_negative"} {
		if got := exitReason(code); got != want {
			t.Errorf("exitReason(%d) = %q, want %q", code, got, want)
		}
	}
}

// BenchmarkClassify classifies every fixture (a mix of healthy and
// failing pods, as a resync delivers them); ns/op is per pod.
func BenchmarkClassify(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	pods := make([]*corev1.Pod, 0, len(files))
	for _, f := range files {
		if !strings.HasSuffix(f, ".events.json") {
			pods = append(pods, loadPod(b, strings.TrimSuffix(filepath.Base(f), ".json")))
		}
	}
	opts := DefaultClassifyOptions()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		_ = Classify(pods[i%len(pods)], nil, fixtureNow, opts)
	}
}
