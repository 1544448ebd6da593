package watcher

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// HorizontalPodAutoscalers (autoscaling/v2) that cannot compute their
// replica count, or that have wanted more replicas than their maximum for
// long: reported on the HPA, the object that names the metric, the target
// and the bounds. The HPA controller says both in its conditions
// (ScalingActive, AbleToScale, ScalingLimited); the watcher only reads
// them. A target scaled to zero on purpose (ScalingDisabled) is not an
// incident.

// Reason classes of the HPA issue types.
const (
	reasonMissingRequest        = "missing_request"
	reasonMetricsAPIUnavailable = "metrics_api_unavailable"
	reasonMetricUnavailable     = "metric_unavailable"
	reasonInvalidMetric         = "invalid_metric"
	reasonInvalidTarget         = "invalid_target"
	reasonAtMaxReplicas         = "at_max_replicas"
	kindHPA                     = "HorizontalPodAutoscaler"
)

// Defaults of HPAOptions.
const (
	DefaultHPAGrace      = 5 * time.Minute
	DefaultHPAAtMaxAfter = 30 * time.Minute
)

// hpaTypes are the issue types ClassifyHPA reports.
var hpaTypes = map[events.IssueType]bool{events.IssueHPAMetricsUnavailable: true, events.IssueHPAAtMaxReplicas: true}

// HPAOptions tune HPA detection.
type HPAOptions struct {
	// Grace is how long an HPA may be unable to compute its replica
	// count before it is reported (watcher.hpa_grace): a metrics server
	// or new pods starting up.
	Grace time.Duration
	// AtMaxAfter is how long an HPA may want more replicas than its
	// maxReplicas before it is reported (watcher.hpa_at_max_after): a
	// peak that passes is what maxReplicas is for.
	AtMaxAfter time.Duration
}

func (o HPAOptions) withDefaults() HPAOptions {
	o.Grace = cmp.Or(o.Grace, DefaultHPAGrace)
	o.AtMaxAfter = cmp.Or(o.AtMaxAfter, DefaultHPAAtMaxAfter)
	return o
}

// HPA condition reasons the classifier reads (kube-controller-manager's
// horizontal pod autoscaler).
const (
	hpaReasonScalingDisabled = "ScalingDisabled"
	hpaReasonTooManyReplicas = "TooManyReplicas"
)

// ClassifyHPA says what is wrong with an HPA at time now, and when to
// look again while a grace runs (zero for never). It is a pure function
// of its arguments.
func ClassifyHPA(h *autoscalingv2.HorizontalPodAutoscaler, now time.Time, o HPAOptions) ([]ControllerIssue, time.Time) {
	if h == nil || h.DeletionTimestamp != nil {
		return nil, time.Time{}
	}
	o = o.withDefaults()
	var out []ControllerIssue
	var recheck time.Time
	due := func(c *autoscalingv2.HorizontalPodAutoscalerCondition, grace time.Duration) bool {
		since := c.LastTransitionTime.Time
		if since.IsZero() {
			since = h.CreationTimestamp.Time
		}
		if at := since.Add(grace); now.Before(at) {
			recheck = earliest(recheck, at)
			return false
		}
		return true
	}
	target := strings.ToLower(h.Spec.ScaleTargetRef.Kind) + "/" + h.Spec.ScaleTargetRef.Name
	if c := failedCondition(h); c != nil && due(c, o.Grace) {
		out = append(out, ControllerIssue{Type: events.IssueHPAMetricsUnavailable, Reason: hpaMetricReason(c),
			Message: fmt.Sprintf("horizontalpodautoscaler %s cannot compute the replica count of %s since %s (%s): %s; it keeps %s",
				h.Name, target, sinceText(c.LastTransitionTime.Time), c.Reason, cmp.Or(c.Message, "no message"),
				plural(int(h.Status.CurrentReplicas), "replica"))})
	}
	if c := hpaCondition(h, autoscalingv2.ScalingLimited); c != nil && c.Status == corev1.ConditionTrue &&
		c.Reason == hpaReasonTooManyReplicas && due(c, o.AtMaxAfter) {
		out = append(out, ControllerIssue{Type: events.IssueHPAAtMaxReplicas, Reason: reasonAtMaxReplicas,
			PodCount: int(h.Status.CurrentReplicas), Warning: atMaxEvidence(h, c, now),
			Message: fmt.Sprintf("horizontalpodautoscaler %s has wanted more than its maxReplicas %d for %s since %s (%s): %s; %s runs %s",
				h.Name, h.Spec.MaxReplicas, target, sinceText(c.LastTransitionTime.Time), c.Reason, cmp.Or(c.Message, "no message"),
				target, plural(int(h.Status.CurrentReplicas), "replica"))})
	}
	return out, recheck
}

// atMaxEvidence is an HPA's current replicas against its maximum, over
// the time it has wanted more (its desired replicas are capped at the
// maximum: the controller does not say how many more it wants).
func atMaxEvidence(h *autoscalingv2.HorizontalPodAutoscaler, c *autoscalingv2.HorizontalPodAutoscalerCondition, now time.Time) *events.WarningEvidence {
	var window int64
	if !c.LastTransitionTime.IsZero() && now.After(c.LastTransitionTime.Time) {
		window = int64(now.Sub(c.LastTransitionTime.Time) / time.Second)
	}
	return &events.WarningEvidence{Measurements: []events.Measurement{
		{Name: "current_replicas", Value: float64(h.Status.CurrentReplicas), Limit: float64(h.Spec.MaxReplicas), Unit: events.UnitCount, WindowSeconds: window},
	}}
}

// failedCondition is the condition that says the HPA cannot compute its
// replica count: AbleToScale False (its target's scale cannot be read),
// else ScalingActive False, unless scaling is disabled on purpose (the
// target scaled to zero).
func failedCondition(h *autoscalingv2.HorizontalPodAutoscaler) *autoscalingv2.HorizontalPodAutoscalerCondition {
	if c := hpaCondition(h, autoscalingv2.AbleToScale); c != nil && c.Status == corev1.ConditionFalse && strings.HasPrefix(c.Reason, "Failed") {
		return c
	}
	if c := hpaCondition(h, autoscalingv2.ScalingActive); c != nil && c.Status == corev1.ConditionFalse && c.Reason != hpaReasonScalingDisabled {
		return c
	}
	return nil
}

// hpaMetricReason classes a failed condition by its reason and message.
func hpaMetricReason(c *autoscalingv2.HorizontalPodAutoscalerCondition) string {
	m := strings.ToLower(c.Message)
	switch {
	case strings.Contains(m, "missing request for"):
		return reasonMissingRequest
	case c.Reason == "InvalidSelector" || c.Reason == "FailedGetScale" || c.Reason == "FailedUpdateScale" ||
		c.Reason == "AmbiguousSelector": // another HPA scales the same pods
		return reasonInvalidTarget
	case c.Reason == "InvalidMetricSourceType":
		return reasonInvalidMetric
	case strings.Contains(m, "unable to fetch metrics from") && containsAny(m,
		"could not find the requested resource", "currently unable to handle the request", "service unavailable",
		"no such host", "connection refused", "no custom metrics api"):
		return reasonMetricsAPIUnavailable
	}
	return reasonMetricUnavailable
}

func hpaCondition(h *autoscalingv2.HorizontalPodAutoscaler, t autoscalingv2.HorizontalPodAutoscalerConditionType) *autoscalingv2.HorizontalPodAutoscalerCondition {
	for i := range h.Status.Conditions {
		if h.Status.Conditions[i].Type == t {
			return &h.Status.Conditions[i]
		}
	}
	return nil
}

// hpaFailing reports an HPA that has, or may get by time alone, an HPA
// issue.
func hpaFailing(h *autoscalingv2.HorizontalPodAutoscaler) bool {
	if h == nil {
		return false
	}
	if failedCondition(h) != nil {
		return true
	}
	c := hpaCondition(h, autoscalingv2.ScalingLimited)
	return c != nil && c.Status == corev1.ConditionTrue && c.Reason == hpaReasonTooManyReplicas
}

// hpaChanged evaluates an HPA that is failing, was, or has incidents.
func (s *Service) hpaChanged(oldObj, obj any) {
	m := objectOf(obj)
	h, _ := m.(*autoscalingv2.HorizontalPodAutoscaler)
	if h == nil || !s.filter.watched(h.Namespace) {
		return
	}
	k := ownerKey{Namespace: h.Namespace, Kind: kindHPA, Name: h.Name}
	old, _ := objectOf(oldObj).(*autoscalingv2.HorizontalPodAutoscaler)
	switch {
	case h.DeletionTimestamp == nil && hpaFailing(h):
		s.enqueueFailing(k)
	case old != nil && hpaFailing(old) || s.tracker.Has(k):
		s.queue.AddAfter(k, s.cfg.Debounce)
	}
}

// hpaObs classifies HPA k from the cache.
func (s *Service) hpaObs(k ownerKey, now time.Time) ([]ctrlObs, time.Time) {
	h := get[autoscalingv2.HorizontalPodAutoscaler](s.nodes.hpas, k.Namespace, k.Name)
	if h == nil {
		return nil, time.Time{}
	}
	issues, recheck := ClassifyHPA(h, now, s.cfg.HPAs)
	if len(issues) == 0 {
		return nil, recheck
	}
	ref := events.ObjectRef{Kind: kindHPA, APIVersion: "autoscaling/v2", Namespace: h.Namespace, Name: h.Name, UID: string(h.UID)}
	return []ctrlObs{{Chain: []events.ObjectRef{ref}, Issues: issues}}, recheck
}

// trimHPA keeps what ClassifyHPA reads: the target, the bounds, the
// replica counts and the conditions.
func trimHPA(o *autoscalingv2.HorizontalPodAutoscaler) *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{TypeMeta: o.TypeMeta, ObjectMeta: trimMeta(o.ObjectMeta),
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{ScaleTargetRef: o.Spec.ScaleTargetRef, MinReplicas: o.Spec.MinReplicas,
			MaxReplicas: o.Spec.MaxReplicas},
		Status: autoscalingv2.HorizontalPodAutoscalerStatus{CurrentReplicas: o.Status.CurrentReplicas,
			DesiredReplicas: o.Status.DesiredReplicas, Conditions: o.Status.Conditions}}
}

// nodeWatch is the watcher's view of Nodes (only for a watcher of the
// whole cluster: a namespaced one may not read them) and
// HorizontalPodAutoscalers, trimmed to what their classifiers read.
// Optional, like the Ingress and storage informers: a watcher that may
// not read them detects everything else.
type nodeWatch struct {
	factory informers.SharedInformerFactory
	hpas    cache.SharedIndexInformer
	nodes   cache.SharedIndexInformer // nil for a namespaced watcher
}

// synced are the informers' HasSynced, for a bounded wait at start-up.
func (w *nodeWatch) synced() []cache.InformerSynced {
	out := []cache.InformerSynced{w.hpas.HasSynced}
	if w.nodes != nil {
		out = append(out, w.nodes.HasSynced)
	}
	return out
}

// nodeTransform trims Nodes and HPAs (managedFields go from anything
// else, as transform does).
func nodeTransform(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Node:
		return trimNode(o), nil
	case *autoscalingv2.HorizontalPodAutoscaler:
		return trimHPA(o), nil
	}
	return transform(obj)
}

// watchNodesAndHPAs builds the optional informers and evaluates HPAs,
// and nodes when they are watched, on their changes.
func (s *Service) watchNodesAndHPAs(cs kubernetes.Interface) error {
	opts := []informers.SharedInformerOption{informers.WithTransform(nodeTransform)}
	if s.cfg.Namespace != "" {
		opts = append(opts, informers.WithNamespace(s.cfg.Namespace))
	}
	f := informers.NewSharedInformerFactoryWithOptions(cs, s.cfg.ResyncPeriod, opts...)
	s.nodes = &nodeWatch{factory: f, hpas: f.Autoscaling().V2().HorizontalPodAutoscalers().Informer()}
	if s.cfg.Namespace == "" {
		s.nodes.nodes = f.Core().V1().Nodes().Informer()
	}
	if _, err := s.nodes.hpas.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.hpaChanged(nil, obj) },
		UpdateFunc: s.hpaChanged,
		DeleteFunc: func(obj any) { s.hpaChanged(nil, obj) },
	}); err != nil {
		return fmt.Errorf("watcher: HorizontalPodAutoscaler handler: %w", err)
	}
	if s.nodes.nodes == nil {
		return nil
	}
	if _, err := s.nodes.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.nodeChanged(nil, obj) },
		UpdateFunc: s.nodeChanged,
		DeleteFunc: s.nodeDeleted,
	}); err != nil {
		return fmt.Errorf("watcher: node handler: %w", err)
	}
	return nil
}
