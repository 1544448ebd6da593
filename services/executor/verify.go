package executor

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
)

// maxVerificationPods bounds Verification.FailingPods.
const maxVerificationPods = 10

// verify watches the plan's target until it is healthy for VerifyStable
// or VerifyTimeout passes, and records the verdict in the audit trail
// (verified or verification_failed). deleted are the pods the plan
// deleted: they must be gone.
func (s *Service) verify(ctx context.Context, log *slog.Logger, p events.Plan, deleted map[string]string) events.Verification {
	start := time.Now()
	ref := p.Target
	if ref.Namespace == "" {
		ref.Namespace = p.Namespace
	}
	h := s.watchHealth(ctx, p.ID, ref, deleted)
	return s.recordVerification(ctx, log, p, ref, h, start)
}

// watchHealth reads the target's health on every tick and every event of
// a watch on it, until the verdict settles (see verdict.settled) or
// VerifyTimeout passes; it returns the verdict, whose message says which.
func (s *Service) watchHealth(ctx context.Context, planID string, ref events.ObjectRef, deleted map[string]string) Health {
	vctx, cancel := context.WithTimeout(ctx, s.cfg.VerifyTimeout)
	defer cancel()

	tick := time.NewTicker(s.cfg.VerifyInterval)
	defer tick.Stop()
	var w watch.Interface
	defer func() {
		if w != nil {
			w.Stop()
		}
	}()
	var v verdict
	for {
		if w == nil {
			w = s.watchTarget(vctx, ref) // nil: fall back to the ticker
		}
		cur, err := s.checkHealth(vctx, ref, deleted)
		v.observe(cur, err)
		if err != nil && v.read {
			s.log.Debug("verify: read workload", slog.String("plan", planID), slog.Any("error", err))
		}
		if v.settled(s.cfg.VerifyStable, s.cfg.VerifyFailAfter) {
			return v.h
		}
		w = waitForChange(vctx, tick, w)
		if vctx.Err() != nil {
			return s.cutShort(ctx, v.h)
		}
	}
}

// verdict is what the verification loop knows: the last health reading,
// and since when the target has been healthy or its new pods failing.
type verdict struct {
	h            Health
	read         bool // h is a real reading
	healthySince time.Time
	failingSince time.Time
}

// observe takes a reading. A failed read (the API server busy, the
// deadline cutting a request short) keeps the last verdict: an error says
// nothing about the workload.
func (v *verdict) observe(cur Health, err error) {
	switch {
	case err == nil:
		v.h, v.read = cur, true
	case !v.read:
		v.h = Health{Message: "read workload: " + apiSummary(err)}
	}
}

// settled reports whether the verdict is final: healthy for stable, or
// pods of the new revision failing without a break for failAfter (the
// change did not fix it; say so now).
func (v *verdict) settled(stable, failAfter time.Duration) bool {
	if v.h.Healthy {
		if v.healthySince.IsZero() {
			v.healthySince = time.Now()
		}
		if time.Since(v.healthySince) >= stable {
			return true
		}
	} else {
		v.healthySince = time.Time{}
	}
	if !v.read || len(v.h.FailingPods) == 0 {
		v.failingSince = time.Time{}
		return false
	}
	if v.failingSince.IsZero() {
		v.failingSince = time.Now()
	}
	if d := time.Since(v.failingSince); d >= failAfter {
		v.h.Message = fmt.Sprintf("pods of the new revision kept failing for %s: %s", d.Round(time.Second), v.h.Message)
		return true
	}
	return false
}

// waitForChange waits for the next tick, an event of the watch w or the
// end of ctx. It returns the watch, or nil once the watch closed.
func waitForChange(ctx context.Context, tick *time.Ticker, w watch.Interface) watch.Interface {
	var wake <-chan watch.Event
	if w != nil {
		wake = w.ResultChan()
	}
	select {
	case <-ctx.Done():
	case <-tick.C:
	case _, open := <-wake:
		if !open {
			w.Stop()
			return nil
		}
	}
	return w
}

// cutShort is the verdict when the deadline passed (or the executor is
// shutting down: ctx ended) before the verdict settled.
func (s *Service) cutShort(ctx context.Context, h Health) Health {
	if h.Healthy {
		h.Healthy = false
		h.Message = "healthy, but not for " + s.cfg.VerifyStable.String() + " before the deadline"
	}
	if ctx.Err() != nil {
		h.Message = "verification interrupted (executor shutting down): " + h.Message
	} else {
		h.Message = fmt.Sprintf("not healthy after %s: %s", s.cfg.VerifyTimeout, h.Message)
	}
	return h
}

// recordVerification turns the verdict into the plan's Verification (at
// most maxVerificationPods failing pods named), counts and logs it, and
// records it in the audit trail.
func (s *Service) recordVerification(ctx context.Context, log *slog.Logger, p events.Plan, ref events.ObjectRef, h Health, start time.Time) events.Verification {
	failing := h.FailingPods
	if len(failing) > maxVerificationPods {
		failing = append(failing[:maxVerificationPods:maxVerificationPods], fmt.Sprintf("and %d more", len(h.FailingPods)-maxVerificationPods))
	}
	v := events.Verification{PlanID: p.ID, Digest: p.Digest, Healthy: h.Healthy, DesiredReplicas: h.Desired,
		ReadyReplicas: h.Ready, UpdatedReplicas: h.Updated, FailingPods: failing, Message: h.Message, CheckedAt: s.now().UTC()}
	took := time.Since(start)
	kind, result := events.AuditVerified, "healthy"
	if !v.Healthy {
		kind, result = events.AuditVerificationFailed, "unhealthy"
	}
	s.metrics.verifyDuration.WithLabelValues(result).Observe(took.Seconds())
	log.Info("verification finished", slog.Bool("healthy", v.Healthy), slog.String("detail", v.Message), slog.Duration("took", took))
	s.audit(ctx, auditEntry{Kind: kind, PlanID: p.ID, Digest: p.Digest,
		Message: fmt.Sprintf("%s %s after %s: %s", ref, result, took.Round(100*time.Millisecond), v.Message), Data: v})
	return v
}

// watchTarget opens a watch on the target object alone; its events only
// wake the verification loop up early. nil when the watch cannot be
// opened (the loop then polls).
func (s *Service) watchTarget(ctx context.Context, ref events.ObjectRef) watch.Interface {
	o := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", ref.Name).String()}
	var w watch.Interface
	var err error
	switch ref.Kind {
	case kindDeployment:
		w, err = s.kube.AppsV1().Deployments(ref.Namespace).Watch(ctx, o)
	case kindStatefulSet:
		w, err = s.kube.AppsV1().StatefulSets(ref.Namespace).Watch(ctx, o)
	case kindDaemonSet:
		w, err = s.kube.AppsV1().DaemonSets(ref.Namespace).Watch(ctx, o)
	case kindReplicaSet:
		w, err = s.kube.AppsV1().ReplicaSets(ref.Namespace).Watch(ctx, o)
	case kindPod:
		w, err = s.kube.CoreV1().Pods(ref.Namespace).Watch(ctx, o)
	case kindService:
		// Its EndpointSlices change, not the Service: wake on those.
		w, err = s.kube.DiscoveryV1().EndpointSlices(ref.Namespace).Watch(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + ref.Name})
	default:
		return nil
	}
	if err != nil {
		s.log.Debug("watch target", slog.String("target", ref.String()), slog.Any("error", err))
		return nil
	}
	return w
}

// checkHealth reads the target and what its health depends on, and
// computes its health with the pure functions of health.go.
func (s *Service) checkHealth(ctx context.Context, ref events.ObjectRef, deleted map[string]string) (Health, error) {
	var h Health
	switch ref.Kind {
	case kindPod:
		if len(deleted) > 0 {
			break // the plan deleted pods: PodsGone below is the check
		}
		pod, err := s.kube.CoreV1().Pods(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return Health{Message: "pod " + ref.Name + " not found"}, nil
		}
		if err != nil {
			return h, err
		}
		h = PodHealth(pod)
	case kindDeployment:
		dep, err := s.kube.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return h, err
		}
		sel, err := podSelector(dep)
		if err != nil {
			return h, err
		}
		rss, err := s.kube.AppsV1().ReplicaSets(ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return h, err
		}
		pods, err := s.kube.CoreV1().Pods(ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return h, err
		}
		h = DeploymentHealth(dep, rss.Items, pods.Items)
	case kindStatefulSet:
		sts, err := s.kube.AppsV1().StatefulSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return h, err
		}
		pods, err := s.selectedPods(ctx, sts)
		if err != nil {
			return h, err
		}
		h = StatefulSetHealth(sts, pods)
	case kindDaemonSet:
		ds, err := s.kube.AppsV1().DaemonSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return h, err
		}
		rev, err := s.daemonSetRevision(ctx, ds)
		if err != nil {
			return h, err
		}
		pods, err := s.selectedPods(ctx, ds)
		if err != nil {
			return h, err
		}
		h = DaemonSetHealth(ds, rev, pods)
	case kindService:
		return s.serviceHealth(ctx, ref.Namespace, ref.Name)
	default:
		return Health{Message: fmt.Sprintf("no health check for kind %s: verify by hand", ref.Kind)}, nil
	}
	if len(deleted) == 0 {
		return h, nil
	}
	pods, err := s.kube.CoreV1().Pods(ref.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return h, err
	}
	gone := PodsGone(deleted, pods.Items)
	if ref.Kind == kindPod {
		return gone, nil
	}
	if !gone.Healthy {
		h.Healthy = false
		h.Message = strings.TrimPrefix(h.Message+"; "+gone.Message, "healthy; ")
	}
	return h, nil
}

func (s *Service) selectedPods(ctx context.Context, obj metav1.Object) ([]corev1.Pod, error) {
	sel, err := podSelector(obj)
	if err != nil {
		return nil, err
	}
	pods, err := s.kube.CoreV1().Pods(obj.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	return pods.Items, nil
}

// daemonSetRevision is the controller-revision-hash of ds's newest
// ControllerRevision ("" when it has none yet).
func (s *Service) daemonSetRevision(ctx context.Context, ds *appsv1.DaemonSet) (string, error) {
	sel, err := podSelector(ds)
	if err != nil {
		return "", err
	}
	revs, err := s.kube.AppsV1().ControllerRevisions(ds.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return "", err
	}
	var newest *appsv1.ControllerRevision
	for i := range revs.Items {
		r := &revs.Items[i]
		if ownedBy(r, string(ds.UID)) && (newest == nil || r.Revision > newest.Revision) {
			newest = r
		}
	}
	if newest == nil {
		return "", nil
	}
	return newest.Labels[labelControllerRevisionHash], nil
}
