package planner

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
)

// Failures with no failing pod (FailedCreate, RolloutStuck, JobFailed):
// what the controller's message says, and the steps a person takes.
// Policy objects (ResourceQuota, LimitRange, Pod Security labels,
// admission webhooks, RBAC, ServiceAccounts) belong to whoever runs the
// namespace or the cluster: kaar never changes them, so FailedCreate
// plans are diagnostic; a failed Job is never re-run without a person,
// because a run can have side effects a second run repeats.

// Reasons of a FailedCreate incident (Incident.Reason), as the watcher
// classifies the controller's message.
const (
	createExceededQuota         = "exceeded_quota"
	createQuotaRequiresLimits   = "quota_requires_limits"
	createMissingServiceAccount = "missing_service_account"
	createPodSecurity           = "pod_security"
	createWebhookDenied         = "webhook_denied"
	createWebhookUnreachable    = "webhook_unreachable"
	createLimitRange            = "limit_range"
	createOther                 = "other"
)

// failedCreate is a FailedCreate message taken apart.
type failedCreate struct {
	Reason  string
	Message string
	// Quota is the ResourceQuota the message names (exceeded_quota,
	// quota_requires_limits).
	Quota string
	// Requested, Used and Limited are the quota's figures
	// ("limits.memory=512Mi"), exceeded_quota only.
	Requested, Used, Limited string
	// Missing is what a quota requires and the pod lacks
	// ("limits.cpu for: app; limits.memory for: app").
	Missing string
	// ServiceAccount is the missing ServiceAccount's name.
	ServiceAccount string
	// Level is the Pod Security level violated ("restricted:latest") and
	// Violations what the pod does against it.
	Level      string
	Violations []string
	// Webhook is the admission webhook's name and Detail what it said or
	// why it could not be called.
	Webhook, Detail string
	// LimitRange is the LimitRange's rule the pod breaks.
	LimitRange string
}

var (
	exceededQuotaRE  = regexp.MustCompile(`(?s)exceeded quota: ([^,\s]+), requested: (.+?), used: (.+?), limited: (.+)$`)
	requiresQuotaRE  = regexp.MustCompile(`(?s)failed quota: ([^:\s]+): must specify (.+)$`)
	serviceAccountRE = regexp.MustCompile(`serviceaccount "([^"]+)" not found`)
	podSecurityRE    = regexp.MustCompile(`(?s)violates PodSecurity "([^"]+)": (.+)$`)
	webhookDeniedRE  = regexp.MustCompile(`(?s)admission webhook "([^"]+)" denied the request:?\s*(.*)$`)
	webhookCallRE    = regexp.MustCompile(`(?s)failed calling webhook "([^"]+)":\s*(.*)$`)
	limitRangeRE     = regexp.MustCompile(`((?:maximum|minimum) \S+ usage per (?:Container|Pod) is \S+, but (?:limit|request) is \S+|\S+ max limit to request ratio per (?:Container|Pod) is \S+, but provided ratio is \S+)`)
	// A Pod Security violation: `allowPrivilegeEscalation != false
	// (container "app" must set ...)`, separated by ", " outside
	// parentheses.
	violationSep = regexp.MustCompile(`\), `)
)

// parseFailedCreate takes a FailedCreate message apart. reason is the
// watcher's classification; an empty or unknown one is worked out from
// the message.
func parseFailedCreate(reason, msg string) failedCreate {
	f := failedCreate{Reason: reason, Message: msg}
	if m := exceededQuotaRE.FindStringSubmatch(msg); m != nil {
		f.Quota, f.Requested, f.Used, f.Limited = m[1], m[2], m[3], m[4]
		f.fallback(createExceededQuota)
	}
	if m := requiresQuotaRE.FindStringSubmatch(msg); m != nil {
		f.Quota, f.Missing = m[1], m[2]
		f.fallback(createQuotaRequiresLimits)
	}
	if m := serviceAccountRE.FindStringSubmatch(msg); m != nil {
		f.ServiceAccount = m[1]
		f.fallback(createMissingServiceAccount)
	}
	if m := podSecurityRE.FindStringSubmatch(msg); m != nil {
		f.Level = m[1]
		for _, v := range violationSep.Split(m[2], -1) {
			if v = strings.TrimSpace(v); v != "" {
				if strings.Contains(v, "(") && !strings.HasSuffix(v, ")") {
					v += ")"
				}
				f.Violations = append(f.Violations, v)
			}
		}
		f.fallback(createPodSecurity)
	}
	if m := webhookDeniedRE.FindStringSubmatch(msg); m != nil {
		f.Webhook, f.Detail = m[1], m[2]
		f.fallback(createWebhookDenied)
	}
	if m := webhookCallRE.FindStringSubmatch(msg); m != nil {
		f.Webhook, f.Detail = m[1], m[2]
		f.fallback(createWebhookUnreachable)
	}
	if m := limitRangeRE.FindStringSubmatch(msg); m != nil {
		f.LimitRange = m[1]
		f.fallback(createLimitRange)
	}
	f.fallback(createOther)
	return f
}

// fallback sets the reason when the watcher gave none or one this
// planner does not know.
func (f *failedCreate) fallback(reason string) {
	switch f.Reason {
	case createExceededQuota, createQuotaRequiresLimits, createMissingServiceAccount, createPodSecurity,
		createWebhookDenied, createWebhookUnreachable, createLimitRange, createOther:
		return
	}
	f.Reason = reason
}

// failedCreateMessage is the controller's message: the incident's, else
// the newest FailedCreate event's.
func failedCreateMessage(in planInput) string {
	if in.Incident.Message != "" {
		return in.Incident.Message
	}
	for _, e := range sortEvents(in.Events) {
		if e.Reason == "FailedCreate" {
			return e.Message
		}
	}
	return ""
}

// designedDiagnostic says why an issue type gets diagnostic steps only,
// whatever the configured strategies, or "".
func designedDiagnostic(t events.IssueType) string {
	switch t {
	case events.IssuePVCPending, events.IssueFailedMount:
		return "the fix is a StorageClass, a PersistentVolume, a ConfigMap or Secret, or a claim created again (its class is immutable): objects, data and choices the executor's catalogue has no step for: diagnostic steps only"
	case events.IssueFailedCreate:
		return "the pods are refused by a policy object (quota, LimitRange, Pod Security, webhook, ServiceAccount), which kaar never changes: diagnostic steps only"
	case events.IssueJobFailed:
		return "a failed Job is never re-run without a person (a run can have side effects that a second run repeats): diagnostic steps only"
	case events.IssueIngressUnavailable:
		return "kaar does not change Ingresses or Services (the executor's catalogue has no step for them, and which of the two is wrong is a person's call): diagnostic steps only"
	case events.IssueCronJobNotScheduling:
		return "ending a run that is still active or changing a CronJob's schedule is a person's decision (a run can have side effects, and so can ending one halfway): diagnostic steps only"
	case events.IssueNodeNotReady, events.IssueNodePressure, events.IssueNodeCordoned:
		return "kaar never cordons, drains, uncordons or deletes nodes (whether a node is fit to run pods, and when its workloads move, is a person's decision; the executor's catalogue has no node step): diagnostic steps only"
	case events.IssueHPAMetricsUnavailable, events.IssueHPAAtMaxReplicas:
		return "kaar does not change HorizontalPodAutoscalers or choose requests (the requests a container needs and the replicas a workload may use are capacity decisions; set_resource_requests replaces a request, it does not add one a container lacks): diagnostic steps only"
	}
	return warningDiagnostic(t) // warning.go
}

// stepFunc builds one diagnostic step with its kubectl command.
type stepFunc func(title string, kubectl ...string) events.Step

// failedCreateSteps say which policy refused the pods and the ways out.
func failedCreateSteps(in planInput, b *builder, step stepFunc) []events.Step {
	w := in.Owner
	f := parseFailedCreate(in.Incident.Reason, failedCreateMessage(in))
	var out []events.Step
	add := func(s events.Step) { out = append(out, b.ownerStep(s)) }
	switch f.Reason {
	case createExceededQuota:
		add(policyStep(b, step(fmt.Sprintf("ResourceQuota %s is full: %s asks for %s, the namespace already uses %s of at most %s", quote(orUnknown(f.Quota)), w.ref(), quote(f.Requested), quote(f.Used), quote(f.Limited)),
			"describe", "resourcequota", f.Quota), "ResourceQuota", f.Quota))
		add(policyStep(b, step(fmt.Sprintf("Either raise ResourceQuota %s: a policy change for the namespace's owner (kaar never changes quotas)", quote(orUnknown(f.Quota))), "edit", "resourcequota", f.Quota), "ResourceQuota", f.Quota))
		if w.Ref.Kind == KindCronJob && strings.Contains(f.Requested, "count/jobs.batch") {
			// Finished Jobs count too: the CronJob's history is what fills it.
			add(step(fmt.Sprintf("Or keep fewer Jobs: lower successfulJobsHistoryLimit and failedJobsHistoryLimit of %s (finished Jobs count against count/jobs.batch), or delete old Jobs of the namespace", w.ref()),
				"get", "jobs", "--sort-by=.metadata.creationTimestamp"))
			break
		}
		add(step(fmt.Sprintf("Or make %s fit: lower the requests and limits of its pod template%s, or its replicas%s", w.ref(), currentResources(w), currentReplicas(w)),
			scaleOrResources(w)...))
	case createQuotaRequiresLimits:
		add(policyStep(b, step(fmt.Sprintf("ResourceQuota %s requires every pod to declare %s, and the pod template of %s does not", quote(orUnknown(f.Quota)), quote(f.Missing), w.ref()),
			"describe", "resourcequota", f.Quota), "ResourceQuota", f.Quota))
		add(step(fmt.Sprintf("Set the missing requests and limits in the pod template of %s%s (or have the namespace's owner add a LimitRange with defaults: a policy change)", w.ref(), currentResources(w)),
			"set", "resources", w.ref(), "-c", b.containerName(), "--requests=cpu=<cpu>,memory=<memory>", "--limits=cpu=<cpu>,memory=<memory>"))
	case createMissingServiceAccount:
		sa := quote(orUnknown(f.ServiceAccount))
		add(policyStep(b, step(fmt.Sprintf("ServiceAccount %s does not exist in namespace %s", sa, in.Incident.Namespace), "get", "serviceaccount", f.ServiceAccount), "ServiceAccount", f.ServiceAccount))
		add(step(fmt.Sprintf("Create ServiceAccount %s (with the RBAC it needs: a change for the namespace's owner), or fix serviceAccountName in the pod template of %s (now %q)", sa, w.ref(), serviceAccountOf(w)),
			"create", "serviceaccount", f.ServiceAccount))
	case createPodSecurity:
		add(step(fmt.Sprintf("Pod Security admission refuses the pods of %s at level %q: %s", w.ref(), quote(f.Level), quote(strings.Join(f.Violations, "; "))),
			"get", "namespace", in.Incident.Namespace, "--show-labels"))
		add(step(fmt.Sprintf("Change the pod template of %s to meet the %q level (the fields above); relaxing the namespace's pod-security.kubernetes.io/enforce label is a policy change for its owner", w.ref(), levelName(f.Level)),
			"edit", w.ref()))
	case createWebhookDenied:
		add(step(fmt.Sprintf("Admission webhook %s denies the pods of %s: %s", quote(f.Webhook), w.ref(), quote(orUnknown(f.Detail))),
			"get", "validatingwebhookconfigurations,mutatingwebhookconfigurations"))
		add(step(fmt.Sprintf("Change the pod template of %s to meet the policy webhook %s enforces, or ask the webhook's owner for an exception (kaar never changes webhooks)", w.ref(), quote(f.Webhook)), "edit", w.ref()))
	case createWebhookUnreachable:
		add(step(fmt.Sprintf("Admission webhook %s cannot be called (%s), and it fails closed: no pod of the namespace it covers can be created", quote(f.Webhook), quote(orUnknown(f.Detail))),
			"get", "validatingwebhookconfigurations,mutatingwebhookconfigurations"))
		add(step(fmt.Sprintf("Bring the webhook's backend back (its Service and pods), or have the cluster's owner change its failurePolicy or scope; %s recovers on its own once pods can be created", w.ref()),
			"get", "validatingwebhookconfigurations,mutatingwebhookconfigurations", "-o", "custom-columns=NAME:.metadata.name,SERVICE:.webhooks[*].clientConfig.service.name,NAMESPACE:.webhooks[*].clientConfig.service.namespace,FAILURE_POLICY:.webhooks[*].failurePolicy"))
	case createLimitRange:
		add(policyStep(b, step(fmt.Sprintf("A LimitRange of namespace %s refuses the pods of %s: %s", in.Incident.Namespace, w.ref(), quote(orUnknown(f.LimitRange))), "describe", "limitrange"), "LimitRange", ""))
		add(step(fmt.Sprintf("Fit the requests and limits of %s%s into the LimitRange, or have the namespace's owner change it (a policy change)", w.ref(), currentResources(w)),
			"set", "resources", w.ref(), "-c", b.containerName(), "--requests=cpu=<cpu>,memory=<memory>", "--limits=cpu=<cpu>,memory=<memory>"))
	default:
		add(step(fmt.Sprintf("The controller of %s cannot create its pods: read its FailedCreate events (the message is in the evidence)", w.ref()), "describe", w.ref()))
	}
	return out
}

// policyStep points a step at the policy object when it has a name (else
// failedCreateSteps points it at the workload).
func policyStep(b *builder, s events.Step, kind, name string) events.Step {
	if name == "" {
		return s
	}
	s.Target = events.ObjectRef{Kind: kind, Namespace: b.in.Incident.Namespace, Name: name, APIVersion: "v1"}
	return s
}

// ownerStep points a step at the workload when it has no pod to point at.
func (b *builder) ownerStep(s events.Step) events.Step {
	if s.Target.IsZero() {
		s.Target = b.in.Owner.Ref
	}
	return s
}

// onOwner points a step at the workload.
func (b *builder) onOwner(s events.Step) events.Step {
	s.Target = b.in.Owner.Ref
	return s
}

// rolloutStuckSteps explain a rollout past its progress deadline. The
// typed rollback, when there is an older revision, is the rollback
// strategy's step; these are what a person reads first, or does when no
// rollback applies.
func rolloutStuckSteps(in planInput, b *builder, step stepFunc) []events.Step {
	w := in.Owner
	var out []events.Step
	if dep := w.Deployment; dep != nil {
		revs, current := rolloutHistory(dep, in.ReplicaSets)
		what := ""
		if rs := currentRS(revs, current); rs != nil {
			what = fmt.Sprintf(" to revision %d (replicaset/%s)", current, rs.Name)
		}
		cause := "read why its new pods do not become ready"
		if c := podCause(in); c != "" {
			cause = "its new pods: " + c
		}
		out = append(out, b.onOwner(step(fmt.Sprintf("The rollout of %s%s stopped progressing: %s", w.ref(), what, cause), "rollout", "status", w.ref())))
		out = append(out, b.onOwner(step("Compare the revisions (the rollout history is in the evidence)", "rollout", "history", w.ref())))
		if _, _, ok := rollbackTarget(revs, current); !ok {
			out = append(out, b.onOwner(step(fmt.Sprintf("%s has no older revision to roll back to: fix the pod template, or raise spec.progressDeadlineSeconds if the rollout is only slow", w.ref()), "edit", w.ref())))
		}
		return out
	}
	return stalledRolloutSteps(in, b, step)
}

// podCause says in a few words why a pod of the incident fails, or "".
func podCause(in planInput) string {
	p := in.Pod
	if p == nil {
		return ""
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return fmt.Sprintf("pod/%s is not scheduled (%s)", p.Name, quote(c.Message))
		}
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, cs := range list {
			if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "PodInitializing" && w.Reason != "ContainerCreating" {
				return fmt.Sprintf("container %s of pod/%s is waiting: %s", cs.Name, p.Name, w.Reason)
			}
			for _, t := range []*corev1.ContainerStateTerminated{cs.State.Terminated, cs.LastTerminationState.Terminated} {
				if t != nil && t.ExitCode != 0 {
					return fmt.Sprintf("container %s of pod/%s exited with code %d (%s)", cs.Name, p.Name, t.ExitCode, exitCodeMeaning(t.ExitCode, t.Reason))
				}
			}
			if !cs.Ready && cs.State.Running != nil {
				return fmt.Sprintf("container %s of pod/%s runs but is not ready (readiness probe)", cs.Name, p.Name)
			}
		}
	}
	return ""
}

// Reasons of a JobFailed incident.
const (
	jobBackoffLimit     = "backoff_limit_exceeded"
	jobDeadline         = "deadline_exceeded"
	jobPodFailurePolicy = "pod_failure_policy"
	jobFailedIndexes    = "failed_indexes"
)

// jobFailedSteps explain a failed Job (or the failed runs of a CronJob)
// and leave the re-run to a person.
func jobFailedSteps(in planInput, b *builder, step stepFunc) []events.Step {
	w := in.Owner
	job := w.ref()
	if j := in.failedJob(); j != nil && w.Ref.Kind == KindCronJob {
		job = "job/" + j.Name
	}
	var out []events.Step
	add := func(s events.Step) { out = append(out, b.onOwner(s)) }
	switch in.Incident.Reason {
	case jobDeadline:
		add(step(fmt.Sprintf("%s ran longer than its activeDeadlineSeconds%s and was stopped: find why it is slow, or raise the deadline in the template of %s", job, activeDeadline(w), w.ref()), "describe", job))
	case jobPodFailurePolicy:
		add(step(fmt.Sprintf("A podFailurePolicy rule of %s failed the Job at once (an exit code or pod condition it treats as fatal): read which in the Job's conditions", job), "describe", job))
	case jobFailedIndexes:
		add(step(fmt.Sprintf("Indexes of the indexed %s failed past backoffLimitPerIndex or maxFailedIndexes: the Job's status lists them, their pods' exit codes and logs say why", job), "describe", job))
	case jobBackoffLimit:
		add(step(fmt.Sprintf("%s failed %s: every retry failed, so the cause is in the pods' exit codes and logs", job, backoffLimit(w)), "describe", job))
	default:
		add(step(fmt.Sprintf("%s failed: its Failed condition (in the evidence) says why", job), "describe", job))
	}
	c := b.containerName()
	if in.Pod != nil {
		out = append(out, step(fmt.Sprintf("Read the logs of the failed pod %s (quoted in the evidence when the node serves them)", in.Pod.Name), "logs", in.Pod.Name, "-c", c))
	} else {
		add(step(fmt.Sprintf("No pod of %s remains (ttlSecondsAfterFinished or garbage collection removed them): its logs are gone unless a log store kept them; the conditions are in the evidence", job), "logs", job, "-c", c))
	}
	if w.Ref.Kind == KindCronJob {
		add(step(fmt.Sprintf("Check the last runs of %s (listed in the evidence, newest first) and whether the next one will fail the same way", w.ref()),
			"get", "jobs", "--sort-by=.metadata.creationTimestamp"))
		add(step(fmt.Sprintf("Fix the job template of %s; a person who knows a run is safe to repeat can start one by hand (kaar never re-runs a job)", w.ref()),
			"create", "job", w.Ref.Name+"-manual", "--from="+w.ref()))
		return out
	}
	add(step(fmt.Sprintf("Fix the cause (image, command, configuration, what the job depends on); a Job's template cannot be changed, so a person who knows a run is safe to repeat recreates %s from its manifest (kaar never re-runs a job)", job),
		"get", job, "-o", "yaml"))
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "(not named in the message)"
	}
	return s
}

// levelName is the level without its version: "restricted".
func levelName(level string) string {
	l, _, _ := strings.Cut(level, ":")
	return l
}

// currentResources says what the failing container asks for:
// " (container app: requests cpu=100m, memory=64Mi; limits memory=128Mi)".
func currentResources(w *workload) string {
	_, c, _ := w.container("")
	if c == nil {
		return ""
	}
	part := func(l corev1.ResourceList) string {
		var out []string
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := l[r]; ok {
				out = append(out, string(r)+"="+q.String())
			}
		}
		if len(out) == 0 {
			return "none"
		}
		return strings.Join(out, ", ")
	}
	return fmt.Sprintf(" (container %s: requests %s; limits %s)", c.Name, part(c.Resources.Requests), part(c.Resources.Limits))
}

// currentReplicas is " (3 now)" for a workload with replicas.
func currentReplicas(w *workload) string {
	if n, ok := replicasOf(w); ok {
		return fmt.Sprintf(" (%d now)", n)
	}
	return ""
}

// scaleOrResources is the kubectl command for making the workload fit.
func scaleOrResources(w *workload) []string {
	if _, ok := replicasOf(w); ok {
		return []string{"scale", w.ref(), "--replicas=<fewer>"}
	}
	c := ""
	if _, cc, _ := w.container(""); cc != nil {
		c = cc.Name
	}
	return []string{"set", "resources", w.ref(), "-c", c, "--requests=cpu=<cpu>,memory=<memory>", "--limits=cpu=<cpu>,memory=<memory>"}
}

func serviceAccountOf(w *workload) string {
	if w.Spec == nil || w.Spec.ServiceAccountName == "" {
		return "default"
	}
	return w.Spec.ServiceAccountName
}
