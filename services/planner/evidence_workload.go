package planner

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// conditionsEvidence quotes the workload's status: its replicas and
// conditions (a Deployment's Progressing, a Job's Failed), and a
// CronJob's last runs.
func conditionsEvidence(in planInput) (events.Evidence, bool) {
	var lines []string
	data := map[string]string{}
	cond := func(typ, status, reason, msg string, since metav1.Time) {
		lines = append(lines, conditionLine("", typ, status, reason, msg, since))
	}
	switch o := in.Owner.Object.(type) {
	case *appsv1.Deployment:
		s := o.Status
		lines = append(lines, fmt.Sprintf("replicas: desired %d, updated %d, ready %d, available %d, unavailable %d (observedGeneration %d of %d)",
			derefOr(o.Spec.Replicas, 1), s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas, s.UnavailableReplicas, s.ObservedGeneration, o.Generation))
		if o.Spec.ProgressDeadlineSeconds != nil {
			lines = append(lines, fmt.Sprintf("progressDeadlineSeconds: %d", *o.Spec.ProgressDeadlineSeconds))
		}
		for _, c := range o.Status.Conditions {
			cond(string(c.Type), string(c.Status), c.Reason, c.Message, c.LastUpdateTime)
			if c.Type == appsv1.DeploymentProgressing {
				data["progressing_reason"] = c.Reason
			}
		}
		if r := o.Annotations[annotationRevision]; r != "" {
			data["revision"] = r
		}
	case *appsv1.StatefulSet:
		s := o.Status
		lines = append(lines, quote(fmt.Sprintf("replicas: desired %d, ready %d, current %d (revision %s), updated %d (revision %s)",
			derefOr(o.Spec.Replicas, 1), s.ReadyReplicas, s.CurrentReplicas, s.CurrentRevision, s.UpdatedReplicas, s.UpdateRevision)))
		for _, c := range s.Conditions {
			cond(string(c.Type), string(c.Status), c.Reason, c.Message, c.LastTransitionTime)
		}
	case *appsv1.DaemonSet:
		s := o.Status
		lines = append(lines, fmt.Sprintf("pods: desired %d, scheduled %d, ready %d, updated %d, unavailable %d, misscheduled %d",
			s.DesiredNumberScheduled, s.CurrentNumberScheduled, s.NumberReady, s.UpdatedNumberScheduled, s.NumberUnavailable, s.NumberMisscheduled))
		for _, c := range s.Conditions {
			cond(string(c.Type), string(c.Status), c.Reason, c.Message, c.LastTransitionTime)
		}
	case *appsv1.ReplicaSet:
		s := o.Status
		lines = append(lines, fmt.Sprintf("replicas: desired %d, ready %d, available %d", derefOr(o.Spec.Replicas, 1), s.ReadyReplicas, s.AvailableReplicas))
		for _, c := range s.Conditions {
			cond(string(c.Type), string(c.Status), c.Reason, c.Message, c.LastTransitionTime)
		}
	case *batchv1.Job:
		lines = append(lines, jobLines(o, "")...)
		if c := jobCondition(o, batchv1.JobFailed); c != nil {
			data["failed_reason"] = c.Reason
		}
	case *batchv1.CronJob:
		lines = append(lines, cronJobLines(o, in.Jobs)...)
		if j := in.failedJob(); j != nil {
			data["failed_job"] = j.Name
			if c := jobCondition(j, batchv1.JobFailed); c != nil {
				data["failed_reason"] = c.Reason
			}
		}
	default:
		return events.Evidence{}, false
	}
	if len(lines) == 0 {
		return events.Evidence{}, false
	}
	return events.Evidence{Kind: events.EvidenceConditions, Title: "Status of " + in.Owner.ref(),
		Source: in.Owner.ref() + " status (replicas and conditions)", Lines: lines, Data: data}, true
}

// jobLines are a Job's limits, counts and conditions; prefix names it
// among a CronJob's runs.
func jobLines(j *batchv1.Job, prefix string) []string {
	deadline := "-"
	if d := j.Spec.ActiveDeadlineSeconds; d != nil {
		deadline = strconv.FormatInt(*d, 10) + "s"
	}
	out := []string{quote(fmt.Sprintf("%sbackoffLimit %d, activeDeadlineSeconds %s, active %d, succeeded %d, failed %d, started %s",
		prefix, derefOr(j.Spec.BackoffLimit, 6), deadline, j.Status.Active, j.Status.Succeeded, j.Status.Failed, fmtTimePtr(j.Status.StartTime)))}
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		out = append(out, conditionLine(prefix, string(c.Type), string(c.Status), c.Reason, c.Message, c.LastTransitionTime))
	}
	return out
}

// conditionLine is "condition Progressing=False ProgressDeadlineExceeded
// (since ...): message", without the parts a condition leaves empty.
func conditionLine(prefix, typ, status, reason, msg string, since metav1.Time) string {
	l := fmt.Sprintf("%scondition %s=%s", prefix, typ, status)
	if reason != "" {
		l += " " + reason
	}
	l += " (since " + fmtTime(since.Time) + ")"
	if msg != "" {
		l += ": " + msg
	}
	return quote(l)
}

// cronJobLines are a CronJob's schedule and its last runs.
func cronJobLines(cj *batchv1.CronJob, jobs []batchv1.Job) []string {
	suspended := cj.Spec.Suspend != nil && *cj.Spec.Suspend
	deadline := "-"
	if d := cj.Spec.StartingDeadlineSeconds; d != nil {
		deadline = strconv.FormatInt(*d, 10) + "s"
	}
	out := []string{quote(fmt.Sprintf("schedule %q (time zone %s), suspended %t, concurrencyPolicy %s, startingDeadlineSeconds %s, last scheduled %s, last successful %s, active %d",
		cj.Spec.Schedule, derefOr(cj.Spec.TimeZone, "of the controller"), suspended, cmp.Or(cj.Spec.ConcurrencyPolicy, batchv1.AllowConcurrent), deadline,
		fmtTimePtr(cj.Status.LastScheduleTime), fmtTimePtr(cj.Status.LastSuccessfulTime), len(cj.Status.Active)))}
	if len(jobs) == 0 {
		return append(out, "no Job of this CronJob is left (its history limits or a TTL removed them)")
	}
	for i := range jobs {
		out = append(out, jobLines(&jobs[i], "job/"+jobs[i].Name+" ")...)
	}
	return out
}

// policyEvidence quotes the controller's message taken apart and what
// was read of the policy object.
func policyEvidence(in planInput) events.Evidence {
	p := in.Policy
	f := p.Cause
	data := map[string]string{"cause": f.Reason}
	lines := []string{"cause: " + f.Reason, "message: " + quote(orUnknown(f.Message))}
	field := func(key, label, v string) {
		if v != "" {
			lines = append(lines, label+": "+quote(v))
			if key != "" {
				data[key] = v
			}
		}
	}
	field("quota", "quota", f.Quota)
	field("requested", "requested", f.Requested)
	field("used", "used", f.Used)
	field("limited", "limited", f.Limited)
	field("", "must specify", f.Missing)
	field("service_account", "serviceAccount", f.ServiceAccount)
	field("level", "Pod Security level", f.Level)
	for _, v := range f.Violations {
		field("", "violation", v)
	}
	field("webhook", "webhook", f.Webhook)
	field("", "webhook says", f.Detail)
	field("", "LimitRange rule", f.LimitRange)
	if q := p.Quota; q != nil {
		lines = append(lines, quote(fmt.Sprintf("resourcequota/%s hard: %s", q.Name, resourceList(q.Status.Hard, q.Spec.Hard))),
			quote(fmt.Sprintf("resourcequota/%s used: %s", q.Name, resourceList(q.Status.Used, nil))))
	}
	for _, lr := range p.LimitRanges {
		for _, item := range lr.Spec.Limits {
			lines = append(lines, quote(fmt.Sprintf("limitrange/%s %s: min %s; max %s; default limits %s; default requests %s; maxLimitRequestRatio %s",
				lr.Name, item.Type, resourceList(item.Min, nil), resourceList(item.Max, nil), resourceList(item.Default, nil),
				resourceList(item.DefaultRequest, nil), resourceList(item.MaxLimitRequestRatio, nil))))
		}
	}
	if f.Reason == createLimitRange && len(p.LimitRanges) == 0 && len(p.Errs) == 0 {
		lines = append(lines, "no LimitRange is left in namespace "+in.Incident.Namespace)
	}
	if n := p.Namespace; n != nil {
		var psa []string
		for _, k := range slices.Sorted(maps.Keys(n.Labels)) {
			if strings.HasPrefix(k, "pod-security.kubernetes.io/") {
				psa = append(psa, k+"="+n.Labels[k])
			}
		}
		if len(psa) == 0 {
			psa = []string{"(none: the cluster's default level applies)"}
		}
		lines = append(lines, quote(fmt.Sprintf("namespace/%s labels: %s", n.Name, strings.Join(psa, ", "))))
	}
	for _, e := range p.Errs {
		lines = append(lines, quote(e))
	}
	return events.Evidence{Kind: events.EvidencePolicy, Title: "Why the pods are refused: " + strings.ReplaceAll(f.Reason, "_", " "),
		Source: "the controller's FailedCreate message and the policy objects it names", Lines: lines, Data: data}
}

// resourceList renders "limits.memory=1Gi, pods=10" in key order; the
// fallback is used when the first list is empty (a quota not yet
// counted by its controller).
func resourceList(l, fallback corev1.ResourceList) string {
	if len(l) == 0 {
		l = fallback
	}
	if len(l) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(l))
	for _, k := range slices.Sorted(maps.Keys(l)) {
		q := l[k]
		parts = append(parts, string(k)+"="+q.String())
	}
	return strings.Join(parts, ", ")
}

// replicasOf is the desired replicas of a Deployment or StatefulSet.
func replicasOf(w *workload) (int32, bool) {
	switch o := w.Object.(type) {
	case *appsv1.Deployment:
		return derefOr(o.Spec.Replicas, 1), true
	case *appsv1.StatefulSet:
		return derefOr(o.Spec.Replicas, 1), true
	}
	return 0, false
}

// jobSpecOf is the Job spec of a Job or a CronJob's job template.
func jobSpecOf(w *workload) *batchv1.JobSpec {
	switch o := w.Object.(type) {
	case *batchv1.Job:
		return &o.Spec
	case *batchv1.CronJob:
		return &o.Spec.JobTemplate.Spec
	}
	return nil
}

// activeDeadline is " (600s)", or "".
func activeDeadline(w *workload) string {
	if s := jobSpecOf(w); s != nil && s.ActiveDeadlineSeconds != nil {
		return fmt.Sprintf(" (%ds)", *s.ActiveDeadlineSeconds)
	}
	return ""
}

// backoffLimit is "after its backoffLimit of 6 retries".
func backoffLimit(w *workload) string {
	n := int32(6) // the API server's default
	if s := jobSpecOf(w); s != nil && s.BackoffLimit != nil {
		n = *s.BackoffLimit
	}
	if n == 1 {
		return "after its backoffLimit of 1 retry"
	}
	return fmt.Sprintf("after its backoffLimit of %d retries", n)
}

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func fmtTimePtr(t *metav1.Time) string {
	if t == nil {
		return "-"
	}
	return fmtTime(t.Time)
}
