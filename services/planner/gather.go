package planner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// listLimit bounds every LIST the planner makes.
const listLimit = 500

// reader reads what planning needs from the cluster. It never reads
// Secrets.
type reader struct {
	kube kubernetes.Interface
	cfg  Config
}

// getOwner reads the incident's owner object.
func (r reader) getOwner(ctx context.Context, ref events.ObjectRef) (any, error) {
	ns, name := ref.Namespace, ref.Name
	opts := metav1.GetOptions{}
	var obj any
	var err error
	switch ref.Kind {
	case KindDeployment:
		obj, err = r.kube.AppsV1().Deployments(ns).Get(ctx, name, opts)
	case KindStatefulSet:
		obj, err = r.kube.AppsV1().StatefulSets(ns).Get(ctx, name, opts)
	case KindDaemonSet:
		obj, err = r.kube.AppsV1().DaemonSets(ns).Get(ctx, name, opts)
	case KindReplicaSet:
		obj, err = r.kube.AppsV1().ReplicaSets(ns).Get(ctx, name, opts)
	case KindJob:
		obj, err = r.kube.BatchV1().Jobs(ns).Get(ctx, name, opts)
	case KindCronJob:
		obj, err = r.kube.BatchV1().CronJobs(ns).Get(ctx, name, opts)
	case KindPod:
		obj, err = r.kube.CoreV1().Pods(ns).Get(ctx, name, opts)
	case KindService:
		obj, err = r.kube.CoreV1().Services(ns).Get(ctx, name, opts)
	case KindPersistentVolumeClaim:
		obj, err = r.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, opts)
	case KindIngress:
		obj, err = r.kube.NetworkingV1().Ingresses(ns).Get(ctx, name, opts)
	case KindNode:
		obj, err = r.kube.CoreV1().Nodes().Get(ctx, name, opts)
	case KindHPA:
		obj, err = r.kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, opts)
	default:
		var ok bool
		if obj, ok, err = r.getWarningOwner(ctx, ref); !ok {
			return nil, fmt.Errorf("get %s: unsupported owner kind %q (supported: Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod, Service, Node, HorizontalPodAutoscaler, ResourceQuota, LimitRange, PodDisruptionBudget, Certificate): %w",
				ref, ref.Kind, events.ErrInvalid)
		}
	}
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get %s: %w", ref, ErrTargetGone)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", ref, err)
	}
	return obj, nil
}

// gather reads the owner, a failing pod, the rollout history, the events,
// the previous logs and what the issue type needs.
func (r reader) gather(ctx context.Context, inc events.Incident) (planInput, error) {
	in := planInput{Cfg: r.cfg, Incident: inc}
	ref := inc.Owner
	if ref.Namespace == "" {
		ref.Namespace = inc.Namespace
	}
	obj, err := r.getOwner(ctx, ref)
	if err != nil {
		return in, err
	}
	if in.Owner, err = workloadOf(obj); err != nil {
		return in, err
	}
	ns := inc.Namespace
	if in.Pods, err = r.incidentPods(ctx, inc); err != nil {
		return in, err
	}
	in.Pod = failingPod(in.Pods, inc.Container)
	if dep := in.Owner.Deployment; dep != nil {
		if in.ReplicaSets, err = r.replicaSets(ctx, dep); err != nil {
			return in, err
		}
	}
	extra, err := r.workloadPods(ctx, &in)
	if err != nil {
		return in, err
	}
	subjects := append([]corev1.ObjectReference{{Kind: in.Owner.Ref.Kind, Name: in.Owner.Ref.Name}}, extra...)
	if in.Pod != nil {
		subjects = append(subjects, corev1.ObjectReference{Kind: KindPod, Name: in.Pod.Name})
		if c := metav1.GetControllerOf(in.Pod); c != nil && c.Kind == KindReplicaSet && !slices.ContainsFunc(extra, func(o corev1.ObjectReference) bool { return o.Name == c.Name }) {
			subjects = append(subjects, corev1.ObjectReference{Kind: KindReplicaSet, Name: c.Name})
		}
	}
	if in.Events, err = r.events(ctx, ns, subjects); err != nil {
		return in, err
	}
	switch inc.Type {
	case events.IssueCrashLoopBackOff, events.IssueOOMKilled, events.IssueInitContainerFailing:
		in.Logs = r.previousLogs(ctx, in.Pod, inc)
	case events.IssuePending:
		nodes, err := r.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: listLimit})
		if err != nil {
			return in, fmt.Errorf("list nodes: %w", err)
		}
		in.Nodes = nodes.Items
	case events.IssueEvicted:
		if in.EvictedPods, err = r.evictedPods(ctx, in); err != nil {
			return in, err
		}
	case events.IssueFailedCreate:
		in.Policy = r.policy(ctx, in)
	case events.IssueJobFailed:
		in.Logs = r.jobLogs(ctx, in)
	case events.IssueServiceUnavailable:
		in.Traffic = r.traffic(ctx, in)
	case events.IssueIngressUnavailable:
		in.Ingress = r.ingress(ctx, in)
	case events.IssueNodeNotReady, events.IssueNodePressure, events.IssueNodeCordoned, events.IssueNodeNearlyFull:
		in.Node = r.node(ctx, in)
	case events.IssueHPAMetricsUnavailable, events.IssueHPAAtMaxReplicas:
		in.HPA = r.hpa(ctx, in)
	}
	if needsStorage(in) {
		in.Storage = r.storage(ctx, in)
	}
	return in, nil
}

// incidentPods reads the incident's pods that still exist (the watcher
// names at most events.MaxIncidentPods).
func (r reader) incidentPods(ctx context.Context, inc events.Incident) ([]corev1.Pod, error) {
	var out []corev1.Pod
	for _, name := range inc.Pods {
		p, err := r.kube.CoreV1().Pods(inc.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get pod %s/%s: %w", inc.Namespace, name, err)
		}
		out = append(out, *p)
	}
	return out, nil
}

// failingPod returns the first of pods whose failing container has a
// status, else the first pod, else nil.
func failingPod(pods []corev1.Pod, container string) *corev1.Pod {
	for i := range pods {
		if cs := containerStatus(&pods[i], container); cs != nil && (cs.LastTerminationState.Terminated != nil || cs.State.Waiting != nil) {
			return &pods[i]
		}
	}
	if len(pods) > 0 {
		return &pods[0]
	}
	return nil
}

// replicaSets lists the ReplicaSets the Deployment controls.
func (r reader) replicaSets(ctx context.Context, dep *appsv1.Deployment) ([]appsv1.ReplicaSet, error) {
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %s/%s selector: %w", dep.Namespace, dep.Name, err)
	}
	list, err := r.kube.AppsV1().ReplicaSets(dep.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String(), Limit: listLimit})
	if err != nil {
		return nil, fmt.Errorf("list replicasets of deployment %s/%s: %w", dep.Namespace, dep.Name, err)
	}
	var out []appsv1.ReplicaSet
	for _, rs := range list.Items {
		if c := metav1.GetControllerOf(&rs); c != nil && c.UID == dep.UID {
			out = append(out, rs)
		}
	}
	return out, nil
}

// events lists the events of each subject (by kind and name), deduplicated.
func (r reader) events(ctx context.Context, ns string, subjects []corev1.ObjectReference) ([]corev1.Event, error) {
	var out []corev1.Event
	seen := map[types.UID]bool{}
	for _, s := range subjects {
		sel := fields.Set{"involvedObject.kind": s.Kind, "involvedObject.name": s.Name}.AsSelector().String()
		list, err := r.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel, Limit: listLimit})
		if err != nil {
			return nil, fmt.Errorf("list events of %s %s/%s: %w", s.Kind, ns, s.Name, err)
		}
		for _, e := range list.Items {
			// The fake clientset ignores field selectors; filter again.
			if e.InvolvedObject.Kind != s.Kind || e.InvolvedObject.Name != s.Name || seen[e.UID] {
				continue
			}
			seen[e.UID] = true
			out = append(out, e)
		}
	}
	return out, nil
}

// previousLogs reads the tail of the failing container's previous run. A
// failure is evidence too ("logs unavailable: ..."), never an error: kwok
// nodes, for one, serve no logs.
func (r reader) previousLogs(ctx context.Context, pod *corev1.Pod, inc events.Incident) *logsResult {
	if pod == nil {
		return &logsResult{Pod: firstOr(inc.Pods, "-"), Container: inc.Container, Err: "no pod of the incident exists any more"}
	}
	return r.containerLogs(ctx, pod, inc, true)
}

// containerLogs reads the tail of the incident's container (the first
// one when the incident names none): its previous run, or its current
// one (a failed Job's pod does not restart).
func (r reader) containerLogs(ctx context.Context, pod *corev1.Pod, inc events.Incident, previous bool) *logsResult {
	container := inc.Container
	if container == "" && len(pod.Spec.Containers) > 0 {
		container = pod.Spec.Containers[0].Name
	}
	res := &logsResult{Pod: pod.Name, Container: container, Current: !previous}
	tail, limit := r.cfg.LogTailLines, r.cfg.LogLimitBytes
	var raw []byte
	var err error
	// A log read that fails for a reason other than not found or not
	// allowed is tried again, logAttempts times at most: the container
	// may have ended a moment ago and its log not be served yet.
	for attempt := 1; ; attempt++ {
		raw, err = r.kube.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
			Container: container, Previous: previous, TailLines: &tail, LimitBytes: &limit,
		}).DoRaw(ctx)
		if err == nil || attempt == logAttempts || apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt) * logRetryDelay):
		}
	}
	if err != nil {
		var status apierrors.APIStatus
		msg := err.Error()
		if errors.As(err, &status) && status.Status().Message != "" {
			msg = status.Status().Message
		}
		res.Err = msg
		return res
	}
	// The kubelet enforces both bounds; splitLogs keeps them anyway.
	res.Lines = splitLogs(raw, int(tail), limit)
	return res
}

// Attempts at a container's log, logRetryDelay and then twice that apart.
const (
	logAttempts   = 3
	logRetryDelay = 300 * time.Millisecond
)

// evictedPods lists the owner's pods that were evicted.
func (r reader) evictedPods(ctx context.Context, in planInput) ([]corev1.Pod, error) {
	w := in.Owner
	if w.BarePod {
		p, err := r.kube.CoreV1().Pods(w.Ref.Namespace).Get(ctx, w.Ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get pod %s: %w", w.Ref, err)
		}
		if isEvicted(p) {
			return []corev1.Pod{*p}, nil
		}
		return nil, nil
	}
	opts := metav1.ListOptions{FieldSelector: "status.phase=Failed", Limit: listLimit}
	if w.Selector != nil {
		sel, err := metaSelector(w)
		if err != nil {
			return nil, fmt.Errorf("%s selector: %w", w.ref(), err)
		}
		opts.LabelSelector = sel.String()
	}
	list, err := r.kube.CoreV1().Pods(w.Ref.Namespace).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list failed pods of %s: %w", w.ref(), err)
	}
	owners := map[types.UID]bool{types.UID(w.Ref.UID): true}
	for _, rs := range in.ReplicaSets {
		owners[rs.UID] = true
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if c := metav1.GetControllerOf(&p); c != nil && owners[c.UID] && isEvicted(&p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// isEvicted reports a pod the kubelet evicted.
func isEvicted(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed && p.Status.Reason == "Evicted"
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}
