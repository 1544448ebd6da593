package events

import (
	"strings"
)

// IssueType is the class of a workload's failure. The JSON value is the
// Kubernetes-style name ("CrashLoopBackOff").
type IssueType string

// Issue types detected by the watcher.
const (
	// IssueCrashLoopBackOff: a container keeps exiting and is restarted with
	// back-off.
	IssueCrashLoopBackOff IssueType = "CrashLoopBackOff"
	// IssueImagePullBackOff: the image cannot be pulled (also covers
	// ErrImagePull and InvalidImageName).
	IssueImagePullBackOff IssueType = "ImagePullBackOff"
	// IssueOOMKilled: a container was killed for exceeding its memory limit.
	IssueOOMKilled IssueType = "OOMKilled"
	// IssuePending: the pod cannot be scheduled (or stays Pending for long).
	IssuePending IssueType = "Pending"
	// IssueEvicted: the kubelet evicted the pod (node pressure).
	IssueEvicted IssueType = "Evicted"
	// IssueCreateContainerConfigError: the container cannot be created,
	// typically a missing ConfigMap or Secret.
	IssueCreateContainerConfigError IssueType = "CreateContainerConfigError"
	// IssueInitContainerFailing: an init container keeps failing.
	IssueInitContainerFailing IssueType = "InitContainerFailing"
	// IssueNotReady: a running container has failed its readiness probe for
	// long.
	IssueNotReady IssueType = "NotReady"
	// IssueStuckTerminating: the pod has been terminating well past its
	// grace period.
	IssueStuckTerminating IssueType = "StuckTerminating"

	// Failures with no failing pod, reported on the workload a person
	// would fix.

	// IssueFailedCreate: a controller cannot create its pods (a
	// ResourceQuota exceeded or requiring limits, a missing
	// ServiceAccount, Pod Security admission, an admission webhook, a
	// LimitRange); reported on the Deployment, StatefulSet, DaemonSet or
	// Job with the controller's message.
	IssueFailedCreate IssueType = "FailedCreate"
	// IssueRolloutStuck: a rollout stopped advancing (a Deployment past
	// its progress deadline, a StatefulSet or DaemonSet update that does
	// not move).
	IssueRolloutStuck IssueType = "RolloutStuck"
	// IssueJobFailed: a Job failed for good (backoff limit or active
	// deadline exceeded), or a CronJob's recent runs failed.
	IssueJobFailed IssueType = "JobFailed"

	// Traffic failures, reported on the Service.

	// IssueServiceUnavailable: a Service with a selector routes to no
	// ready pod: its selector matches no pod (reason
	// selector_matches_nothing), its targetPort names or numbers no port
	// of the pods it selects (target_port_mismatch), or none of its pods
	// is ready (no_ready_endpoints).
	IssueServiceUnavailable IssueType = "ServiceUnavailable"
	// IssueIngressUnavailable: an Ingress routes to nothing, reported on
	// the Ingress: a backend Service that does not exist
	// (service_not_found), a service port the Service does not expose
	// (service_port_not_found), an ingressClassName naming no IngressClass
	// (ingress_class_not_found), no class and no default IngressClass
	// (no_ingress_class), or a class that exists but whose controller
	// does not seem to run: no Ingress of the class has an address after
	// watcher.ingress_grace (no_controller).
	IssueIngressUnavailable IssueType = "IngressUnavailable"
	// IssueCronJobNotScheduling: a CronJob that is not suspended has not
	// started a run its schedule called for (previous_run_active,
	// missed_starting_deadline, missed_schedule); reported on the CronJob.
	IssueCronJobNotScheduling IssueType = "CronJobNotScheduling"

	// Storage failures, reported on the workload whose pods wait for the
	// volume, or on the PersistentVolumeClaim when no pod uses it.

	// IssuePVCPending: a PersistentVolumeClaim cannot be bound: its
	// StorageClass does not exist (storage_class_missing), it names no
	// class and there is no default one (no_storage_class), its
	// provisioner failed (provisioning_failed) or has not provisioned it
	// (waiting_for_provisioner), no PersistentVolume matches a claim of a
	// class without provisioner that a pod waits for (no_matching_volume),
	// or it lost its volume (claim_lost).
	IssuePVCPending IssueType = "PVCPending"
	// IssueFailedMount: the kubelet cannot mount a pod's volume
	// (FailedMount events): a ConfigMap (missing_configmap), Secret
	// (missing_secret) or PersistentVolumeClaim (missing_pvc) that does not
	// exist, or another mount failure (mount_failed).
	IssueFailedMount IssueType = "FailedMount"

	// Node failures, reported on the Node (owner kind Node, namespace
	// ClusterScopeNamespace) with the workloads whose pods it affects.

	// IssueNodeNotReady: a node's Ready condition has been False
	// (not_ready) or Unknown (node_unreachable: the kubelet stopped
	// posting its status) for longer than watcher.node_grace.
	IssueNodeNotReady IssueType = "NodeNotReady"
	// IssueNodePressure: the kubelet reports memory (memory_pressure),
	// disk (disk_pressure) or PID (pid_pressure) pressure, the worst one
	// named, for longer than watcher.node_grace: it evicts pods and the
	// scheduler avoids the node.
	IssueNodePressure IssueType = "NodePressure"
	// IssueNodeCordoned: a node is cordoned (spec.unschedulable): low
	// severity while it is being drained (cordoned), medium once it has
	// been cordoned for longer than watcher.node_cordoned_after while
	// pods are still on it or Pending for want of a schedulable node
	// (cordoned_too_long).
	IssueNodeCordoned IssueType = "NodeCordoned"

	// Autoscaling failures, reported on the HorizontalPodAutoscaler.

	// IssueHPAMetricsUnavailable: an HPA cannot compute its replica count
	// (ScalingActive=False) for longer than watcher.hpa_grace: its target's
	// containers lack a request for the resource it scales on
	// (missing_request), the metrics API it reads is not served
	// (metrics_api_unavailable), a metric cannot be read
	// (metric_unavailable), or its target cannot be read or selected
	// (invalid_target).
	IssueHPAMetricsUnavailable IssueType = "HPAMetricsUnavailable"
	// IssueHPAAtMaxReplicas: an HPA wants more replicas than its
	// maxReplicas (ScalingLimited=True, TooManyReplicas) for longer than
	// watcher.hpa_at_max_after (at_max_replicas). Class warning: the
	// workload still runs, it has no room left to grow.
	IssueHPAAtMaxReplicas IssueType = "HPAAtMaxReplicas"

	// Warnings (class warning, severity warning): nothing has failed
	// yet; the evidence says something will. Each carries its numbers in
	// Incident.Warning. See docs/warnings.md.

	// IssueMemoryNearLimit: a container's memory working set grows toward
	// its limit and a fit over the window projects it to cross the limit
	// within the horizon (projected_oom), reported on the workload with
	// the container and the Forecast.
	IssueMemoryNearLimit IssueType = "MemoryNearLimit"
	// IssueRecurringRestarts: a container restarts again and again, a few
	// hours apart, without ever being in CrashLoopBackOff
	// (restarts_recurring).
	IssueRecurringRestarts IssueType = "RecurringRestarts"
	// IssueReadyReplicasDipping: a workload's ready replicas keep falling
	// below the desired count and recovering (ready_replicas_dipping).
	IssueReadyReplicasDipping IssueType = "ReadyReplicasDipping"
	// IssueQuotaNearLimit: a ResourceQuota's usage of a resource is at or
	// above the threshold (90% by default) of its hard limit (near_limit,
	// at_limit), reported on the ResourceQuota.
	IssueQuotaNearLimit IssueType = "QuotaNearLimit"
	// IssueNodeNearlyFull: the requests of a node's pods reach the
	// threshold (90% by default) of its allocatable cpu (cpu_requested),
	// memory (memory_requested) or pods (pods_allocated): the next pods
	// will not schedule there. Reported on the Node.
	IssueNodeNearlyFull IssueType = "NodeNearlyFull"
	// IssueLimitRangeExceedsQuota: a LimitRange's default requests or
	// limits do not fit the namespace's ResourceQuota
	// (default_exceeds_quota): the next pod without its own values is
	// refused. Reported on the LimitRange.
	IssueLimitRangeExceedsQuota IssueType = "LimitRangeExceedsQuota"
	// IssueMissingResources: a container without a memory limit
	// (no_memory_limit), memory request (no_memory_request) or cpu request
	// (no_cpu_request), the first of these named.
	IssueMissingResources IssueType = "MissingResources"
	// IssueMissingProbes: a long-running container without readiness
	// (no_readiness_probe) or liveness (no_liveness_probe) probe, or
	// neither (no_probes).
	IssueMissingProbes IssueType = "MissingProbes"
	// IssueMutableImageTag: a container image tagged latest (latest_tag)
	// or not tagged at all (no_tag), and not pinned by digest.
	IssueMutableImageTag IssueType = "MutableImageTag"
	// IssuePDBBlocksDrain: a PodDisruptionBudget that allows zero
	// disruptions for a workload it fully covers (zero_disruptions_allowed):
	// every node drain stalls on it. Reported on the PodDisruptionBudget.
	IssuePDBBlocksDrain IssueType = "PDBBlocksDrain"
	// IssueSingleNodeRisk: a Deployment with more than one replica whose
	// pods may all land on one node (no topology spread or anti-affinity
	// on the hostname: no_spread), or are on one node now
	// (all_on_one_node).
	IssueSingleNodeRisk IssueType = "SingleNodeRisk"
	// IssueCertificateExpiring: a cert-manager Certificate whose
	// certificate expires within the horizon (14 days by default:
	// expires_soon) and that is not being renewed. Read from the
	// Certificate's status; kaar never reads Secrets.
	IssueCertificateExpiring IssueType = "CertificateExpiring"
)

// IssueTypes lists every IssueType in a stable order.
func IssueTypes() []IssueType {
	return []IssueType{
		IssueCrashLoopBackOff, IssueImagePullBackOff, IssueOOMKilled,
		IssuePending, IssueEvicted, IssueCreateContainerConfigError,
		IssueInitContainerFailing, IssueNotReady, IssueStuckTerminating,
		IssueFailedCreate, IssueRolloutStuck, IssueJobFailed,
		IssueServiceUnavailable, IssueIngressUnavailable, IssueCronJobNotScheduling,
		IssuePVCPending, IssueFailedMount,
		IssueNodeNotReady, IssueNodePressure, IssueNodeCordoned,
		IssueHPAMetricsUnavailable, IssueHPAAtMaxReplicas,
		IssueMemoryNearLimit, IssueRecurringRestarts, IssueReadyReplicasDipping,
		IssueQuotaNearLimit, IssueNodeNearlyFull, IssueLimitRangeExceedsQuota,
		IssueMissingResources, IssueMissingProbes, IssueMutableImageTag,
		IssuePDBBlocksDrain, IssueSingleNodeRisk, IssueCertificateExpiring,
	}
}

// IssueClass separates what has failed from what is about to.
type IssueClass string

// Issue classes.
const (
	// ClassFailure: something is broken now (every type but the
	// warnings).
	ClassFailure IssueClass = "failure"
	// ClassWarning: nothing has failed yet; the evidence (a trend, a
	// capacity figure, a configuration risk) says something will.
	// Warnings rank below every failure, are planned only on request and
	// are announced in a digest, never one message each.
	ClassWarning IssueClass = "warning"
)

// IssueClasses lists every IssueClass, failures first.
func IssueClasses() []IssueClass { return []IssueClass{ClassFailure, ClassWarning} }

// Validate reports an unknown class (field "class").
func (c IssueClass) Validate() error { return validateEnum("class", c, IssueClasses()) }

// ParseIssueClass accepts a class name in any case.
func ParseIssueClass(s string) (IssueClass, error) {
	c := IssueClass(strings.ToLower(strings.TrimSpace(s)))
	if err := c.Validate(); err != nil {
		return "", err
	}
	return c, nil
}

// warningTypes are the types of class warning.
var warningTypes = map[IssueType]bool{
	IssueHPAAtMaxReplicas: true,
	IssueMemoryNearLimit:  true, IssueRecurringRestarts: true, IssueReadyReplicasDipping: true,
	IssueQuotaNearLimit: true, IssueNodeNearlyFull: true, IssueLimitRangeExceedsQuota: true,
	IssueMissingResources: true, IssueMissingProbes: true, IssueMutableImageTag: true,
	IssuePDBBlocksDrain: true, IssueSingleNodeRisk: true, IssueCertificateExpiring: true,
}

// Class is the type's class: ClassWarning for the warnings, else
// ClassFailure.
func (t IssueType) Class() IssueClass {
	if warningTypes[t] {
		return ClassWarning
	}
	return ClassFailure
}

// IsWarning reports a type of class warning.
func (t IssueType) IsWarning() bool { return warningTypes[t] }

// TypesOf lists the types of class c, in IssueTypes order.
func TypesOf(c IssueClass) []IssueType {
	var out []IssueType
	for _, t := range IssueTypes() {
		if t.Class() == c {
			out = append(out, t)
		}
	}
	return out
}

// issueAliases maps other Kubernetes reasons onto an IssueType.
var issueAliases = map[string]IssueType{
	"errimagepull":     IssueImagePullBackOff,
	"invalidimagename": IssueImagePullBackOff,
	"oomkill":          IssueOOMKilled,
	"oom":              IssueOOMKilled,
	"unschedulable":    IssuePending,
	"terminating":      IssueStuckTerminating,
}

func normalizeName(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.NewReplacer("_", "", "-", "", " ", "").Replace(s)
}

// ParseIssueType accepts an issue type name in any case, with or without
// '_', '-' or spaces ("crashloopbackoff", "crash_loop_back_off"), and the
// Kubernetes reasons ErrImagePull and InvalidImageName (as
// ImagePullBackOff). The error names field "type" and lists the allowed
// values.
func ParseIssueType(s string) (IssueType, error) {
	n := normalizeName(s)
	if n == "" {
		return "", fieldErr("type", "required", enumStrings(IssueTypes())...)
	}
	for _, t := range IssueTypes() {
		if normalizeName(string(t)) == n {
			return t, nil
		}
	}
	if t, ok := issueAliases[n]; ok {
		return t, nil
	}
	return "", IssueType(s).Validate()
}

// Validate reports an unknown issue type (field "type").
func (t IssueType) Validate() error { return validateEnum("type", t, IssueTypes()) }

// DefaultSeverity is the severity of an incident of this type unless
// configuration says otherwise.
func (t IssueType) DefaultSeverity() Severity {
	if t.IsWarning() {
		return SeverityWarning
	}
	switch t {
	case IssueCrashLoopBackOff, IssueImagePullBackOff, IssueOOMKilled,
		IssueCreateContainerConfigError, IssueInitContainerFailing, IssueFailedCreate, IssueServiceUnavailable,
		IssueIngressUnavailable, IssuePVCPending, IssueFailedMount, IssueNodeNotReady:
		return SeverityHigh
	case IssuePending, IssueEvicted, IssueNotReady, IssueRolloutStuck, IssueJobFailed, IssueCronJobNotScheduling,
		IssueNodePressure, IssueHPAMetricsUnavailable:
		return SeverityMedium
	case IssueStuckTerminating, IssueNodeCordoned:
		return SeverityLow
	}
	return SeverityMedium
}

// Severity ranks incidents.
type Severity string

// Severities from worst to mildest.
const (
	SeverityCritical Severity = "critical"
	SeverityHigh     Severity = "high"
	SeverityMedium   Severity = "medium"
	SeverityLow      Severity = "low"
	// SeverityWarning is below every failure: the severity of the
	// warning class (nothing has failed yet).
	SeverityWarning Severity = "warning"
)

// Severities lists every Severity from worst to mildest.
func Severities() []Severity {
	return []Severity{SeverityCritical, SeverityHigh, SeverityMedium, SeverityLow, SeverityWarning}
}

// ParseSeverity accepts a severity name in any case.
func ParseSeverity(s string) (Severity, error) {
	v := Severity(strings.ToLower(strings.TrimSpace(s)))
	if err := v.Validate(); err != nil {
		return "", err
	}
	return v, nil
}

// Validate reports an unknown severity (field "severity").
func (s Severity) Validate() error { return validateEnum("severity", s, Severities()) }

// Rank is 0 for critical up to 4 for warning (and 5 for unknown), for
// sorting.
func (s Severity) Rank() int {
	for i, v := range Severities() {
		if v == s {
			return i
		}
	}
	return len(Severities())
}
