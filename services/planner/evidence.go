package planner

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
	corev1 "k8s.io/api/core/v1"
)

// maxLineLen bounds one quoted line of evidence.
const maxLineLen = 512

// logsResult is the previous-run log tail of the failing container, or
// why it is unavailable.
type logsResult struct {
	Pod       string
	Container string
	Lines     []string
	// Err is set when the logs could not be read (kwok nodes serve none).
	Err string
	// Current is true for the logs of the container's current run (a
	// failed Job's pod), false for its previous run.
	Current bool
}

// redactedLine replaces a line that looks like a credential.
const redactedLine = text.Withheld

// quote makes one untrusted line safe to keep in a plan: credentials
// withheld, escape sequences and control characters dropped (tabs and line
// breaks become spaces), length bounded. Each surface still renders it
// with its own function of pkg/events/text.
func quote(line string) string {
	line = strings.NewReplacer("\n", " ", "\t", " ").Replace(text.ForTerminal(line))
	if text.Redact(line) == text.Withheld {
		return redactedLine
	}
	if len(line) > maxLineLen {
		cut := maxLineLen
		for cut > 0 && !isRuneStart(line[cut]) {
			cut--
		}
		line = line[:cut] + "…"
	}
	return line
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// splitLogs turns raw log bytes into quoted lines: at most limit bytes
// (the tail; a cut first line is dropped) and at most max lines. The lines
// of a private key block are withheld whole; a tail that starts inside
// one (its END line and no BEGIN before) is withheld up to the END.
func splitLogs(raw []byte, max int, limit int64) []string {
	if limit > 0 && int64(len(raw)) > limit {
		raw = raw[int64(len(raw))-limit:]
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			raw = raw[i+1:]
		} else {
			raw = nil
		}
	}
	logText := strings.TrimRight(string(raw), "\n")
	if logText == "" {
		return nil
	}
	lines := strings.Split(logText, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, "\r")
	}
	out := make([]string, 0, len(lines))
	for _, l := range text.RedactLines(lines) {
		out = append(out, quote(l))
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}

// collectEvidence quotes what the planner read, bounded and cited.
func collectEvidence(in planInput) []events.Evidence {
	var out []events.Evidence
	add := func(e events.Evidence) {
		if len(e.Lines) > events.MaxEvidenceLines {
			e.Lines = e.Lines[:events.MaxEvidenceLines]
		}
		out = append(out, e)
	}
	addFound(add)(warningEvidence(in)) // warning.go: the warning's numbers first
	addFound(add)(policyObjectEvidence(in))
	if e, ok := ownerChainEvidence(in); ok {
		add(e)
	}
	if e, ok := exitCodeEvidence(in); ok {
		add(e)
	}
	if in.Logs != nil {
		add(logsEvidence(in))
	}
	if e, ok := eventsEvidence(in); ok {
		add(e)
	}
	if e, ok := resourcesEvidence(in); ok {
		add(e)
	}
	if e, ok := historyEvidence(in); ok {
		add(e)
	}
	addFound(add)(probeEvidence(in))
	switch in.Incident.Type {
	case events.IssueImagePullBackOff:
		if e, ok := imagePullEvidence(in); ok {
			add(e)
		}
	case events.IssuePending:
		add(schedulingEvidence(in))
		if in.Storage != nil {
			add(storageEvidence(in))
		}
	case events.IssuePVCPending, events.IssueFailedMount:
		if in.Storage != nil {
			add(storageEvidence(in))
		}
	case events.IssueEvicted:
		if e, ok := evictionEvidence(in); ok {
			add(e)
		}
	case events.IssueFailedCreate, events.IssueRolloutStuck, events.IssueJobFailed, events.IssueCronJobNotScheduling:
		if e, ok := conditionsEvidence(in); ok {
			add(e)
		}
		if in.Policy != nil {
			add(policyEvidence(in))
		}
	case events.IssueServiceUnavailable:
		if in.Traffic != nil {
			add(trafficEvidence(in))
		}
	case events.IssueIngressUnavailable:
		if in.Ingress != nil && in.Ingress.Ingress != nil {
			add(ingressEvidence(in))
		}
	case events.IssueNodeNotReady, events.IssueNodePressure, events.IssueNodeCordoned, events.IssueNodeNearlyFull:
		if in.Node != nil {
			add(nodeEvidence(in))
		}
	case events.IssueHPAMetricsUnavailable, events.IssueHPAAtMaxReplicas:
		if in.HPA != nil {
			add(hpaEvidence(in))
		}
	}
	return out
}

func ownerChainEvidence(in planInput) (events.Evidence, bool) {
	parts := []string{}
	if in.Pod != nil {
		parts = append(parts, "pod/"+in.Pod.Name)
	} else if len(in.Incident.Pods) > 0 {
		parts = append(parts, "pod/"+in.Incident.Pods[0])
	}
	for _, o := range in.Incident.OwnerChain {
		parts = append(parts, strings.ToLower(o.Kind)+"/"+o.Name)
	}
	if len(in.Incident.OwnerChain) == 0 && in.Owner.Ref.Kind != KindPod {
		parts = append(parts, in.Owner.ref())
	}
	if len(parts) < 2 {
		return events.Evidence{}, false
	}
	return events.Evidence{Kind: events.EvidenceOwnerChain, Title: "Owner chain: " + strings.Join(parts, " -> "),
		Source: "ownerReferences with controller=true", Lines: []string{strings.Join(parts, " -> ")},
		Data: map[string]string{"target": in.Owner.Ref.String(), "uid": in.Owner.Ref.UID}}, true
}

func exitCodeEvidence(in planInput) (events.Evidence, bool) {
	cs := containerStatus(in.Pod, in.Incident.Container)
	if cs == nil {
		if in.Incident.ExitCode == nil {
			return events.Evidence{}, false
		}
		code := *in.Incident.ExitCode
		return events.Evidence{Kind: events.EvidenceExitCode, Title: fmt.Sprintf("Last exit code %d", code),
			Source: "incident " + in.Incident.ID, Lines: []string{"exitCode: " + strconv.Itoa(int(code)), "meaning: " + exitCodeMeaning(code, "")},
			Data: map[string]string{"exit_code": strconv.Itoa(int(code))}}, true
	}
	e := events.Evidence{Kind: events.EvidenceExitCode, Source: fmt.Sprintf("pod/%s container %s status", in.Pod.Name, cs.Name),
		Data: map[string]string{"restart_count": strconv.Itoa(int(cs.RestartCount))}}
	if w := cs.State.Waiting; w != nil {
		e.Lines = append(e.Lines, "state: waiting, reason: "+w.Reason)
		if w.Message != "" {
			e.Lines = append(e.Lines, "message: "+quote(w.Message))
		}
		e.Data["waiting_reason"] = w.Reason
	}
	e.Lines = append(e.Lines, fmt.Sprintf("restartCount: %d", cs.RestartCount))
	t := cs.LastTerminationState.Terminated
	if t == nil {
		t = cs.State.Terminated
	}
	if t == nil {
		if cs.State.Waiting == nil {
			return events.Evidence{}, false
		}
		e.Title = fmt.Sprintf("Container %s is waiting: %s", cs.Name, cs.State.Waiting.Reason)
		return e, true
	}
	e.Title = fmt.Sprintf("Last termination of container %s: exit code %d", cs.Name, t.ExitCode)
	if t.Reason != "" {
		e.Title += " (" + t.Reason + ")"
	}
	e.Lines = append(e.Lines, fmt.Sprintf("lastState.terminated: exitCode %d, reason %s, started %s, finished %s",
		t.ExitCode, t.Reason, fmtTime(t.StartedAt.Time), fmtTime(t.FinishedAt.Time)),
		"meaning: "+exitCodeMeaning(t.ExitCode, t.Reason))
	e.Lines = append(e.Lines, terminationLines(t.Message)...)
	e.Data["exit_code"] = strconv.Itoa(int(t.ExitCode))
	if t.Reason != "" {
		e.Data["reason"] = t.Reason
	}
	return e, true
}

// maxTerminationLines bounds the termination message quoted in a plan.
const maxTerminationLines = 10

// terminationLines quotes a container's termination message, which the
// application writes (terminationMessagePath or its last log lines):
// credentials withheld like its logs'.
func terminationLines(msg string) []string {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return nil
	}
	lines := text.RedactLines(strings.Split(strings.ReplaceAll(msg, "\r\n", "\n"), "\n"))
	if len(lines) > maxTerminationLines {
		lines = lines[len(lines)-maxTerminationLines:]
	}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		out = append(out, "terminationMessage: "+quote(l))
	}
	return out
}

func logsEvidence(in planInput) events.Evidence {
	l := in.Logs
	run, title := "previous", "Previous"
	if l.Current {
		run, title = "last", "Last"
	}
	src := fmt.Sprintf("pod/%s container %s %s logs (last %d lines, at most %d bytes)", l.Pod, l.Container, run, in.Cfg.LogTailLines, in.Cfg.LogLimitBytes)
	if l.Err != "" {
		return events.Evidence{Kind: events.EvidenceLogs, Title: title + " logs unavailable", Source: src,
			Lines: []string{quote("logs unavailable: " + l.Err)}}
	}
	if len(l.Lines) == 0 {
		return events.Evidence{Kind: events.EvidenceLogs, Title: title + " logs are empty", Source: src,
			Lines: []string{fmt.Sprintf("(the %s container wrote nothing)", run)}}
	}
	return events.Evidence{Kind: events.EvidenceLogs, Title: fmt.Sprintf("%s logs of container %s (%d lines)", title, l.Container, len(l.Lines)),
		Source: src, Lines: l.Lines}
}

// eventTime is when an event last happened.
func eventTime(e corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// sortEvents puts Warning events first, then the most recent first.
func sortEvents(evs []corev1.Event) []corev1.Event {
	out := slices.Clone(evs)
	slices.SortStableFunc(out, func(a, b corev1.Event) int {
		aw, bw := a.Type == corev1.EventTypeWarning, b.Type == corev1.EventTypeWarning
		if aw != bw {
			if aw {
				return -1
			}
			return 1
		}
		return eventTime(b).Compare(eventTime(a))
	})
	return out
}

func eventsEvidence(in planInput) (events.Evidence, bool) {
	if len(in.Events) == 0 {
		return events.Evidence{}, false
	}
	evs := sortEvents(in.Events)
	if len(evs) > in.Cfg.MaxEvents {
		evs = evs[:in.Cfg.MaxEvents]
	}
	warnings := 0
	lines := make([]string, 0, len(evs))
	for _, e := range evs {
		if e.Type == corev1.EventTypeWarning {
			warnings++
		}
		count := e.Count
		if e.Series != nil && e.Series.Count > count {
			count = e.Series.Count
		}
		lines = append(lines, quote(fmt.Sprintf("%s %s %s/%s (x%d, last %s): %s", e.Type, e.Reason,
			strings.ToLower(e.InvolvedObject.Kind), e.InvolvedObject.Name, max(count, 1), fmtTime(eventTime(e)), e.Message)))
	}
	return events.Evidence{Kind: events.EvidenceEvents,
		Title:  fmt.Sprintf("%s of the pod and its owners (%s, warnings first)", plural(len(lines), "recent event"), plural(warnings, "warning")),
		Source: "events of " + strings.Join(eventSubjects(in), ", "), Lines: lines}, true
}

// eventSubjects lists the objects whose events were read.
func eventSubjects(in planInput) []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range in.Events {
		s := strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func resourcesEvidence(in planInput) (events.Evidence, bool) {
	_, c, _ := in.Owner.container(in.Incident.Container)
	if c == nil {
		return events.Evidence{}, false
	}
	data := map[string]string{}
	var lines []string
	for _, kind := range []struct {
		name string
		list corev1.ResourceList
	}{{"requests", c.Resources.Requests}, {"limits", c.Resources.Limits}} {
		var parts []string
		for _, res := range slices.Sorted(maps.Keys(kind.list)) {
			q := kind.list[res]
			parts = append(parts, fmt.Sprintf("%s=%s", res, q.String()))
			data[kind.name+"."+string(res)] = q.String()
		}
		if len(parts) == 0 {
			parts = []string{"(none)"}
		}
		lines = append(lines, kind.name+": "+strings.Join(parts, ", "))
	}
	return events.Evidence{Kind: events.EvidenceResources, Title: fmt.Sprintf("Requests and limits of container %s", c.Name),
		Source: fmt.Sprintf("%s pod template, container %s", in.Owner.ref(), c.Name), Lines: lines, Data: data}, true
}

func historyEvidence(in planInput) (events.Evidence, bool) {
	dep := in.Owner.Deployment
	if dep == nil {
		return events.Evidence{}, false
	}
	revs, current := rolloutHistory(dep, in.ReplicaSets)
	if len(revs) == 0 {
		return events.Evidence{}, false
	}
	c := in.Incident.Container
	if c == "" {
		if _, cc, _ := in.Owner.container(""); cc != nil {
			c = cc.Name
		}
	}
	lines := make([]string, 0, len(revs))
	for _, r := range revs {
		mark := ""
		if r.Number == current {
			mark = " (current)"
		}
		desired := int32(0)
		if r.RS.Spec.Replicas != nil {
			desired = *r.RS.Spec.Replicas
		}
		lines = append(lines, quote(fmt.Sprintf("revision %d%s: replicaset/%s image %s, created %s, ready %d/%d",
			r.Number, mark, r.RS.Name, imageOf(r.RS.Spec.Template, c), fmtTime(r.RS.CreationTimestamp.Time), r.RS.Status.ReadyReplicas, desired)))
	}
	return events.Evidence{Kind: events.EvidenceRolloutHistory, Title: fmt.Sprintf("Rollout history of %s (%s, newest first)", in.Owner.ref(), plural(len(revs), "revision")),
		Source: "ReplicaSets controlled by " + in.Owner.ref() + " (annotation " + annotationRevision + ")", Lines: lines,
		Data: map[string]string{"current_revision": strconv.FormatInt(current, 10)}}, true
}

func imagePullEvidence(in planInput) (events.Evidence, bool) {
	msgs := messages(in)
	if len(msgs) == 0 {
		return events.Evidence{}, false
	}
	cause := classifyPull(msgs...)
	lines := []string{"cause: " + string(cause)}
	for _, m := range msgs {
		if len(lines) > 10 {
			break
		}
		lines = append(lines, quote(m))
	}
	return events.Evidence{Kind: events.EvidenceImagePull, Title: "Image pull failure: " + strings.ReplaceAll(string(cause), "_", " "),
		Source: "container waiting message and Failed events", Lines: lines, Data: map[string]string{"cause": string(cause)}}, true
}

func schedulingEvidence(in planInput) events.Evidence {
	b := &builder{in: in}
	lines := []string{"scheduler: " + quote(b.schedulingMessage())}
	nodes := slices.Clone(in.Nodes)
	slices.SortFunc(nodes, func(a, b corev1.Node) int { return cmp.Compare(a.Name, b.Name) })
	for i, n := range nodes {
		if i == 20 {
			lines = append(lines, fmt.Sprintf("(%d more nodes)", len(nodes)-i))
			break
		}
		ready := "NotReady"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = "Ready"
			}
		}
		if n.Spec.Unschedulable {
			ready += ",SchedulingDisabled"
		}
		cpu, mem := n.Status.Allocatable[corev1.ResourceCPU], n.Status.Allocatable[corev1.ResourceMemory]
		taints := make([]string, 0, len(n.Spec.Taints))
		for _, t := range n.Spec.Taints {
			taints = append(taints, t.ToString())
		}
		lines = append(lines, quote(fmt.Sprintf("node/%s %s allocatable cpu=%s memory=%s taints=[%s]", n.Name, ready, cpu.String(), mem.String(), strings.Join(taints, " "))))
	}
	data := map[string]string{"nodes": strconv.Itoa(len(in.Nodes))}
	if in.Owner.Spec != nil {
		data["pod_requests.cpu"] = quantityOf(podRequest(in.Owner.Spec, corev1.ResourceCPU), corev1.ResourceCPU)
		data["pod_requests.memory"] = quantityOf(podRequest(in.Owner.Spec, corev1.ResourceMemory), corev1.ResourceMemory)
	}
	return events.Evidence{Kind: events.EvidenceScheduling, Title: "Why the pod is not scheduled", Source: "PodScheduled condition, FailedScheduling events and the node list",
		Lines: lines, Data: data}
}

func evictionEvidence(in planInput) (events.Evidence, bool) {
	if len(in.EvictedPods) == 0 {
		return events.Evidence{}, false
	}
	var lines []string
	for i, p := range in.EvictedPods {
		if i == 20 {
			lines = append(lines, fmt.Sprintf("(%d more evicted pods)", len(in.EvictedPods)-i))
			break
		}
		lines = append(lines, quote(fmt.Sprintf("pod/%s on node %s: %s", p.Name, p.Spec.NodeName, p.Status.Message)))
	}
	return events.Evidence{Kind: events.EvidenceEviction, Title: fmt.Sprintf("%s of %s", plural(len(in.EvictedPods), "evicted pod"), in.Owner.ref()),
		Source: "pods with status.phase=Failed and status.reason=Evicted", Lines: lines,
		Data: map[string]string{"evicted_pods": strconv.Itoa(len(in.EvictedPods))}}, true
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
