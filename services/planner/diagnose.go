package planner

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
)

// exitCodeMeaning explains a container exit code (128 + signal for
// signals), following the usual triage of CrashLoopBackOff.
func exitCodeMeaning(code int32, reason string) string {
	switch {
	case reason == "OOMKilled":
		return "the kernel killed the container for exceeding its memory limit"
	case code == 0:
		return "the process exited successfully: under restartPolicy Always a process that ends by design is restarted forever (run it as a Job, or keep it in the foreground)"
	case code == 1:
		return "the application failed (generic error): its previous logs say why, often configuration, environment or a missing file"
	case code == 126:
		return "the command is not executable (permissions or wrong binary): check command, args and the image"
	case code == 127:
		return "the command was not found in the image: check command, args and the image"
	case code == 137:
		return "SIGKILL without OOMKilled: usually the kubelet killing a container that failed its liveness probe (look for Unhealthy and Killing events)"
	case code == 139:
		return "segmentation fault (SIGSEGV) in the application"
	case code == 143:
		return "SIGTERM: the container was asked to stop (probe failure, eviction or a rollout) and exited"
	case code > 128 && code < 160:
		return fmt.Sprintf("killed by signal %d", code-128)
	}
	return "the application exited with an error: its previous logs say why"
}

// pullCause classifies an image pull failure message.
type pullCause string

const (
	pullNotFound    pullCause = "not_found"
	pullAuth        pullCause = "unauthorized"
	pullUnreachable pullCause = "unreachable"
	pullRateLimit   pullCause = "rate_limited"
	pullInvalidName pullCause = "invalid_name"
	pullUnknown     pullCause = "unknown"
)

var pullCauses = []struct {
	cause pullCause
	re    *regexp.Regexp
}{
	{pullRateLimit, regexp.MustCompile(`(?i)toomanyrequests|rate limit|429 Too Many Requests`)},
	{pullAuth, regexp.MustCompile(`(?i)pull access denied|unauthorized|insufficient_scope|403 Forbidden|requested access to the resource is denied|authorization failed|permission .*denied|no basic auth credentials`)},
	{pullNotFound, regexp.MustCompile(`(?i)not found|manifest unknown|does not exist|no such image`)},
	{pullUnreachable, regexp.MustCompile(`(?i)no such host|timeout|timed out|connection refused|i/o timeout|network is unreachable`)},
	{pullInvalidName, regexp.MustCompile(`(?i)InvalidImageName|invalid reference format|couldn't parse image`)},
}

// classifyPull classifies the first message that matches.
func classifyPull(msgs ...string) pullCause {
	for _, m := range msgs {
		for _, c := range pullCauses {
			if m != "" && c.re.MatchString(m) {
				return c.cause
			}
		}
	}
	return pullUnknown
}

// containerStatus finds the status of a container (or init container) of
// a pod by name; the first container when name is empty.
func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	if p == nil {
		return nil
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for i := range list {
			if name == "" || list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// messages gathers what the cluster said about the failure: the
// incident's message, the container's waiting/terminated messages and the
// Warning events, most specific first.
func messages(in planInput) []string {
	var out []string
	if cs := containerStatus(in.Pod, in.Incident.Container); cs != nil {
		if w := cs.State.Waiting; w != nil && w.Message != "" {
			out = append(out, w.Message)
		}
		if t := cs.LastTerminationState.Terminated; t != nil && t.Message != "" {
			out = append(out, t.Message)
		}
	}
	if in.Incident.Message != "" {
		out = append(out, in.Incident.Message)
	}
	for _, e := range in.Events {
		if e.Type == corev1.EventTypeWarning {
			out = append(out, e.Message)
		}
	}
	return out
}

// exitCode is the last termination's exit code and reason of the failing
// container, from the incident or the pod.
func exitCode(in planInput) (code int32, reason string, ok bool) {
	if cs := containerStatus(in.Pod, in.Incident.Container); cs != nil {
		if t := cs.LastTerminationState.Terminated; t != nil {
			return t.ExitCode, t.Reason, true
		}
		if t := cs.State.Terminated; t != nil {
			return t.ExitCode, t.Reason, true
		}
	}
	if in.Incident.ExitCode != nil {
		return *in.Incident.ExitCode, "", true
	}
	return 0, "", false
}

var (
	missingObjectRE = regexp.MustCompile(`(?i)(configmap|secret) "([^"]+)" not found`)
	missingKeyRE    = regexp.MustCompile(`(?i)couldn't find key (\S+) in (ConfigMap|Secret) ([^/\s]+)/(\S+)`)
)

// humanSteps are concrete diagnostic steps for people, by issue type.
func humanSteps(in planInput) []events.Step {
	b := &builder{in: in}
	w := in.Owner
	ref, pod := b.podRef()
	c := b.containerName()
	step := func(title string, kubectl ...string) events.Step {
		s := events.Step{Action: events.ActionDiagnostic, Title: title, Risk: events.RiskNone, Target: ref}
		if len(kubectl) > 0 {
			s.Kubectl = b.kubectl(kubectl...)
		}
		return s
	}
	describe := []string{"describe", "pod", pod}
	if pod == "" {
		describe = []string{"describe", w.ref()}
	}
	msgs := messages(in)
	switch in.Incident.Type {
	case events.IssueCrashLoopBackOff:
		if steps, ok := probeSteps(in, b, step); ok {
			return steps // killed by the kubelet for its probe (probe.go)
		}
		out := []events.Step{}
		if s, ok := logCauseStep(in, b, step); ok {
			out = append(out, s) // what its log says is missing (logcause.go)
		}
		if code, reason, ok := exitCode(in); ok {
			out = append(out, step(fmt.Sprintf("Exit code %d: %s", code, exitCodeMeaning(code, reason)), "logs", pod, "-c", c, "--previous"))
		} else {
			out = append(out, step("Read why the container exits in its previous logs", "logs", pod, "-c", c, "--previous"))
		}
		where := "the pod template of " + w.ref()
		if w.BarePod {
			where = "the manifest of " + w.ref() + " and recreate it (a pod without a controller is not replaced)"
		}
		out = append(out, step(fmt.Sprintf("Fix the cause in %s (configuration, environment, command, probes: a startupProbe or a longer initialDelaySeconds for slow starts)", where), "edit", w.ref()))
		if w.Deployment != nil {
			out = append(out, step("If the crashes began with the last rollout, roll back", "rollout", "undo", w.ref()))
		}
		return out
	case events.IssueImagePullBackOff:
		img := ""
		if _, cc, _ := w.container(in.Incident.Container); cc != nil {
			img = cc.Image
		}
		switch classifyPull(msgs...) {
		case pullAuth:
			return []events.Step{step(fmt.Sprintf("The registry refuses to serve %s to the cluster: add imagePullSecrets to the pod template of %s or to its ServiceAccount", img, w.ref()), describe...)}
		case pullUnreachable:
			return []events.Step{step(fmt.Sprintf("The registry of %s cannot be reached from the nodes (DNS, network, proxy or an outage): no workload patch fixes this", img), describe...)}
		case pullRateLimit:
			return []events.Step{step(fmt.Sprintf("The registry rate-limits pulls of %s: authenticate the pulls (imagePullSecrets) or use a mirror", img), describe...)}
		case pullInvalidName:
			return []events.Step{step(fmt.Sprintf("The image reference %q is malformed: fix it in the pod template of %s", img, w.ref()), describe...)}
		default:
			return []events.Step{step(fmt.Sprintf("Image %s cannot be pulled (tag or repository not found?): fix the tag in %s, or roll back", img, w.ref()), describe...)}
		}
	case events.IssueOOMKilled:
		limit := "its limit"
		if _, cc, _ := w.container(in.Incident.Container); cc != nil {
			if q, ok := cc.Resources.Limits[corev1.ResourceMemory]; ok {
				limit = "its " + q.String() + " limit"
			}
		}
		return []events.Step{
			step(fmt.Sprintf("Container %s is killed at %s: compare with the memory it really needs (kubectl top pod, or the application's metrics)", c, limit), "top", "pod", pod, "--containers"),
			step(fmt.Sprintf("Raise the memory limit of %s by hand if it needs more, or fix a leak or the runtime's heap settings (-Xmx, GOMEMLIMIT, ...)", w.ref()), "set", "resources", w.ref(), "-c", c, "--limits=memory=<new limit>"),
		}
	case events.IssuePending:
		return pendingSteps(b, step, describe)
	case events.IssueEvicted:
		return []events.Step{
			step("The kubelet evicted the pods for node pressure (memory, disk or PIDs; see the eviction evidence): check the node's conditions", "describe", "nodes"),
			step(fmt.Sprintf("Set memory requests of %s near real usage, and ephemeral-storage requests/limits if it writes to local disk, so its pods are not the first evicted", w.ref()), "edit", w.ref()),
		}
	case events.IssueCreateContainerConfigError:
		return configErrorSteps(in, b, step, describe, msgs)
	case events.IssueInitContainerFailing:
		var out []events.Step
		if s, ok := logCauseStep(in, b, step); ok {
			out = append(out, s)
		}
		return append(out,
			step(fmt.Sprintf("Read the logs of init container %s", c), "logs", pod, "-c", c, "--previous"),
			step(fmt.Sprintf("Fix what init container %s waits for or runs (a dependency that is down, a migration that fails, a wrong command)", c), describe...))
	case events.IssueNotReady:
		steps, _ := probeSteps(in, b, step) // the readiness probe and its failures (probe.go)
		return steps
	case events.IssueFailedCreate:
		return failedCreateSteps(in, b, step)
	case events.IssueRolloutStuck:
		return rolloutStuckSteps(in, b, step)
	case events.IssueJobFailed:
		return jobFailedSteps(in, b, step)
	case events.IssueServiceUnavailable:
		return trafficSteps(in, b, step)
	case events.IssuePVCPending:
		return pvcPendingSteps(in, b, step)
	case events.IssueFailedMount:
		return failedMountSteps(in, b, step, describe)
	case events.IssueIngressUnavailable:
		return ingressSteps(in, b, step)
	case events.IssueCronJobNotScheduling:
		return cronJobSteps(in, b, step)
	case events.IssueNodeNotReady, events.IssueNodePressure, events.IssueNodeCordoned:
		return nodeSteps(in)
	case events.IssueHPAMetricsUnavailable, events.IssueHPAAtMaxReplicas:
		return hpaSteps(in, b, step)
	case events.IssueMemoryNearLimit, events.IssueRecurringRestarts, events.IssueReadyReplicasDipping,
		events.IssueQuotaNearLimit, events.IssueNodeNearlyFull, events.IssueLimitRangeExceedsQuota,
		events.IssueMissingResources, events.IssueMissingProbes, events.IssueMutableImageTag,
		events.IssuePDBBlocksDrain, events.IssueSingleNodeRisk, events.IssueCertificateExpiring:
		return warningSteps(in, b, step) // warning.go
	case events.IssueStuckTerminating:
		return []events.Step{
			step("Check the pod's finalizers and whether its node is still reachable", "get", "pod", pod, "-o", "jsonpath={.metadata.finalizers}"),
			step("Only once the node is known to be gone, force the deletion", "delete", "pod", pod, "--grace-period=0", "--force"),
		}
	}
	return []events.Step{step(fmt.Sprintf("Inspect %s", w.ref()), describe...)}
}

// claimNames lists the PersistentVolumeClaims a pod spec mounts.
func claimNames(spec *corev1.PodSpec) []string {
	if spec == nil {
		return nil
	}
	var out []string
	for _, v := range spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return out
}

// configErrorSteps name the missing ConfigMap/Secret (or key) and where
// the template references it.
func configErrorSteps(in planInput, b *builder, step func(string, ...string) events.Step, describe []string, msgs []string) []events.Step {
	ns := in.Incident.Namespace
	for _, m := range msgs {
		if sm := missingKeyRE.FindStringSubmatch(m); sm != nil {
			key, kind, name := sm[1], strings.ToLower(sm[2]), sm[4]
			return []events.Step{
				step(fmt.Sprintf("%s %s exists but has no key %s: add the key, or fix the reference%s", kind, name, key, refsTo(in.Owner, kind, name)), "get", kind, name, "-o", "yaml"),
			}
		}
		if sm := missingObjectRE.FindStringSubmatch(m); sm != nil {
			kind, name := strings.ToLower(sm[1]), sm[2]
			return []events.Step{
				step(fmt.Sprintf("Create %s %s in namespace %s, or point the reference%s at an existing one", kind, name, ns, refsTo(in.Owner, kind, name)), "get", kind),
			}
		}
	}
	return []events.Step{step("A ConfigMap, Secret or key the container needs is missing: the pod's events name it", describe...)}
}

// refsTo lists where the pod spec references a ConfigMap or Secret:
// " (container app env WEBHOOK_URL)".
func refsTo(w *workload, kind, name string) string {
	if w.Spec == nil {
		return ""
	}
	var refs []string
	for _, c := range append(append([]corev1.Container{}, w.Spec.InitContainers...), w.Spec.Containers...) {
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; kind == "configmap" && r != nil && r.Name == name {
				refs = append(refs, fmt.Sprintf("container %s env %s", c.Name, e.Name))
			}
			if r := e.ValueFrom.SecretKeyRef; kind == "secret" && r != nil && r.Name == name {
				refs = append(refs, fmt.Sprintf("container %s env %s", c.Name, e.Name))
			}
		}
		for _, ef := range c.EnvFrom {
			if r := ef.ConfigMapRef; kind == "configmap" && r != nil && r.Name == name {
				refs = append(refs, fmt.Sprintf("container %s envFrom", c.Name))
			}
			if r := ef.SecretRef; kind == "secret" && r != nil && r.Name == name {
				refs = append(refs, fmt.Sprintf("container %s envFrom", c.Name))
			}
		}
	}
	if len(refs) == 0 {
		return ""
	}
	return " (" + strings.Join(refs, "; ") + ")"
}
