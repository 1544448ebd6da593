package watcher

import (
	"fmt"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
	corev1 "k8s.io/api/core/v1"
)

// Probe failures: the kubelet's Warning Unhealthy events ("Liveness probe
// failed: HTTP probe failed with statuscode: 500") tell a container the
// kubelet killed for its liveness (or startup) probe apart from one that
// exited or was OOM-killed, and say why a running pod is not ready. The
// pod's status alone cannot: a liveness kill is an exit code 137 (or 143)
// with reason Error, like any SIGKILL.

// Reason classes the probe evidence gives.
const (
	// reasonClassLivenessProbe: a CrashLoopBackOff whose last termination
	// followed failures of the container's liveness probe.
	reasonClassLivenessProbe = "liveness_probe"
	// reasonClassStartupProbe: the same, for its startup probe.
	reasonClassStartupProbe = "startup_probe"
	// reasonClassReadinessProbe: a NotReady pod whose readiness probe
	// fails.
	reasonClassReadinessProbe = "readiness_probe"
)

// Probe kinds, as the kubelet's messages name them.
const (
	probeLiveness  = "Liveness"
	probeReadiness = "Readiness"
	probeStartup   = "Startup"
)

// eventReasonUnhealthy is the kubelet's reason for a failed probe.
const eventReasonUnhealthy = "Unhealthy"

// probeEventFieldSelector is the server-side filter of the probe events
// informer: only the kubelet's probe failures of pods.
const probeEventFieldSelector = "involvedObject.kind=Pod,type=Warning,reason=" + eventReasonUnhealthy

// probeSlack is how much earlier than a container's last run a probe
// failure may be reported and still count for it (clocks, and the
// kubelet reporting the failure that starts the run's count).
const probeSlack = time.Minute

// ProbeFailure is the kubelet's last report that a probe of a container
// failed.
type ProbeFailure struct {
	// Probe is Liveness, Readiness or Startup.
	Probe string
	// Message is the kubelet's message ("Liveness probe failed: HTTP
	// probe failed with statuscode: 500"), for people.
	Message string
	// Count is how many times the event says it failed (at least 1).
	Count int32
	// At is the last time it was reported.
	At time.Time
}

// ContainerProbes are the last failures of a container's probes, zero
// when none was reported.
type ContainerProbes struct {
	Liveness, Readiness, Startup ProbeFailure
}

// get returns the failure of probe kind p.
func (c ContainerProbes) get(p string) ProbeFailure {
	switch p {
	case probeLiveness:
		return c.Liveness
	case probeReadiness:
		return c.Readiness
	}
	return c.Startup
}

// with returns c with f as its last failure of f.Probe, unless it already
// has a later one; changed says whether it differs.
func (c ContainerProbes) with(f ProbeFailure) (out ContainerProbes, changed bool) {
	out = c
	slot := &out.Startup
	switch f.Probe {
	case probeLiveness:
		slot = &out.Liveness
	case probeReadiness:
		slot = &out.Readiness
	}
	if f.At.Before(slot.At) || *slot == f {
		return c, false
	}
	*slot = f
	return out, true
}

// ProbeFailureOf reads one event: when it is the kubelet reporting that a
// probe of a pod's container failed (or errored), it returns the
// container and the failure. Every other event gives ok false.
func ProbeFailureOf(ev *corev1.Event) (container string, f ProbeFailure, ok bool) {
	if ev == nil || ev.InvolvedObject.Kind != "Pod" || ev.Type != corev1.EventTypeWarning || ev.Reason != eventReasonUnhealthy {
		return "", ProbeFailure{}, false
	}
	msg := strings.TrimSpace(ev.Message)
	probe := ""
	for _, p := range []string{probeLiveness, probeReadiness, probeStartup} {
		if strings.HasPrefix(msg, p+" probe failed") || strings.HasPrefix(msg, p+" probe errored") {
			probe = p
			break
		}
	}
	container = containerOfFieldPath(ev.InvolvedObject.FieldPath)
	if probe == "" || container == "" {
		return "", ProbeFailure{}, false
	}
	return container, ProbeFailure{Probe: probe, Message: truncate(msg, 512), Count: max(ev.Count, 1), At: eventTime(ev)}, true
}

// mergeProbe records f about container in m (allocated when nil); it
// returns m and whether it changed.
func mergeProbe(m map[string]ContainerProbes, container string, f ProbeFailure) (map[string]ContainerProbes, bool) {
	next, changed := m[container].with(f)
	if !changed {
		return m, false
	}
	if m == nil {
		m = map[string]ContainerProbes{}
	}
	m[container] = next
	return m, true
}

// probeCauses refines the issues classify found with the probe evidence:
// a CrashLoopBackOff whose last termination followed liveness (or
// startup) probe failures is the kubelet's kill, not the application's
// exit (reason liveness_probe or startup_probe); a NotReady container
// whose readiness probe fails says so (readiness_probe). An OOM kill
// stays an OOM kill, and an exit the application chose (a code other than
// SIGKILL's 137 or SIGTERM's 143) stays its exit.
func probeCauses(pod *corev1.Pod, ev Evidence, issues []PodIssue) []PodIssue {
	if len(ev.Probes) == 0 {
		return issues
	}
	for i := range issues {
		iss := &issues[i]
		probes, ok := ev.Probes[iss.Container]
		if !ok {
			continue
		}
		switch iss.Type {
		case events.IssueCrashLoopBackOff:
			probeKill(pod, iss, probes)
		case events.IssueNotReady:
			if f := probes.Readiness; !f.At.IsZero() && readinessCurrent(pod, f) {
				iss.Reason = reasonClassReadinessProbe
				iss.Message += "; " + probeSays(f)
			}
		}
	}
	return issues
}

// probeKill makes a CrashLoopBackOff the kubelet's kill when its last
// termination was a kill signal and followed probe failures.
func probeKill(pod *corev1.Pod, iss *PodIssue, probes ContainerProbes) {
	t := lastTermination(pod, iss.Container)
	if t == nil || t.Reason == reasonOOMKilled || t.ExitCode != 137 && t.ExitCode != 143 {
		return
	}
	for _, p := range []struct{ probe, class string }{{probeLiveness, reasonClassLivenessProbe}, {probeStartup, reasonClassStartupProbe}} {
		f := probes.get(p.probe)
		if f.At.IsZero() || !t.StartedAt.IsZero() && f.At.Before(t.StartedAt.Add(-probeSlack)) {
			continue
		}
		iss.Reason = p.class
		iss.Message = fmt.Sprintf("container %s was killed by the kubelet after failing its %s probe (exit code %d), %d restarts: %s",
			iss.Container, strings.ToLower(p.probe), t.ExitCode, iss.RestartCount, probeSays(f))
		return
	}
}

// readinessCurrent reports whether a readiness failure belongs to the
// pod's current not-ready spell (reported since its Ready condition went
// False, give or take probeSlack).
func readinessCurrent(pod *corev1.Pod, f ProbeFailure) bool {
	c := condition(pod, corev1.PodReady)
	return c == nil || c.LastTransitionTime.IsZero() || !f.At.Before(c.LastTransitionTime.Add(-probeSlack))
}

// lastTermination is the container's last terminated state: the current
// one between an exit and the restart, else the previous run's.
func lastTermination(pod *corev1.Pod, container string) *corev1.ContainerStateTerminated {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses} {
		for _, cs := range list {
			if cs.Name != container {
				continue
			}
			if cs.State.Terminated != nil {
				return cs.State.Terminated
			}
			return cs.LastTerminationState.Terminated
		}
	}
	return nil
}

// probeSays quotes the kubelet's message and how often it was reported.
func probeSays(f ProbeFailure) string {
	s := text.RedactText(f.Message)
	if f.Count > 1 {
		s += fmt.Sprintf(" (x%d)", f.Count)
	}
	return s
}
