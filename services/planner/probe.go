package planner

import (
	"fmt"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
)

// Probe failures: a container the kubelet kills for its liveness (or
// startup) probe (CrashLoopBackOff, reason liveness_probe or
// startup_probe) and a pod whose readiness probe fails (NotReady). The
// plan quotes the probe as the pod template declares it and the
// kubelet's Unhealthy and Killing events. It stays diagnostic: whether
// the probe or the application is wrong (a wrong path or port, a
// threshold too tight for a slow start, an application that hangs) is
// for a person to decide, and the kubelet already restarts the container.

// Reason classes of probe failures, as the watcher writes them.
const (
	reasonLivenessProbe  = "liveness_probe"
	reasonStartupProbe   = "startup_probe"
	reasonReadinessProbe = "readiness_probe"
)

// probeOf is the probe of kind ("liveness", "readiness", "startup") of
// the incident's container in the pod template, nil when it declares none.
func probeOf(in planInput, kind string) *corev1.Probe {
	_, c, _ := in.Owner.container(in.Incident.Container)
	if c == nil {
		return nil
	}
	switch kind {
	case "liveness":
		return c.LivenessProbe
	case "readiness":
		return c.ReadinessProbe
	}
	return c.StartupProbe
}

// probeKind is the probe an incident is about, "" for none.
func probeKind(inc events.Incident) string {
	switch {
	case inc.Type == events.IssueCrashLoopBackOff && inc.Reason == reasonLivenessProbe:
		return "liveness"
	case inc.Type == events.IssueCrashLoopBackOff && inc.Reason == reasonStartupProbe:
		return "startup"
	case inc.Type == events.IssueNotReady:
		return "readiness"
	}
	return ""
}

// describeProbe says what a probe checks and when it fails, with the
// kubelet's defaults for unset fields: "httpGet /healthz on port 8080,
// every 10s, timeout 1s, after 0s, fails after 3 failures (about 30s)".
func describeProbe(p *corev1.Probe) string {
	var what string
	switch h := p.ProbeHandler; {
	case h.HTTPGet != nil:
		scheme := ""
		if h.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			scheme = "HTTPS "
		}
		what = fmt.Sprintf("%shttpGet %s on port %s", scheme, orDefault(h.HTTPGet.Path, "/"), h.HTTPGet.Port.String())
	case h.TCPSocket != nil:
		what = "tcpSocket on port " + h.TCPSocket.Port.String()
	case h.GRPC != nil:
		what = fmt.Sprintf("grpc on port %d", h.GRPC.Port)
		if h.GRPC.Service != nil && *h.GRPC.Service != "" {
			what += " service " + *h.GRPC.Service
		}
	case h.Exec != nil:
		what = "exec " + strings.Join(h.Exec.Command, " ")
	default:
		what = "no handler"
	}
	period, timeout, failures := orDefault32(p.PeriodSeconds, 10), orDefault32(p.TimeoutSeconds, 1), orDefault32(p.FailureThreshold, 3)
	return fmt.Sprintf("%s, every %ds, timeout %ds, first after %ds, fails after %d failures in a row (about %s)", what, period, timeout,
		p.InitialDelaySeconds, failures, time.Duration(period*failures)*time.Second)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDefault32(v, def int32) int32 {
	if v <= 0 {
		return def
	}
	return v
}

// probeEvents are the kubelet's events about the incident's container's
// probes: Unhealthy (the failures) and Killing (a restart for a failed
// probe), newest first.
func probeEvents(in planInput) []corev1.Event {
	var out []corev1.Event
	for _, e := range sortEvents(in.Events) {
		if e.InvolvedObject.Kind != KindPod {
			continue
		}
		if c := fieldPathContainer(e.InvolvedObject.FieldPath); c != "" && in.Incident.Container != "" && c != in.Incident.Container {
			continue
		}
		switch {
		case e.Reason == "Unhealthy" && strings.Contains(e.Message, "probe"):
			out = append(out, e)
		case e.Reason == "Killing" && strings.Contains(e.Message, "probe"):
			out = append(out, e)
		}
	}
	return out
}

// fieldPathContainer reads "spec.containers{app}".
func fieldPathContainer(p string) string {
	open, end := strings.IndexByte(p, '{'), strings.LastIndexByte(p, '}')
	if open < 0 || end <= open+1 {
		return ""
	}
	return p[open+1 : end]
}

// probeEventLine quotes one event for people.
func probeEventLine(e corev1.Event) string {
	count := max(e.Count, 1)
	if e.Series != nil && e.Series.Count > count {
		count = e.Series.Count
	}
	return quote(fmt.Sprintf("%s %s pod/%s (x%d, last %s): %s", e.Type, e.Reason, e.InvolvedObject.Name, count, fmtTime(eventTime(e)), e.Message))
}

// probeEvidence quotes the incident's probe from the pod template and
// the kubelet's probe events.
func probeEvidence(in planInput) (events.Evidence, bool) {
	kind := probeKind(in.Incident)
	if kind == "" {
		return events.Evidence{}, false
	}
	c := in.Incident.Container
	src := fmt.Sprintf("%s pod template, container %s; events of the pod", in.Owner.ref(), c)
	data := map[string]string{"probe": kind}
	var lines []string
	if p := probeOf(in, kind); p != nil {
		d := describeProbe(p)
		lines = append(lines, fmt.Sprintf("%s probe: %s", kind, quote(d)))
		data["declared"] = "true"
	} else {
		lines = append(lines, fmt.Sprintf("%s probe: none declared in the pod template of %s", kind, in.Owner.ref()))
		data["declared"] = "false"
	}
	evs := probeEvents(in)
	for _, e := range evs {
		lines = append(lines, probeEventLine(e))
	}
	data["events"] = fmt.Sprint(len(evs))
	return events.Evidence{Kind: events.EvidenceProbe, Title: fmt.Sprintf("The %s probe of container %s and %s", kind, c, plural(len(evs), "kubelet probe event")),
		Source: src, Lines: lines, Data: data}, true
}

// addFound returns a function that adds a piece of evidence when there is
// one: addFound(add)(probeEvidence(in)) keeps collectEvidence flat.
func addFound(add func(events.Evidence)) func(events.Evidence, bool) {
	return func(e events.Evidence, ok bool) {
		if ok {
			add(e)
		}
	}
}

// probeSteps are the diagnostic steps of a probe failure: what the
// kubelet saw, then what to change. ok is false for other incidents.
func probeSteps(in planInput, b *builder, step stepFunc) ([]events.Step, bool) {
	kind := probeKind(in.Incident)
	if kind == "" {
		return nil, false
	}
	w := in.Owner
	c := b.containerName()
	ref, pod := b.podRef()
	describe := []string{"describe", "pod", pod}
	if pod == "" {
		describe = []string{"describe", w.ref()}
	}
	said := "the kubelet's Unhealthy events say how it fails"
	if evs := probeEvents(in); len(evs) > 0 {
		said = "the kubelet says " + quote(evs[0].Message)
	}
	p := probeOf(in, kind)
	declared := "declares no " + kind + " probe (the failures come from a probe the pod had)"
	if p != nil {
		declared = "probes " + quote(describeProbe(p))
	}
	var out []events.Step
	switch kind {
	case "readiness":
		out = append(out,
			step(fmt.Sprintf("Container %s runs but its readiness probe fails, so it gets no traffic: it %s; %s", c, declared, said), describe...),
			step(fmt.Sprintf("Read what the application says while it is not ready (its logs), and check the probe's path and port against what %s serves", c), "logs", pod, "-c", c),
			step(fmt.Sprintf("Fix what the application needs to become ready (a dependency, its configuration), or correct the readiness probe of container %s in %s (path, port, timeoutSeconds, failureThreshold)", c, w.ref()), "edit", w.ref()))
	default:
		out = append(out,
			step(fmt.Sprintf("The kubelet kills container %s because its %s probe fails (this is not the application exiting on its own, nor an OOM kill): it %s; %s", c, kind, declared, said), describe...),
			step("Read the log of the run the kubelet killed: whether the application hung, was still starting, or served the probe's path with an error", "logs", pod, "-c", c, "--previous"),
			step(fmt.Sprintf("Fix the application's health endpoint, or correct the %s probe of container %s in %s: its path and port, a longer timeoutSeconds or failureThreshold, or a startupProbe for a slow start", kind, c, w.ref()), "edit", w.ref()))
	}
	for i := range out {
		if out[i].Target.Kind == "" {
			out[i].Target = ref
		}
	}
	return out, true
}

// probeKilledRestart says why a rollout restart does not apply to a
// container killed for its probe, "" for other incidents: the kubelet
// restarts it at every kill already, and new pods get the same probe.
func probeKilledRestart(inc events.Incident) string {
	if k := probeKind(inc); k == "liveness" || k == "startup" {
		return fmt.Sprintf("the kubelet already restarts container %s at every %s probe failure; new pods would run the same probe", inc.Container, k)
	}
	return ""
}
