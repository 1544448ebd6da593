package watcher

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The probe fixtures (testdata/probes) were recorded from the sandbox:
// a bare pod with sandbox.kaar.dev/liveness: fail (killed three times,
// running again; Warning Unhealthy "Liveness probe failed: HTTP probe
// failed with statuscode: 500", Normal Killing "Container app failed
// liveness probe, will be restarted") and one with
// sandbox.kaar.dev/readiness: fail (running, never ready; Warning
// Unhealthy "Readiness probe failed: ..."). The other cases change only
// the status fields or events a kubelet would write differently.
var probeRecorded = time.Date(2026, 12, 6, 10, 16, 23, 0, time.UTC)

func TestClassifyProbes(t *testing.T) {
	liveNow := probeRecorded.Add(time.Minute)       // within the 10m recovery window
	readyNow := probeRecorded.Add(11 * time.Minute) // past not_ready_after (10m)
	cases := []struct {
		name, fixture string
		now           time.Time
		change        func(p *corev1.Pod, evs []corev1.Event) []corev1.Event
		wantType      events.IssueType
		wantReason    string
		wantInMessage []string
		wantNotIn     string
	}{
		{name: "liveness kill", fixture: "sandbox-liveness", now: liveNow,
			wantType: events.IssueCrashLoopBackOff, wantReason: reasonClassLivenessProbe,
			wantInMessage: []string{"killed by the kubelet after failing its liveness probe (exit code 137)", "3 restarts",
				"Liveness probe failed: HTTP probe failed with statuscode: 500"}},
		{name: "liveness kill, SIGTERM honoured (143)", fixture: "sandbox-liveness", now: liveNow,
			change: func(p *corev1.Pod, evs []corev1.Event) []corev1.Event {
				p.Status.ContainerStatuses[0].LastTerminationState.Terminated.ExitCode = 143
				return evs
			},
			wantType: events.IssueCrashLoopBackOff, wantReason: reasonClassLivenessProbe, wantInMessage: []string{"(exit code 143)"}},
		{name: "liveness kill, waiting in back-off", fixture: "sandbox-liveness", now: liveNow,
			change: func(p *corev1.Pod, evs []corev1.Event) []corev1.Event {
				cs := &p.Status.ContainerStatuses[0]
				cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container=app"}}
				return evs
			},
			wantType: events.IssueCrashLoopBackOff, wantReason: reasonClassLivenessProbe},
		{name: "OOM kill with a failing liveness probe stays OOM", fixture: "sandbox-liveness", now: liveNow,
			change: func(p *corev1.Pod, evs []corev1.Event) []corev1.Event {
				p.Status.ContainerStatuses[0].LastTerminationState.Terminated.Reason = "OOMKilled"
				return evs
			},
			wantType: events.IssueOOMKilled, wantReason: reasonClassOOMKilled, wantNotIn: "liveness"},
		{name: "application exit with a failing liveness probe stays its exit", fixture: "sandbox-liveness", now: liveNow,
			change: func(p *corev1.Pod, evs []corev1.Event) []corev1.Event {
				p.Status.ContainerStatuses[0].LastTerminationState.Terminated.ExitCode = 1
				return evs
			},
			wantType: events.IssueCrashLoopBackOff, wantReason: "exit_code_1", wantNotIn: "liveness"},
		{name: "SIGKILL without probe failures", fixture: "sandbox-liveness", now: liveNow,
			change:   func(p *corev1.Pod, evs []corev1.Event) []corev1.Event { return withoutReason(evs, "Unhealthy") },
			wantType: events.IssueCrashLoopBackOff, wantReason: "sigkill", wantNotIn: "liveness"},
		{name: "probe failures from before the last run do not explain it", fixture: "sandbox-liveness",
			change: func(p *corev1.Pod, evs []corev1.Event) []corev1.Event {
				t := p.Status.ContainerStatuses[0].LastTerminationState.Terminated
				t.StartedAt = metav1.NewTime(probeRecorded.Add(10 * time.Minute))
				t.FinishedAt = metav1.NewTime(probeRecorded.Add(10*time.Minute + 30*time.Second))
				p.Status.ContainerStatuses[0].State.Running.StartedAt = metav1.NewTime(probeRecorded.Add(11 * time.Minute))
				return evs
			},
			now: probeRecorded.Add(12 * time.Minute), wantType: events.IssueCrashLoopBackOff, wantReason: "sigkill"},
		{name: "startup probe kill", fixture: "sandbox-liveness", now: liveNow,
			change: func(p *corev1.Pod, evs []corev1.Event) []corev1.Event {
				for i := range evs {
					evs[i].Message = strings.Replace(evs[i].Message, "Liveness", "Startup", 1)
				}
				return evs
			},
			wantType: events.IssueCrashLoopBackOff, wantReason: reasonClassStartupProbe, wantInMessage: []string{"failing its startup probe"}},
		{name: "readiness failure", fixture: "sandbox-readiness", now: readyNow,
			wantType: events.IssueNotReady, wantReason: reasonClassReadinessProbe,
			wantInMessage: []string{"has not been ready for 11m", "Readiness probe failed: HTTP probe failed with statuscode: 503"}},
		{name: "not ready without probe events", fixture: "sandbox-readiness", now: readyNow,
			change:   func(p *corev1.Pod, evs []corev1.Event) []corev1.Event { return withoutReason(evs, "Unhealthy") },
			wantType: events.IssueNotReady, wantReason: reasonClassNotReady, wantNotIn: "probe failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := loadPod(t, "probes/"+tc.fixture)
			evs := loadEvents(t, "probes/"+tc.fixture)
			if tc.change != nil {
				evs = tc.change(pod, evs)
			}
			got := Classify(pod, evs, tc.now, DefaultClassifyOptions())
			if len(got) != 1 {
				t.Fatalf("Classify = %+v, want one %s", got, tc.wantType)
			}
			g := got[0]
			if g.Type != tc.wantType || g.Reason != tc.wantReason || g.Container != "app" {
				t.Errorf("got {%s %s %s}, want {%s %s app}: %s", g.Type, g.Reason, g.Container, tc.wantType, tc.wantReason, g.Message)
			}
			for _, s := range tc.wantInMessage {
				if !strings.Contains(g.Message, s) {
					t.Errorf("message %q does not say %q", g.Message, s)
				}
			}
			if tc.wantNotIn != "" && strings.Contains(strings.ToLower(g.Message), tc.wantNotIn) {
				t.Errorf("message %q says %q", g.Message, tc.wantNotIn)
			}
			// The informers' trimmed pod and events classify the same.
			trimmed, _ := transform(pod)
			tevs := make([]corev1.Event, len(evs))
			for i := range evs {
				e, _ := transform(&evs[i])
				tevs[i] = *e.(*corev1.Event)
			}
			if again := Classify(trimmed.(*corev1.Pod), tevs, tc.now, DefaultClassifyOptions()); !sameIssues(again, got) {
				t.Errorf("trimmed pod classifies as %+v, want %+v", again, got)
			}
		})
	}
}

func TestProbeFailureOf(t *testing.T) {
	evs := loadEvents(t, "probes/sandbox-liveness")
	var found int
	for i := range evs {
		c, f, ok := ProbeFailureOf(&evs[i])
		if evs[i].Reason != "Unhealthy" {
			if ok {
				t.Errorf("%s event read as a probe failure", evs[i].Reason)
			}
			continue
		}
		found++
		if !ok || c != "app" || f.Probe != probeLiveness || f.Count < 1 || f.At.IsZero() || !strings.HasPrefix(f.Message, "Liveness probe failed") {
			t.Errorf("ProbeFailureOf = %q %+v %v", c, f, ok)
		}
	}
	if found == 0 {
		t.Fatal("the fixture has no Unhealthy event")
	}
	other := corev1.Event{Type: corev1.EventTypeWarning, Reason: "Unhealthy", Message: "Liveness probe failed: x",
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "p"}} // no container
	if _, _, ok := ProbeFailureOf(&other); ok {
		t.Error("an Unhealthy event without a container field path was read")
	}
	other.InvolvedObject.FieldPath = "spec.containers{app}"
	other.Message = "Something else failed"
	if _, _, ok := ProbeFailureOf(&other); ok {
		t.Error("an Unhealthy event about no probe was read")
	}
}

func TestMergeProbeKeepsTheLatest(t *testing.T) {
	at := probeRecorded
	m, changed := mergeProbe(nil, "app", ProbeFailure{Probe: probeLiveness, Message: "new", Count: 2, At: at})
	if !changed || m["app"].Liveness.Message != "new" {
		t.Fatalf("first failure not kept: %+v", m)
	}
	if _, changed := mergeProbe(m, "app", ProbeFailure{Probe: probeLiveness, Message: "old", Count: 1, At: at.Add(-time.Minute)}); changed {
		t.Error("an older report replaced a newer one")
	}
	m, changed = mergeProbe(m, "app", ProbeFailure{Probe: probeReadiness, Message: "r", Count: 1, At: at})
	if !changed || m["app"].Liveness.Message != "new" || m["app"].Readiness.Message != "r" {
		t.Errorf("probes of one container are not kept apart: %+v", m)
	}
}

func withoutReason(evs []corev1.Event, reason string) []corev1.Event {
	var out []corev1.Event
	for _, e := range evs {
		if e.Reason != reason {
			out = append(out, e)
		}
	}
	return out
}
