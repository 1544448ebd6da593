package watcher

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// classifyControllerFixture classifies testdata/controllers/<name>.json (a
// ReplicaSet, Deployment, StatefulSet, DaemonSet or Job, or a JobList of
// one owner's runs) with the FailedCreate events recorded beside it, as
// recorded and (trimmed true) as the informers cache it.
func classifyControllerFixture(t *testing.T, name string, trimmed bool) []ControllerIssue {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "controllers", name+".json"))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	var fc *CreateFailure
	for _, ev := range loadEvents(t, filepath.Join("controllers", name)) {
		if trimmed {
			e, _ := transform(&ev)
			ev = *e.(*corev1.Event)
		}
		if _, c, ok := CreateFailureOf(&ev); ok && (fc == nil || c.At.After(fc.At)) {
			fc = &c
		}
	}
	trim := func(o any) any {
		if !trimmed {
			return o
		}
		out, err := transform(o)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(b, &tm); err != nil {
		t.Fatalf("decode fixture %s: %v", name, err)
	}
	decode := func(v any) {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("decode fixture %s: %v", name, err)
		}
	}
	switch tm.Kind {
	case "ReplicaSet":
		var o appsv1.ReplicaSet
		decode(&o)
		return ClassifyReplicaSet(trim(&o).(*appsv1.ReplicaSet))
	case "Deployment":
		var o appsv1.Deployment
		decode(&o)
		return ClassifyDeployment(trim(&o).(*appsv1.Deployment))
	case "StatefulSet":
		var o appsv1.StatefulSet
		decode(&o)
		return ClassifyStatefulSet(trim(&o).(*appsv1.StatefulSet), fc)
	case "DaemonSet":
		var o appsv1.DaemonSet
		decode(&o)
		return ClassifyDaemonSet(trim(&o).(*appsv1.DaemonSet), fc)
	case "Job":
		var o batchv1.Job
		decode(&o)
		j := trim(&o).(*batchv1.Job)
		return append(ClassifyJob(j, fc), ClassifyJobRuns([]*batchv1.Job{j})...)
	case "JobList":
		var l batchv1.JobList
		decode(&l)
		jobs := make([]*batchv1.Job, len(l.Items))
		for i := range l.Items {
			jobs[i] = trim(&l.Items[i]).(*batchv1.Job)
		}
		return ClassifyJobRuns(jobs)
	}
	t.Fatalf("fixture %s: unexpected kind %q", name, tm.Kind)
	return nil
}

func TestClassifyControllerFixtures(t *testing.T) {
	type cwant struct {
		Type     events.IssueType
		Reason   string
		PodCount int
	}
	failedCreate := func(reason string, missing int) []cwant { return []cwant{{events.IssueFailedCreate, reason, missing}} }
	cases := []struct {
		fixture string
		want    []cwant
		// inMessage must appear in the issue's message.
		inMessage string
	}{
		// A ReplicaSet's pods cannot be created: condition ReplicaFailure.
		{"crafted-rs-exceeded-quota", failedCreate("exceeded_quota", 2), "exceeded quota: compute"},
		{"crafted-rs-quota-requires-limits", failedCreate("quota_requires_limits", 2), "must specify limits.cpu"},
		{"crafted-rs-missing-service-account", failedCreate("missing_service_account", 3), `serviceaccount "builder" not found`},
		{"crafted-rs-pod-security", failedCreate("pod_security", 3), "violates PodSecurity"},
		{"crafted-rs-webhook-denied", failedCreate("webhook_denied", 3), "denied the request"},
		{"crafted-rs-webhook-unreachable", failedCreate("webhook_unreachable", 3), "failed calling webhook"},
		{"crafted-rs-limit-range", failedCreate("limit_range", 3), "maximum cpu usage per Container"},
		{"crafted-rs-other", failedCreate("other", 1), "node quota unavailable"},
		// StatefulSets, DaemonSets and Jobs say it only in events.
		{"crafted-sts-exceeded-quota", failedCreate("exceeded_quota", 2), "create Pod db-1 in StatefulSet db failed"},
		{"crafted-ds-pod-security", failedCreate("pod_security", 3), "hostNetwork=true"},
		{"crafted-job-missing-service-account", failedCreate("missing_service_account", 1), `serviceaccount "migrator" not found`},
		// A rollout past its progress deadline, with its revision.
		{"crafted-deploy-progress-deadline", []cwant{{events.IssueRolloutStuck, "progress_deadline_exceeded", 1}}, "(revision 4)"},
		// Jobs that failed for good; a CronJob's runs are one issue.
		{"crafted-job-backoff-limit", []cwant{{events.IssueJobFailed, "backoff_limit_exceeded", 1}}, "backoff limit"},
		{"crafted-job-deadline", []cwant{{events.IssueJobFailed, "deadline_exceeded", 1}}, "longer than specified deadline"},
		{"crafted-job-pod-failure-policy", []cwant{{events.IssueJobFailed, "pod_failure_policy", 1}}, "matching FailJob rule"},
		{"crafted-cronjob-runs-failed", []cwant{{events.IssueJobFailed, "backoff_limit_exceeded", 1}}, "job nightly-29480220 failed (BackoffLimitExceeded): Job has reached the specified backoff limit; 1 failed pods; 3 of the last 3 runs failed"},

		// No false alarms.
		{"crafted-rs-healthy", nil, ""},
		{"crafted-rs-scaled-to-zero", nil, ""},
		{"crafted-sts-all-pods", nil, ""},
		{"crafted-deploy-rolling-within-deadline", nil, ""},
		{"crafted-deploy-scaled-to-zero", nil, ""},
		{"crafted-deploy-paused", nil, ""},
		{"crafted-deploy-rolled-back-not-observed", nil, ""},
		{"crafted-job-complete", nil, ""},
		{"crafted-job-running", nil, ""},
		{"crafted-job-suspended", nil, ""},
		{"crafted-cronjob-later-run-succeeded", nil, ""},
	}
	seen := map[events.IssueType]bool{}
	covered := map[string]bool{}
	ran := 0
	for _, tc := range cases {
		covered[tc.fixture] = true
		t.Run(tc.fixture, func(t *testing.T) {
			ran++
			got := classifyControllerFixture(t, tc.fixture, false)
			if len(got) != len(tc.want) {
				t.Fatalf("classify = %+v, want %d issues %+v", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				g := got[i]
				seen[g.Type] = true
				if g.Type != w.Type || g.Reason != w.Reason || g.PodCount != w.PodCount {
					t.Errorf("issue %d = {%s %s pods=%d}, want {%s %s pods=%d}", i, g.Type, g.Reason, g.PodCount, w.Type, w.Reason, w.PodCount)
				}
				if !strings.Contains(g.Message, tc.inMessage) {
					t.Errorf("message %q does not contain %q", g.Message, tc.inMessage)
				}
				in := events.Incident{ID: events.IncidentID("c", "ns", "Deployment", "d", "", g.Type), Cluster: "c", Namespace: "ns",
					Owner: events.ObjectRef{Kind: "Deployment", Name: "d"}, Type: g.Type, Reason: g.Reason, PodCount: g.PodCount,
					FirstSeen: fixtureNow, LastSeen: fixtureNow, Severity: g.Type.DefaultSeverity()}
				if err := in.Validate(); err != nil {
					t.Errorf("issue does not make a valid incident: %v", err)
				}
			}
			// The trimmed objects the informers cache classify the same.
			if again := classifyControllerFixture(t, tc.fixture, true); !slices.Equal(again, got) {
				t.Errorf("trimmed objects classify as %+v, want %+v", again, got)
			}
		})
	}
	if ran < len(cases) {
		return // a -run filter selected some cases: no coverage check
	}
	for typ := range controllerTypes {
		if !seen[typ] {
			t.Errorf("no controller fixture covers issue type %s", typ)
		}
	}
	fixturesInTable(t, filepath.Join("testdata", "controllers"), covered)
}

func TestFailedCreateReason(t *testing.T) {
	for msg, want := range map[string]string{
		`pods "x-" is forbidden: exceeded quota: q, requested: cpu=2, used: cpu=3, limited: cpu=4`:                 "exceeded_quota",
		`pods "x-" is forbidden: failed quota: q: must specify requests.memory for: app`:                           "quota_requires_limits",
		`pods "x-" is forbidden: error looking up service account ns/sa: serviceaccount "sa" not found`:            "missing_service_account",
		`pods "x-" is forbidden: violates PodSecurity "restricted:latest": privileged`:                             "pod_security",
		`admission webhook "deny.example.com" denied the request: exceeded quota is not the cause`:                 "webhook_denied",
		`Internal error occurred: failed calling webhook "m.example.com": context deadline exceeded`:               "webhook_unreachable",
		`pods "x-" is forbidden: [minimum memory usage per Container is 64Mi, but request is 32Mi, LimitRange lr]`: "limit_range",
		`pods "x-" is forbidden: maximum memory usage per Pod is 1Gi, but limit is 2Gi`:                            "limit_range",
		// A quoted name is not a cause.
		`pods "exceeded-quota-7f9c-" is forbidden: something new`: "other",
		"": "other",
	} {
		if got := FailedCreateReason(msg); got != want {
			t.Errorf("FailedCreateReason(%q) = %s, want %s", msg, got, want)
		}
	}
}

// TestOwnerEvaluationCombinesPodsAndController: a Deployment whose rollout
// is stuck because its new pods crash has both incidents, through the same
// tracker; the RolloutStuck one points at the pods' incident, and each
// resolves on its own.
func TestOwnerEvaluationCombinesPodsAndController(t *testing.T) {
	tr := newTracker("prod", Timing{GroupInterval: 30 * time.Second, ResolveWait: 10 * time.Second}, nil)
	stuck := []ctrlObs{{Chain: []events.ObjectRef{payments}, Issues: []ControllerIssue{{Type: events.IssueRolloutStuck,
		Reason: "progress_deadline_exceeded", Message: "rollout of deployment payments-api (revision 2) stopped", PodCount: 2,
		ReplicaSet: "payments-api-7d9f"}}}}
	observe := func(pods []podObs, ctrls []ctrlObs, now time.Time) map[events.IssueType]announcement {
		t.Helper()
		due, _ := tr.ObserveOwner(payments, pods, ctrls, now)
		out := map[events.IssueType]announcement{}
		for _, a := range due {
			ev := events.IncidentEvent{Transition: a.Transition, Incident: a.Incident, ObservedAt: a.At, Observation: a.Observation}
			if err := ev.Validate(); err != nil {
				t.Fatalf("announcement %s is not a valid event: %v", a.Transition, err)
			}
			tr.Commit(a)
			out[a.Incident.Type] = a
		}
		return out
	}
	got := observe(crashing(2, 1, 3), stuck, t0)
	rs, crash := got[events.IssueRolloutStuck], got[events.IssueCrashLoopBackOff]
	if rs.Transition != events.TransitionDetected || crash.Transition != events.TransitionDetected {
		t.Fatalf("announcements = %+v, want both detected", got)
	}
	if rs.Incident.Owner != payments || rs.Incident.PodCount != 2 || rs.Incident.Container != "" ||
		!strings.HasSuffix(rs.Incident.Message, "; see the CrashLoopBackOff incident of its pods") {
		t.Errorf("RolloutStuck incident = %+v", rs.Incident)
	}
	if rs.Incident.ID == crash.Incident.ID {
		t.Fatal("one id for two incidents")
	}
	// Rolled back: the controller's issue clears, the pods still crash.
	got = observe(crashing(2, 1, 3), nil, t0.Add(time.Second))
	if len(got) != 0 {
		t.Fatalf("announcements within the resolve wait = %+v", got)
	}
	got = observe(crashing(2, 1, 3), nil, t0.Add(12*time.Second))
	if a, ok := got[events.IssueRolloutStuck]; !ok || a.Transition != events.TransitionResolved || len(got) != 1 {
		t.Fatalf("announcements = %+v, want RolloutStuck resolved alone", got)
	}
	if !tr.Open(keyOf(payments)) {
		t.Fatal("the crash incident should still be open")
	}
}
