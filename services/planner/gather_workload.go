package planner

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/kaar-dev/kaar/pkg/events"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// maxCronJobRuns bounds the Jobs of a CronJob read as evidence.
const maxCronJobRuns = 5

// policyRead is what the planner read of the policy object that refused
// a workload's pods, or why it could not.
type policyRead struct {
	Cause       failedCreate
	Quota       *corev1.ResourceQuota
	LimitRanges []corev1.LimitRange
	Namespace   *corev1.Namespace
	// Errs say what could not be read (the planner's role may not allow
	// it): evidence too, never a reason to fail the plan.
	Errs []string
}

// workloadPods reads, for the failures reported on a workload rather
// than a pod, the pods that show the cause when the incident names none:
// the current revision's pods of a stuck Deployment, the failed pods of a
// Job (of the newest failed run of a CronJob). It returns the extra
// objects whose events are evidence (the current ReplicaSet, the failed
// Job).
func (r reader) workloadPods(ctx context.Context, in *planInput) ([]corev1.ObjectReference, error) {
	var subjects []corev1.ObjectReference
	w := in.Owner
	switch in.Incident.Type {
	case events.IssueFailedCreate, events.IssueRolloutStuck:
		dep := w.Deployment
		if dep == nil {
			if in.Incident.Type == events.IssueRolloutStuck {
				return nil, r.ownPods(ctx, in)
			}
			return nil, nil
		}
		revs, current := rolloutHistory(dep, in.ReplicaSets)
		rs := currentRS(revs, current)
		if rs == nil {
			return nil, nil
		}
		subjects = append(subjects, corev1.ObjectReference{Kind: KindReplicaSet, Name: rs.Name})
		if in.Incident.Type == events.IssueRolloutStuck && len(in.Pods) == 0 {
			pods, err := r.controlledPods(ctx, dep.Namespace, rs.Spec.Selector, rs.UID)
			if err != nil {
				return nil, err
			}
			in.Pods = pods
			in.Pod = failingPod(in.Pods, in.Incident.Container)
		}
	case events.IssueCronJobNotScheduling:
		jobs, err := r.cronJobRuns(ctx, w)
		if err != nil {
			return nil, err
		}
		in.Jobs = jobs
	case events.IssueJobFailed:
		if w.Ref.Kind == KindCronJob {
			jobs, err := r.cronJobRuns(ctx, w)
			if err != nil {
				return nil, err
			}
			in.Jobs = jobs
		}
		job := in.failedJob()
		if job == nil {
			return nil, nil
		}
		if w.Ref.Kind == KindCronJob {
			subjects = append(subjects, corev1.ObjectReference{Kind: KindJob, Name: job.Name})
		}
		if len(in.Pods) == 0 {
			pods, err := r.controlledPods(ctx, job.Namespace, job.Spec.Selector, job.UID)
			if err != nil {
				return nil, err
			}
			in.Pods = pods
		}
		in.Pod = failedPod(in.Pods)
	}
	return subjects, nil
}

// controlledPods lists the pods a controller (by UID) owns among those
// its selector selects.
func (r reader) controlledPods(ctx context.Context, ns string, selector *metav1.LabelSelector, uid types.UID) ([]corev1.Pod, error) {
	sel := labels.Everything()
	if selector != nil {
		s, err := metav1.LabelSelectorAsSelector(selector)
		if err != nil {
			return nil, fmt.Errorf("selector of %s: %w", uid, err)
		}
		sel = s
	}
	list, err := r.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String(), Limit: listLimit})
	if err != nil {
		return nil, fmt.Errorf("list pods in %s: %w", ns, err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if c := metav1.GetControllerOf(&p); c != nil && c.UID == uid {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b corev1.Pod) int {
		return cmp.Or(b.CreationTimestamp.Compare(a.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// cronJobRuns lists the newest Jobs of a CronJob, newest first.
func (r reader) cronJobRuns(ctx context.Context, w *workload) ([]batchv1.Job, error) {
	list, err := r.kube.BatchV1().Jobs(w.Ref.Namespace).List(ctx, metav1.ListOptions{Limit: listLimit})
	if err != nil {
		return nil, fmt.Errorf("list jobs of %s: %w", w.ref(), err)
	}
	var out []batchv1.Job
	for _, j := range list.Items {
		if c := metav1.GetControllerOf(&j); c != nil && string(c.UID) == w.Ref.UID {
			out = append(out, j)
		}
	}
	slices.SortFunc(out, func(a, b batchv1.Job) int {
		return cmp.Or(b.CreationTimestamp.Compare(a.CreationTimestamp.Time), cmp.Compare(b.Name, a.Name))
	})
	if len(out) > maxCronJobRuns {
		out = out[:maxCronJobRuns]
	}
	return out, nil
}

// failedPod is the newest pod that failed, else the first pod, else nil
// (pods are newest first).
func failedPod(pods []corev1.Pod) *corev1.Pod {
	for i := range pods {
		if pods[i].Status.Phase == corev1.PodFailed {
			return &pods[i]
		}
	}
	if len(pods) > 0 {
		return &pods[0]
	}
	return nil
}

// failedJob is the Job that failed: the owner itself, or the newest
// failed run of a CronJob (nil when none is left).
func (in planInput) failedJob() *batchv1.Job {
	if j, ok := in.Owner.Object.(*batchv1.Job); ok {
		return j
	}
	for i := range in.Jobs {
		if jobCondition(&in.Jobs[i], batchv1.JobFailed) != nil {
			return &in.Jobs[i]
		}
	}
	return nil
}

// jobCondition is the Job's condition of that type with status True.
func jobCondition(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// jobLogs reads the tail of the failed pod's container: its current
// (terminated) run, where a Job's failure is.
func (r reader) jobLogs(ctx context.Context, in planInput) *logsResult {
	if in.Pod == nil {
		return nil
	}
	return r.containerLogs(ctx, in.Pod, in.Incident, false)
}

// policy reads the policy object a FailedCreate message names: the
// ResourceQuota, the namespace's LimitRanges, the namespace's Pod
// Security labels. A read that fails is noted, not returned.
func (r reader) policy(ctx context.Context, in planInput) *policyRead {
	p := &policyRead{Cause: parseFailedCreate(in.Incident.Reason, failedCreateMessage(in))}
	ns := in.Incident.Namespace
	switch p.Cause.Reason {
	case createExceededQuota, createQuotaRequiresLimits:
		if p.Cause.Quota == "" {
			break
		}
		q, err := r.kube.CoreV1().ResourceQuotas(ns).Get(ctx, p.Cause.Quota, metav1.GetOptions{})
		if err != nil {
			p.Errs = append(p.Errs, readErr("resourcequota/"+p.Cause.Quota, err))
		} else {
			p.Quota = q
		}
	case createLimitRange:
		list, err := r.kube.CoreV1().LimitRanges(ns).List(ctx, metav1.ListOptions{Limit: listLimit})
		if err != nil {
			p.Errs = append(p.Errs, readErr("limitranges", err))
		} else {
			p.LimitRanges = list.Items
		}
	case createPodSecurity:
		n, err := r.kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			p.Errs = append(p.Errs, readErr("namespace/"+ns, err))
		} else {
			p.Namespace = n
		}
	}
	return p
}

// readErr says why a policy object could not be read.
func readErr(what string, err error) string {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Sprintf("%s: not readable with the planner's role (RBAC): %v", what, err)
	case apierrors.IsNotFound(err):
		return what + ": not found (deleted since the message?)"
	}
	return fmt.Sprintf("%s: could not be read: %v", what, err)
}
