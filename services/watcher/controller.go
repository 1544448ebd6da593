package watcher

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// ControllerIssue is one problem of a workload controller that no pod
// shows: its pods cannot be created, its rollout stopped, its Job failed.
// The controller's issue joins its pods' issues in the evaluation of its
// top owner (a ReplicaSet's on its Deployment, a Job's on its CronJob).
type ControllerIssue struct {
	Type events.IssueType
	// Reason is the cause class within Type, lower snake_case
	// ("exceeded_quota", "progress_deadline_exceeded",
	// "backoff_limit_exceeded").
	Reason string
	// Message is the controller's own message, for people.
	Message string
	// PodCount is the pods concerned: the replicas the controller could
	// not create (FailedCreate), the Deployment's unavailable replicas
	// (RolloutStuck), the Job's failed pods (JobFailed).
	PodCount int
	// ReplicaSet is the Deployment's new ReplicaSet (RolloutStuck), when
	// the controller's message names it.
	ReplicaSet string
	// Severity, when set, replaces the type's default severity (a
	// cordoned node is low while it is drained, medium when left so).
	Severity events.Severity
	// Container names the container a warning is about (a container
	// without limits, a memory trend); its incident's identity includes
	// it. Empty for the failures of a controller.
	Container string
	// Warning is the evidence of a warning (types of class warning).
	Warning *events.WarningEvidence
}

// controllerTypes are the issue types the controller classifiers report;
// the pod classifier reports the others.
var controllerTypes = map[events.IssueType]bool{
	events.IssueFailedCreate: true, events.IssueRolloutStuck: true, events.IssueJobFailed: true,
}

// CreateFailure is a controller's last report that it could not create a
// pod (a Warning FailedCreate event): StatefulSets, DaemonSets and Jobs
// have no condition that says so.
type CreateFailure struct {
	Message string
	At      time.Time
}

// Kubernetes names the controller classifier reads.
const (
	reasonFailedCreate             = "FailedCreate"
	reasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"
	annotationRevision             = "deployment.kubernetes.io/revision"
	// createFailureFieldSelector is the server-side filter of the second
	// events informer: the controllers' reports that a pod could not be
	// created, and nothing else.
	createFailureFieldSelector = "type=Warning,reason=" + reasonFailedCreate
)

// Reason classes of a pod the controller could not create.
const (
	reasonClassExceededQuota       = "exceeded_quota"
	reasonClassQuotaRequiresLimits = "quota_requires_limits"
	reasonClassMissingSA           = "missing_service_account"
	reasonClassPodSecurity         = "pod_security"
	reasonClassWebhookDenied       = "webhook_denied"
	reasonClassWebhookUnreachable  = "webhook_unreachable"
	reasonClassLimitRange          = "limit_range"
	reasonClassOther               = "other"
)

// FailedCreateReason classes the error a controller got creating a pod,
// such as `pods "web-5d4f-" is forbidden: exceeded quota: q, requested:
// pods=1, used: pods=1, limited: pods=1`. Quoted names are left out of the
// match; webhooks come first, since what they deny may quote anything.
func FailedCreateReason(msg string) string {
	m := strings.ToLower(stripQuoted(msg))
	switch {
	case strings.Contains(m, "failed calling webhook"):
		return reasonClassWebhookUnreachable
	case strings.Contains(m, "admission webhook") && strings.Contains(m, "denied the request"):
		return reasonClassWebhookDenied
	case strings.Contains(m, "violates podsecurity"):
		return reasonClassPodSecurity
	case strings.Contains(m, "exceeded quota"):
		return reasonClassExceededQuota
	case containsAny(m, "must specify limits", "must specify requests"):
		return reasonClassQuotaRequiresLimits
	case strings.Contains(m, "serviceaccount") && strings.Contains(m, "not found"):
		return reasonClassMissingSA
	case strings.Contains(m, "limitrange") ||
		(strings.Contains(m, "maximum") || strings.Contains(m, "minimum")) && strings.Contains(m, "usage per container") ||
		strings.Contains(m, "usage per pod"):
		return reasonClassLimitRange
	}
	return reasonClassOther
}

// ClassifyReplicaSet reports a ReplicaSet whose controller cannot create
// its pods: condition ReplicaFailure with reason FailedCreate, while
// replicas are missing. A ReplicaSet scaled to zero has nothing to create.
func ClassifyReplicaSet(rs *appsv1.ReplicaSet) []ControllerIssue {
	if rs == nil || rs.DeletionTimestamp != nil {
		return nil
	}
	want := replicasOf(rs.Spec.Replicas)
	if want == 0 {
		return nil
	}
	for _, c := range rs.Status.Conditions {
		if c.Type == appsv1.ReplicaSetReplicaFailure && c.Status == corev1.ConditionTrue && c.Reason == reasonFailedCreate {
			return []ControllerIssue{failedCreate("replicaset "+rs.Name, c.Message, int(want-rs.Status.Replicas))}
		}
	}
	return nil
}

// ClassifyStatefulSet reports a StatefulSet that cannot create its pods:
// its controller's last FailedCreate report (fc, nil for none) while it
// has fewer pods than replicas.
func ClassifyStatefulSet(sts *appsv1.StatefulSet, fc *CreateFailure) []ControllerIssue {
	if sts == nil || fc == nil || sts.DeletionTimestamp != nil {
		return nil
	}
	if missing := missingPods(sts); missing > 0 {
		return []ControllerIssue{failedCreate("statefulset "+sts.Name, fc.Message, int(missing))}
	}
	return nil
}

// ClassifyDaemonSet reports a DaemonSet that cannot create its pods: its
// controller's last FailedCreate report while nodes that should run its
// pod have none.
func ClassifyDaemonSet(ds *appsv1.DaemonSet, fc *CreateFailure) []ControllerIssue {
	if ds == nil || fc == nil || ds.DeletionTimestamp != nil {
		return nil
	}
	if missing := missingPods(ds); missing > 0 {
		return []ControllerIssue{failedCreate("daemonset "+ds.Name, fc.Message, int(missing))}
	}
	return nil
}

// missingPods is how many pods a controller lacks, for the clearing of
// remembered create failures: zero means it has all its pods.
func missingPods(obj any) int32 {
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		return replicasOf(o.Spec.Replicas) - o.Status.Replicas
	case *appsv1.DaemonSet:
		return o.Status.DesiredNumberScheduled - o.Status.CurrentNumberScheduled
	case *batchv1.Job:
		return jobMissing(o)
	}
	return 0
}

// ClassifyDeployment reports a rollout that stopped: condition Progressing
// False with reason ProgressDeadlineExceeded, on a Deployment that wants
// pods, is not paused, and whose status is of its current spec.
func ClassifyDeployment(d *appsv1.Deployment) []ControllerIssue {
	if d == nil || d.DeletionTimestamp != nil || d.Spec.Paused || replicasOf(d.Spec.Replicas) == 0 ||
		d.Status.ObservedGeneration < d.Generation {
		return nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type != appsv1.DeploymentProgressing || c.Status != corev1.ConditionFalse || c.Reason != reasonProgressDeadlineExceeded {
			continue
		}
		msg := "rollout of deployment " + d.Name
		if rev := d.Annotations[annotationRevision]; rev != "" {
			msg += " (revision " + rev + ")"
		}
		msg += " stopped: it did not progress within its deadline"
		if d.Spec.ProgressDeadlineSeconds != nil {
			msg += fmt.Sprintf(" of %ds", *d.Spec.ProgressDeadlineSeconds)
		}
		msg += fmt.Sprintf("; %d of %d replicas updated, %d available", d.Status.UpdatedReplicas, replicasOf(d.Spec.Replicas),
			d.Status.AvailableReplicas)
		if c.Message != "" {
			msg += ": " + truncate(c.Message, 512)
		}
		iss := ControllerIssue{Type: events.IssueRolloutStuck, Reason: "progress_deadline_exceeded", Message: msg,
			PodCount: int(max(d.Status.UnavailableReplicas, 0))}
		if m := quotedReplicaSet.FindStringSubmatch(c.Message); m != nil {
			iss.ReplicaSet = m[1]
		}
		return []ControllerIssue{iss}
	}
	return nil
}

// quotedReplicaSet finds the ReplicaSet the deployment controller names in
// its progress message (`ReplicaSet "web-5d4f" has timed out progressing.`).
var quotedReplicaSet = regexp.MustCompile(`ReplicaSet "([^"]+)"`)

// ClassifyJob reports a Job that cannot create its pods (fc, its last
// FailedCreate report, while it is running short of pods). A Job that
// failed is reported by ClassifyJobRuns, on the Job or on its CronJob.
func ClassifyJob(j *batchv1.Job, fc *CreateFailure) []ControllerIssue {
	if j == nil || fc == nil || j.DeletionTimestamp != nil {
		return nil
	}
	if missing := missingPods(j); missing > 0 {
		return []ControllerIssue{failedCreate("job "+j.Name, fc.Message, int(missing))}
	}
	return nil
}

// jobMissing is how many pods a running Job lacks: its parallelism (capped
// by the completions still to go) less its active pods; 0 for a finished
// or suspended Job.
func jobMissing(j *batchv1.Job) int32 {
	if _, done := jobFinished(j); done || j.Spec.Suspend != nil && *j.Spec.Suspend {
		return 0
	}
	want := int32(1)
	if j.Spec.Parallelism != nil {
		want = *j.Spec.Parallelism
	}
	if j.Spec.Completions != nil {
		want = min(want, *j.Spec.Completions-j.Status.Succeeded)
	}
	return max(want-j.Status.Active, 0)
}

// jobFinished reports whether a Job is done (done) and, if it failed, the
// condition that says so (failed=nil for a Job that completed). A
// FailureTarget condition counts: the Job is failing for good, its last
// pods are being terminated.
func jobFinished(j *batchv1.Job) (failed *batchv1.JobCondition, done bool) {
	var target *batchv1.JobCondition
	for i := range j.Status.Conditions {
		c := &j.Status.Conditions[i]
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete, batchv1.JobSuccessCriteriaMet:
			return nil, true
		case batchv1.JobFailed:
			return c, true
		case batchv1.JobFailureTarget:
			target = c
		}
	}
	return target, target != nil
}

// jobRunsConsidered is how many of an owner's most recent finished Jobs
// the JobFailed message counts.
const jobRunsConsidered = 3

// ClassifyJobRuns reports the Jobs of one owner (a bare Job alone, or the
// Jobs a CronJob created) whose most recent finished run failed: one
// JobFailed issue however many runs failed, gone once a later run
// completes or the failed Jobs are deleted. A Job that completed, or is
// still running, is never an issue.
func ClassifyJobRuns(jobs []*batchv1.Job) []ControllerIssue {
	type run struct {
		j      *batchv1.Job
		failed *batchv1.JobCondition
	}
	var runs []run
	for _, j := range jobs {
		if j == nil || j.DeletionTimestamp != nil {
			continue
		}
		if failed, done := jobFinished(j); done {
			runs = append(runs, run{j, failed})
		}
	}
	if len(runs) == 0 {
		return nil
	}
	slices.SortFunc(runs, func(a, b run) int {
		return cmp.Or(a.j.CreationTimestamp.Compare(b.j.CreationTimestamp.Time), strings.Compare(a.j.Name, b.j.Name))
	})
	last := runs[len(runs)-1]
	if last.failed == nil {
		return nil
	}
	c := last.failed
	msg := fmt.Sprintf("job %s failed (%s)", last.j.Name, c.Reason)
	if c.Message != "" {
		msg += ": " + truncate(c.Message, 512)
	}
	msg += fmt.Sprintf("; %d failed pods", last.j.Status.Failed)
	if len(runs) > 1 {
		recent := runs[max(len(runs)-jobRunsConsidered, 0):]
		n := 0
		for _, r := range recent {
			if r.failed != nil {
				n++
			}
		}
		msg += fmt.Sprintf("; %d of the last %d runs failed", n, len(recent))
	}
	return []ControllerIssue{{Type: events.IssueJobFailed, Reason: jobFailedReason(c.Reason), Message: msg,
		PodCount: int(max(last.j.Status.Failed, 0))}}
}

func jobFailedReason(reason string) string {
	switch reason {
	case batchv1.JobReasonBackoffLimitExceeded:
		return "backoff_limit_exceeded"
	case batchv1.JobReasonDeadlineExceeded:
		return "deadline_exceeded"
	case batchv1.JobReasonPodFailurePolicy:
		return "pod_failure_policy"
	case batchv1.JobReasonMaxFailedIndexesExceeded, batchv1.JobReasonFailedIndexes:
		return "failed_indexes"
	}
	return "job_failed"
}

func failedCreate(what, msg string, missing int) ControllerIssue {
	return ControllerIssue{Type: events.IssueFailedCreate, Reason: FailedCreateReason(msg), PodCount: max(missing, 0),
		Message: what + " cannot create its pods: " + truncate(msg, 1024)}
}

func replicasOf(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}
