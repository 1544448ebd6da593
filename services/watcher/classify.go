package watcher

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/scheduling"
	"github.com/kaar-dev/kaar/pkg/events/text"
	corev1 "k8s.io/api/core/v1"
)

// PodIssue is one problem of one pod, as Classify sees it. Pods of one
// owner with the same Container and Type are one incident.
type PodIssue struct {
	Type events.IssueType
	// Container is the failing container (init containers included);
	// empty for pod-level issues (Pending, Evicted, StuckTerminating).
	Container string
	// Reason is the cause class within Type, lower snake_case
	// ("exit_code_1", "image_not_found", "insufficient_cpu").
	Reason string
	// Message is the human-readable detail (kubelet or scheduler message,
	// last termination), for people: it is never compared.
	Message string
	// ExitCode of the container's last termination, when there was one.
	ExitCode     *int32
	RestartCount int32
}

// ClassifyOptions tune Classify. DefaultClassifyOptions documents the
// defaults; the zero value of each field is meaningful (see each field).
type ClassifyOptions struct {
	// RestartThreshold: a restart-based issue (CrashLoopBackOff, OOMKilled
	// of a restarted container, a failing init container) is reported only
	// when the container's restartCount is greater than this. The default
	// 1 means "more than one restart": a container that crashed once and
	// came back is not an incident, the second crash is.
	RestartThreshold int32
	// PendingGrace is how long a pod may be unschedulable before it is
	// reported (measured from the PodScheduled condition's transition), so
	// that a pod a cluster autoscaler is about to place is not an incident.
	// Default 30s; 0 reports at once.
	PendingGrace time.Duration
	// RecoveredAfter is how long a restarted container must have been
	// running again to count as recovered; until then it is still
	// reported (CrashLoopBackOff, or OOMKilled when it was OOM-killed).
	// Default 10m, the kubelet's back-off reset period. 0: a running
	// container is always recovered.
	RecoveredAfter time.Duration
	// NotReadyAfter reports a running pod whose Ready condition has been
	// False that long (readiness failing). Default 10m; 0 disables.
	NotReadyAfter time.Duration
	// StuckTerminatingAfter reports a pod still present that long after
	// its deletion deadline (deletionTimestamp, which already includes the
	// grace period). Default 5m; 0 disables.
	StuckTerminatingAfter time.Duration
}

// DefaultClassifyOptions returns the defaults documented on
// ClassifyOptions.
func DefaultClassifyOptions() ClassifyOptions {
	return ClassifyOptions{
		RestartThreshold:      1,
		PendingGrace:          30 * time.Second,
		RecoveredAfter:        10 * time.Minute,
		NotReadyAfter:         10 * time.Minute,
		StuckTerminatingAfter: 5 * time.Minute,
	}
}

// Classify says what is wrong with pod at time now: zero or more issues,
// sorted by container then type. It is a pure function of its arguments.
// events are the pod's events (any, in any order; nil is fine): the
// kubelet's Warning Failed events give the cause of an image pull failure
// that the pod's status no longer says ("Back-off pulling image").
//
// It never reports a pod that is starting (ContainerCreating,
// PodInitializing), has succeeded, is being deleted (unless stuck past
// StuckTerminatingAfter), or whose container restarted RestartThreshold
// times or fewer.
func Classify(pod *corev1.Pod, events []corev1.Event, now time.Time, opts ClassifyOptions) []PodIssue {
	var ev Evidence
	if pod != nil {
		ev = EvidenceFrom(pod.UID, events)
	}
	issues, _ := classify(pod, ev, now, opts)
	return issues
}

// classify is Classify with the evidence already gathered, that also
// returns when the answer may change by the passage of time alone (a grace
// period or a recovery window ending), or the zero time.
func classify(pod *corev1.Pod, ev Evidence, now time.Time, o ClassifyOptions) (out []PodIssue, recheck time.Time) {
	if pod == nil {
		return nil, time.Time{}
	}
	if pod.DeletionTimestamp != nil {
		return terminatingIssues(pod, now, o.StuckTerminatingAfter)
	}
	if issues, done := finishedIssues(pod); done {
		return issues, time.Time{}
	}
	if issues, due, ok := unschedulableIssues(pod, now, o.PendingGrace); ok {
		return issues, due
	}

	later := func(t time.Time) {
		if t.After(now) && (recheck.IsZero() || t.Before(recheck)) {
			recheck = t
		}
	}
	out = containerIssues(pod, ev, now, o, later)
	if len(out) == 0 {
		if iss, ok := mountIssue(pod, ev.Mount, now, o.PendingGrace, later); ok {
			out = append(out, iss)
		}
	}
	if len(out) == 0 && o.NotReadyAfter > 0 && pod.Status.Phase == corev1.PodRunning {
		if iss, ok := notReady(pod, now, o.NotReadyAfter, later); ok {
			out = append(out, iss)
		}
	}
	out = probeCauses(pod, ev, out)
	sortIssues(out)
	return out, recheck
}

// terminatingIssues classifies a pod being deleted (rollout, scale-down,
// clean-up): on its way out, unless it stays well past its deadline
// (stuckAfter; zero never reports it). Before that it returns when to look
// again.
func terminatingIssues(pod *corev1.Pod, now time.Time, stuckAfter time.Duration) ([]PodIssue, time.Time) {
	if stuckAfter <= 0 {
		return nil, time.Time{}
	}
	stuckAt := pod.DeletionTimestamp.Add(stuckAfter)
	if now.Before(stuckAt) {
		return nil, stuckAt
	}
	reason, msg := "grace_period_exceeded", fmt.Sprintf("pod is still terminating %s after its deletion deadline %s",
		now.Sub(pod.DeletionTimestamp.Time).Round(time.Second), pod.DeletionTimestamp.UTC().Format(time.RFC3339))
	if len(pod.Finalizers) > 0 {
		reason = "finalizers"
		msg += "; finalizers: " + strings.Join(pod.Finalizers, ", ")
	}
	return []PodIssue{{Type: events.IssueStuckTerminating, Reason: reason, Message: msg}}, time.Time{}
}

// finishedIssues classifies a pod whose phase is final (done is true):
// a succeeded pod is fine, an evicted one is reported, and another failed
// pod (Job, restartPolicy Never) only when a container was OOM-killed:
// other failures are the Job's business.
func finishedIssues(pod *corev1.Pod) (out []PodIssue, done bool) {
	switch pod.Status.Phase {
	case corev1.PodSucceeded:
		return nil, true
	case corev1.PodFailed:
		if pod.Status.Reason == "Evicted" {
			return []PodIssue{{Type: events.IssueEvicted, Reason: evictedReason(pod.Status.Message), Message: pod.Status.Message}}, true
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil && t.Reason == reasonOOMKilled {
				out = append(out, oomIssue(cs.Name, t, cs.RestartCount))
			}
		}
		sortIssues(out)
		return out, true
	}
	return nil, false
}

// unschedulableIssues classifies a pod the scheduler cannot place (ok is
// true): reported once it has been so for grace, before that it returns
// when to look again.
func unschedulableIssues(pod *corev1.Pod, now time.Time, grace time.Duration) (issues []PodIssue, recheck time.Time, ok bool) {
	c := condition(pod, corev1.PodScheduled)
	if c == nil || c.Status != corev1.ConditionFalse || c.Reason != corev1.PodReasonUnschedulable {
		return nil, time.Time{}, false
	}
	since := c.LastTransitionTime.Time
	if since.IsZero() {
		since = pod.CreationTimestamp.Time
	}
	if due := since.Add(grace); now.Before(due) {
		return nil, due, true
	}
	return []PodIssue{pendingIssue(c.Message)}, time.Time{}, true
}

// containerIssues classifies the init containers, then the containers, of
// a pod, each under its effective restart policy (a sidecar, an init
// container with restartPolicy Always, restarts like a container).
func containerIssues(pod *corev1.Pod, ev Evidence, now time.Time, o ClassifyOptions, later func(time.Time)) (out []PodIssue) {
	sidecars := map[string]bool{}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars[c.Name] = true
		}
	}
	policy := pod.Spec.RestartPolicy
	if policy == "" {
		policy = corev1.RestartPolicyAlways
	}
	for _, cs := range pod.Status.InitContainerStatuses {
		p := policy
		if sidecars[cs.Name] {
			p = corev1.RestartPolicyAlways
		}
		if iss, ok := containerIssue(cs, ev, now, o, p, later); ok {
			if iss.Type == events.IssueCrashLoopBackOff && !sidecars[cs.Name] {
				iss.Type = events.IssueInitContainerFailing
			}
			out = append(out, iss)
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if iss, ok := containerIssue(cs, ev, now, o, policy, later); ok {
			out = append(out, iss)
		}
	}
	return out
}

// Kubernetes reasons the classifier reads.
const (
	reasonOOMKilled              = "OOMKilled"
	reasonCrashLoopBackOff       = "CrashLoopBackOff"
	reasonCreateContainerConfig  = "CreateContainerConfigError"
	reasonImagePullBackOff       = "ImagePullBackOff"
	reasonErrImagePull           = "ErrImagePull"
	reasonInvalidImageName       = "InvalidImageName"
	reasonErrImageNeverPull      = "ErrImageNeverPull"
	backOffPullMessagePrefix     = "back-off pulling image"
	reasonClassPullBackOff       = "pull_back_off"
	reasonClassUnknownExit       = "unknown_exit"
	reasonClassOOMKilled         = "oom_killed"
	reasonClassNotReady          = "not_ready"
	reasonClassUnschedulable     = "unschedulable"
	reasonClassEvicted           = "evicted"
	reasonClassConfigError       = "config_error"
	reasonClassPullFailed        = "pull_failed"
	reasonClassInvalidImageName  = "invalid_image_name"
	reasonClassNeverPull         = "never_pull"
	reasonClassImageNotFound     = "image_not_found"
	reasonClassUnauthorized      = "unauthorized"
	reasonClassRegistryUnreached = "registry_unavailable"
	reasonClassRateLimited       = "rate_limited"
)

// genericReason reports a reason class that says nothing about the cause
// (ImagePullBackOff's "Back-off pulling image" between two ErrImagePull,
// a back-off without a recorded termination). An incident keeps a
// specific reason it already has rather than flapping to a generic one.
func genericReason(r string) bool {
	return r == reasonClassPullBackOff || r == reasonClassUnknownExit
}

// containerIssue classifies one container status; policy is the
// container's effective restart policy.
func containerIssue(cs corev1.ContainerStatus, ev Evidence, now time.Time, o ClassifyOptions, policy corev1.RestartPolicy, later func(time.Time)) (PodIssue, bool) {
	restarted := cs.RestartCount > o.RestartThreshold
	switch {
	case cs.State.Waiting != nil:
		w := cs.State.Waiting
		switch w.Reason {
		case reasonImagePullBackOff, reasonErrImagePull, reasonInvalidImageName, reasonErrImageNeverPull:
			iss := PodIssue{Type: events.IssueImagePullBackOff, Container: cs.Name, Reason: pullReason(w.Reason, w.Message),
				Message: w.Message, RestartCount: cs.RestartCount}
			if c, ok := ev.PullCauses[cs.Name]; ok && (iss.Reason == reasonClassPullBackOff || iss.Reason == reasonClassPullFailed) &&
				(c.Image == "" || cs.Image == "" || c.Image == cs.Image) {
				// The back-off message lost the cause; the kubelet's
				// Failed event about this image still has it.
				iss.Reason = c.Reason
				iss.Message = strings.TrimSuffix(w.Message, ".") + "; last pull failure: " + truncate(c.Message, 512)
			}
			return iss, true
		case reasonCreateContainerConfig:
			return PodIssue{Type: events.IssueCreateContainerConfigError, Container: cs.Name, Reason: configReason(w.Message),
				Message: w.Message, RestartCount: cs.RestartCount}, true
		case reasonCrashLoopBackOff:
			if !restarted {
				return PodIssue{}, false
			}
			return crashIssue(cs.Name, cs.LastTerminationState.Terminated, cs.RestartCount, w.Message), true
		}
		return PodIssue{}, false // ContainerCreating, PodInitializing, ...
	case cs.State.Running != nil:
		last := cs.LastTerminationState.Terminated
		if last == nil || !restarted || o.RecoveredAfter <= 0 {
			return PodIssue{}, false
		}
		recovered := cs.State.Running.StartedAt.Add(o.RecoveredAfter)
		if !now.Before(recovered) {
			return PodIssue{}, false
		}
		later(recovered)
		return crashIssue(cs.Name, last, cs.RestartCount, ""), true
	case cs.State.Terminated != nil:
		t := cs.State.Terminated
		if t.Reason == reasonOOMKilled && (policy == corev1.RestartPolicyNever || restarted) {
			return oomIssue(cs.Name, t, cs.RestartCount), true
		}
		// Between an exit and the next back-off. Exit code 0 is a crash
		// only for a container that must keep running.
		if restarted && (policy == corev1.RestartPolicyAlways || policy == corev1.RestartPolicyOnFailure && t.ExitCode != 0) {
			return crashIssue(cs.Name, t, cs.RestartCount, ""), true
		}
	}
	return PodIssue{}, false
}

// crashIssue describes a container that keeps exiting: OOMKilled when the
// kernel killed it for memory, CrashLoopBackOff otherwise.
func crashIssue(container string, t *corev1.ContainerStateTerminated, restarts int32, waitMsg string) PodIssue {
	if t != nil && t.Reason == reasonOOMKilled {
		return oomIssue(container, t, restarts)
	}
	iss := PodIssue{Type: events.IssueCrashLoopBackOff, Container: container, RestartCount: restarts, Reason: reasonClassUnknownExit}
	if t == nil {
		iss.Message = fmt.Sprintf("container %s keeps restarting (%d restarts)", container, restarts)
		if waitMsg != "" {
			iss.Message += ": " + waitMsg
		}
		return iss
	}
	code := t.ExitCode
	iss.ExitCode = &code
	iss.Reason = exitReason(code)
	iss.Message = fmt.Sprintf("container %s exited with code %d", container, code)
	if t.Reason != "" {
		iss.Message += " (" + t.Reason + ")"
	}
	iss.Message += fmt.Sprintf(", %d restarts", restarts)
	// The termination message is the application's own text
	// (terminationMessagePath, or its last log lines): credentials in it
	// are withheld like the planner withholds them from logs, before the
	// message reaches the bus, Slack, webhooks and get_incident.
	if m := strings.TrimSpace(t.Message); m != "" {
		iss.Message += ": " + truncate(text.RedactText(m), 512)
	}
	return iss
}

func oomIssue(container string, t *corev1.ContainerStateTerminated, restarts int32) PodIssue {
	code := t.ExitCode
	if code == 0 {
		code = 137
	}
	return PodIssue{Type: events.IssueOOMKilled, Container: container, Reason: reasonClassOOMKilled, ExitCode: &code, RestartCount: restarts,
		Message: fmt.Sprintf("container %s was OOM-killed (exit code %d) for exceeding its memory limit, %d restarts", container, code, restarts)}
}

// exitReason classes an exit code: 0 completed (a container that should
// keep running exits), 1 an application error, 126/127 a bad command,
// 128+n death by signal n.
func exitReason(code int32) string {
	switch code {
	case 0:
		return "completed"
	case 126:
		return "command_not_executable"
	case 127:
		return "command_not_found"
	case 130:
		return "sigint"
	case 134:
		return "sigabrt"
	case 137:
		return "sigkill"
	case 139:
		return "segfault"
	case 143:
		return "sigterm"
	}
	if code > 128 && code < 160 {
		return "signal_" + strconv.Itoa(int(code-128))
	}
	if code < 0 {
		return "exit_code_negative"
	}
	return "exit_code_" + strconv.Itoa(int(code))
}

// pullReason classes an image pull failure from the waiting reason and
// the kubelet's message. Quoted image references are left out of the
// match, so that an image called "notfound-proxy" is not a cause.
func pullReason(reason, msg string) string {
	m := strings.ToLower(stripQuoted(msg))
	switch {
	case reason == reasonInvalidImageName:
		return reasonClassInvalidImageName
	case reason == reasonErrImageNeverPull:
		return reasonClassNeverPull
	case strings.HasPrefix(m, backOffPullMessagePrefix):
		return reasonClassPullBackOff
	case containsAny(m, "toomanyrequests", "too many requests", "rate limit"):
		return reasonClassRateLimited
	case containsAny(m, "unauthorized", "forbidden", "denied", "failed to authorize",
		"authentication required", "may require authorization", "permission denied", "no basic auth credentials", "insufficient_scope"):
		return reasonClassUnauthorized
	case containsAny(m, "not found", "manifest unknown", "does not exist", "notfound", "name unknown"):
		return reasonClassImageNotFound
	case containsAny(m, "no such host", "connection refused", "i/o timeout", "timeout", "tls:", "x509:", "network is unreachable",
		"connection reset", "server misbehaving", "503 service unavailable", "502 bad gateway"):
		return reasonClassRegistryUnreached
	case m == "":
		return reasonClassPullBackOff
	}
	return reasonClassPullFailed
}

// stripQuoted removes the double-quoted parts of s (image references in
// kubelet messages).
func stripQuoted(s string) string {
	if !strings.Contains(s, `"`) {
		return s
	}
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '"':
			in = !in
			b.WriteRune(r)
		case !in:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func configReason(msg string) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "couldn't find key"):
		return "missing_key"
	case strings.Contains(m, "configmap") && strings.Contains(m, "not found"):
		return "missing_configmap"
	case strings.Contains(m, "secret") && strings.Contains(m, "not found"):
		return "missing_secret"
	}
	return reasonClassConfigError
}

func evictedReason(msg string) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "ephemeral"):
		return "evicted_ephemeral_storage"
	case strings.Contains(m, "resource: memory"):
		return "evicted_memory"
	case containsAny(m, "resource: nodefs", "resource: imagefs", "disk", "inodes"):
		return "evicted_disk"
	case strings.Contains(m, "resource: pids"):
		return "evicted_pids"
	}
	return reasonClassEvicted
}

// pendingIssue classes a scheduler message such as "0/3 nodes are
// available: 1 Insufficient cpu, 2 node(s) had untolerated taint
// {dedicated: gpu}. preemption: ..." by the cause shared by most nodes,
// and says it compactly with every cause and its node count ("0/3 nodes:
// 2 untolerated taint dedicated=gpu, 1 insufficient cpu"). A message of
// another kind is kept as it is.
func pendingIssue(msg string) PodIssue {
	iss := PodIssue{Type: events.IssuePending, Reason: reasonClassUnschedulable, Message: msg}
	r, _ := scheduling.Parse(msg)
	if c, ok := r.Dominant(); ok {
		iss.Reason, iss.Message = pendingClass(c), r.String()
	}
	return iss
}

// pendingClass names a cause's reason class. The names predate the
// parser and are kept: every volume cause but a missing claim and a
// bound volume on other nodes (volume_node_affinity) is unbound_pvc,
// node name and affinity are node_selector, the three inter-pod rules
// are pod_affinity.
func pendingClass(c scheduling.Cause) string {
	switch c.Kind {
	case scheduling.KindInsufficient:
		switch c.Resource {
		case "cpu":
			return "insufficient_cpu"
		case "memory":
			return "insufficient_memory"
		}
		return "insufficient_resources"
	case scheduling.KindTooManyPods:
		return "too_many_pods"
	case scheduling.KindTaint:
		return "taint"
	case scheduling.KindCordoned:
		return "unschedulable_nodes"
	case scheduling.KindNodeAffinity, scheduling.KindNodeName:
		return "node_selector"
	case scheduling.KindPodAffinity, scheduling.KindPodAntiAffinity, scheduling.KindExistingAntiAffinity:
		return "pod_affinity"
	case scheduling.KindTopologySpread:
		return "topology_spread"
	case scheduling.KindHostPort:
		return "host_port"
	case scheduling.KindMissingPVC:
		return "missing_pvc"
	case scheduling.KindVolumeNodeAffinity:
		return "volume_node_affinity"
	case scheduling.KindUnboundPVC, scheduling.KindVolume:
		return "unbound_pvc"
	case scheduling.KindNoNodes:
		return "no_nodes"
	}
	return reasonClassUnschedulable
}

// notReady reports a running pod whose containers all run but whose Ready
// condition has been False for longer than after.
func notReady(pod *corev1.Pod, now time.Time, after time.Duration, later func(time.Time)) (PodIssue, bool) {
	c := condition(pod, corev1.PodReady)
	if c == nil || c.Status != corev1.ConditionFalse {
		return PodIssue{}, false
	}
	container := ""
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Running == nil {
			return PodIssue{}, false // starting, or already classified
		}
		if !cs.Ready && container == "" {
			container = cs.Name
		}
	}
	if container == "" {
		return PodIssue{}, false // readiness gates, not containers
	}
	due := c.LastTransitionTime.Add(after)
	if now.Before(due) {
		later(due)
		return PodIssue{}, false
	}
	msg := fmt.Sprintf("container %s has not been ready for %s", container, now.Sub(c.LastTransitionTime.Time).Round(time.Second))
	if c.Message != "" {
		msg += ": " + c.Message
	}
	return PodIssue{Type: events.IssueNotReady, Container: container, Reason: reasonClassNotReady, Message: msg}, true
}

func condition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

func sortIssues(s []PodIssue) {
	slices.SortFunc(s, func(a, b PodIssue) int {
		if c := strings.Compare(a.Container, b.Container); c != 0 {
			return c
		}
		return strings.Compare(string(a.Type), string(b.Type))
	})
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// truncate cuts s to at most n bytes, at a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
