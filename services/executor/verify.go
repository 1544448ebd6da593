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
	var h Health
	var read bool // h is a real reading
	var healthySince, failingSince time.Time
	for {
		if w == nil {
			w = s.watchTarget(vctx, ref) // nil: fall back to the ticker
		}
		// A failed read (the API server busy, the deadline cutting a
		// request short) keeps the last verdict: an error says nothing
		// about the workload.
		cur, err := s.checkHealth(vctx, ref, deleted)
		switch {
		case err == nil:
			h, read = cur, true
		case !read:
			h = Health{Message: "read workload: " + apiSummary(err)}
		default:
			s.log.Debug("verify: read workload", slog.String("plan", p.ID), slog.Any("error", err))
		}
		if h.Healthy {
			if healthySince.IsZero() {
				healthySince = time.Now()
			}
			if time.Since(healthySince) >= s.cfg.VerifyStable {
				break
			}
		} else {
			healthySince = time.Time{}
		}
		// Pods of the new revision failing without a break for
		// VerifyFailAfter: the change did not fix it; say so now.
		if read && len(h.FailingPods) > 0 {
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if d := time.Since(failingSince); d >= s.cfg.VerifyFailAfter {
				h.Message = fmt.Sprintf("pods of the new revision kept failing for %s: %s", d.Round(time.Second), h.Message)
				break
			}
		} else {
			failingSince = time.Time{}
		}
		var wake <-chan watch.Event
		if w != nil {
			wake = w.ResultChan()
		}
		select {
		case <-vctx.Done():
		case <-tick.C:
		case _, open := <-wake:
			if !open {
				w.Stop()
				w = nil
			}
		}
		if vctx.Err() != nil {
			if h.Healthy {
				h.Healthy = false
				h.Message = "healthy, but not for " + s.cfg.VerifyStable.String() + " before the deadline"
			}
			if ctx.Err() != nil {
				h.Message = "verification interrupted (executor shutting down): " + h.Message
			} else {
				h.Message = fmt.Sprintf("not healthy after %s: %s", s.cfg.VerifyTimeout, h.Message)
			}
			break
		}
	}

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
