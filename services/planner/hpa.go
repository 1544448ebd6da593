package planner

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HorizontalPodAutoscaler incidents (HPAMetricsUnavailable,
// HPAAtMaxReplicas), reported on the HPA: the plans are diagnostic by
// design. The fixes are capacity decisions: the CPU request a container
// needs (no metric says it while the HPA cannot compute one), the most
// replicas a workload may use, a metrics server to install. The
// executor's set_resource_requests replaces a request a container has;
// it does not add one a container lacks, and kaar never changes an HPA.

// KindHPA is the owner kind of HPA incidents.
const KindHPA = "HorizontalPodAutoscaler"

// Reasons of the HPA issue types, as the watcher classifies them.
const (
	hpaReasonMissingRequest        = "missing_request"
	hpaReasonMetricsAPIUnavailable = "metrics_api_unavailable"
	hpaReasonInvalidTarget         = "invalid_target"
)

// hpaRead is what the planner read about an HPA's target.
type hpaRead struct {
	HPA *autoscalingv2.HorizontalPodAutoscaler
	// Target is the workload the HPA scales, nil when it cannot be read.
	Target *workload
	// Missing are the target's containers without a request for a
	// resource the HPA scales on by utilization: "container app has no
	// cpu request".
	Missing []string
	// Errs say what could not be read: evidence too.
	Errs []string
}

// hpa reads the HPA's target and which of its containers lack the
// requests its resource metrics need. Read failures are evidence.
func (r reader) hpa(ctx context.Context, in planInput) *hpaRead {
	h, _ := in.Owner.Object.(*autoscalingv2.HorizontalPodAutoscaler)
	if h == nil {
		return nil
	}
	hr := &hpaRead{HPA: h}
	ref := h.Spec.ScaleTargetRef
	obj, err := r.getOwner(ctx, events.ObjectRef{Kind: ref.Kind, Namespace: h.Namespace, Name: ref.Name})
	if err != nil {
		hr.Errs = append(hr.Errs, readErr(fmt.Sprintf("scale target %s/%s", strings.ToLower(ref.Kind), ref.Name), err))
		return hr
	}
	if hr.Target, err = workloadOf(obj); err != nil {
		hr.Errs = append(hr.Errs, err.Error())
		return hr
	}
	hr.Missing = missingRequests(h, hr.Target)
	return hr
}

// utilizationResources are the resources an HPA scales on as a
// percentage of the pods' requests (Resource and ContainerResource
// metrics of type Utilization), with the container a ContainerResource
// metric names.
func utilizationResources(h *autoscalingv2.HorizontalPodAutoscaler) map[corev1.ResourceName]string {
	out := map[corev1.ResourceName]string{}
	for _, m := range h.Spec.Metrics {
		switch {
		case m.Resource != nil && m.Resource.Target.Type == autoscalingv2.UtilizationMetricType:
			out[m.Resource.Name] = ""
		case m.ContainerResource != nil && m.ContainerResource.Target.Type == autoscalingv2.UtilizationMetricType:
			out[m.ContainerResource.Name] = m.ContainerResource.Container
		}
	}
	return out
}

// missingRequests lists the target's containers that lack a request for
// a resource the HPA computes utilization of.
func missingRequests(h *autoscalingv2.HorizontalPodAutoscaler, w *workload) []string {
	if w == nil || w.Spec == nil {
		return nil
	}
	var out []string
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		only, ok := utilizationResources(h)[res]
		if !ok {
			continue
		}
		for _, c := range w.Spec.Containers {
			if only != "" && c.Name != only {
				continue
			}
			if _, has := c.Resources.Requests[res]; !has {
				out = append(out, fmt.Sprintf("container %s has no %s request", c.Name, res))
			}
		}
	}
	return out
}

// hpaSteps say why the HPA does not scale and what a person changes.
func hpaSteps(in planInput, b *builder, step stepFunc) []events.Step {
	h, _ := in.Owner.Object.(*autoscalingv2.HorizontalPodAutoscaler)
	ref := in.Owner.ref()
	describe := b.onOwner(step(fmt.Sprintf("Read %s: its metrics with their current values and targets, its conditions and events", ref), "describe", "hpa", in.Owner.Ref.Name))
	if h == nil {
		return []events.Step{describe}
	}
	target := strings.ToLower(h.Spec.ScaleTargetRef.Kind) + "/" + h.Spec.ScaleTargetRef.Name
	var hr *hpaRead
	if in.HPA != nil {
		hr = in.HPA
	}
	var out []events.Step
	missingStep := func() {
		if hr == nil || len(hr.Missing) == 0 || hr.Target == nil {
			return
		}
		first := strings.Fields(hr.Missing[0])
		out = append(out, b.onOwner(step(fmt.Sprintf("In %s, %s: the HPA computes utilization as a percentage of the request, so it cannot scale on it. Set the requests by hand to what the containers need (kaar does not choose a request: no metric says it while the HPA has none)",
			target, strings.Join(hr.Missing, ", ")),
			"set", "resources", target, "-c", first[1], "--requests="+first[4]+"=<request>")))
	}
	switch in.Incident.Type {
	case events.IssueHPAMetricsUnavailable:
		c := failedHPACondition(h)
		out = append(out, b.onOwner(step(quote(fmt.Sprintf("%s cannot compute the replica count of %s since %s (%s): %s; it keeps %s at %s",
			ref, target, fmtTime(c.LastTransitionTime.Time), c.Reason, c.Message, target, plural(int(h.Status.CurrentReplicas), "replica"))),
			"describe", "hpa", h.Name)))
		switch in.Incident.Reason {
		case hpaReasonMetricsAPIUnavailable:
			apis := step("The metrics API it reads is not served: install or repair metrics-server (resource metrics), or the adapter of custom or external metrics; its APIService must be Available")
			apis.Kubectl = clusterCommand("get", "apiservices", "v1beta1.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io")
			out = append(out, b.onOwner(apis))
			missingStep()
		case hpaReasonMissingRequest:
			missingStep()
			if hr == nil || len(hr.Missing) == 0 {
				out = append(out, b.onOwner(step(fmt.Sprintf("A container of %s's pods has no request for the resource the HPA scales on: set it in the pod template", target), "get", strings.ToLower(h.Spec.ScaleTargetRef.Kind), h.Spec.ScaleTargetRef.Name, "-o", "jsonpath={.spec.template.spec.containers[*].resources}")))
			}
		case hpaReasonInvalidTarget:
			out = append(out, b.onOwner(step(fmt.Sprintf("Its target %s cannot be read or scaled: check that it exists and that scaleTargetRef names it (kind, name, apiVersion)", target),
				"get", strings.ToLower(h.Spec.ScaleTargetRef.Kind), h.Spec.ScaleTargetRef.Name)))
		default:
			out = append(out, b.onOwner(step("A metric it scales on cannot be read: check the metric's name and selector against what the metrics adapter serves", "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta1")))
			missingStep()
		}
	case events.IssueHPAAtMaxReplicas:
		c := hpaConditionOf(h, autoscalingv2.ScalingLimited)
		since := metav1.Time{}
		msg := ""
		if c != nil {
			since, msg = c.LastTransitionTime, c.Message
		}
		out = append(out, b.onOwner(step(quote(fmt.Sprintf("%s has wanted more than its maxReplicas %d since %s (%s); %s runs %s",
			ref, h.Spec.MaxReplicas, fmtTime(since.Time), msg, target, plural(int(h.Status.CurrentReplicas), "replica"))), "describe", "hpa", h.Name)))
		out = append(out, b.onOwner(step(fmt.Sprintf("Check whether the load is real and lasting (the current metric against its target above), and whether the cluster has room: Pending pods of %s would say it does not", target),
			"get", "pods", "-o", "wide")))
		out = append(out, b.onOwner(step(fmt.Sprintf("Then, by hand: raise maxReplicas of %s if the cluster can take more, or make each replica handle more (its requests, the application's performance). kaar does not change HPAs", ref),
			"patch", "hpa", h.Name, "--type=merge", "-p", fmt.Sprintf(`{"spec":{"maxReplicas":%d}}`, h.Spec.MaxReplicas*2))))
	}
	return append(out, describe)
}

// failedHPACondition is the condition that says the HPA cannot compute
// its replica count (AbleToScale, else ScalingActive), never nil.
func failedHPACondition(h *autoscalingv2.HorizontalPodAutoscaler) autoscalingv2.HorizontalPodAutoscalerCondition {
	if c := hpaConditionOf(h, autoscalingv2.AbleToScale); c != nil && c.Status == corev1.ConditionFalse {
		return *c
	}
	if c := hpaConditionOf(h, autoscalingv2.ScalingActive); c != nil {
		return *c
	}
	return autoscalingv2.HorizontalPodAutoscalerCondition{Reason: "unknown", Message: "no condition reported"}
}

func hpaConditionOf(h *autoscalingv2.HorizontalPodAutoscaler, t autoscalingv2.HorizontalPodAutoscalerConditionType) *autoscalingv2.HorizontalPodAutoscalerCondition {
	for i := range h.Status.Conditions {
		if h.Status.Conditions[i].Type == t {
			return &h.Status.Conditions[i]
		}
	}
	return nil
}

// metricString is "cpu utilization 50%" or "requests_per_second average
// value 10".
func metricString(m autoscalingv2.MetricSpec) string {
	target := func(t autoscalingv2.MetricTarget) string {
		switch {
		case t.AverageUtilization != nil:
			return fmt.Sprintf("utilization %d%%", *t.AverageUtilization)
		case t.AverageValue != nil:
			return "average value " + t.AverageValue.String()
		case t.Value != nil:
			return "value " + t.Value.String()
		}
		return string(t.Type)
	}
	switch {
	case m.Resource != nil:
		return fmt.Sprintf("%s %s", m.Resource.Name, target(m.Resource.Target))
	case m.ContainerResource != nil:
		return fmt.Sprintf("%s of container %s %s", m.ContainerResource.Name, m.ContainerResource.Container, target(m.ContainerResource.Target))
	case m.Pods != nil:
		return fmt.Sprintf("pods metric %s %s", m.Pods.Metric.Name, target(m.Pods.Target))
	case m.Object != nil:
		return fmt.Sprintf("object metric %s of %s/%s %s", m.Object.Metric.Name, strings.ToLower(m.Object.DescribedObject.Kind), m.Object.DescribedObject.Name, target(m.Object.Target))
	case m.External != nil:
		return fmt.Sprintf("external metric %s %s", m.External.Metric.Name, target(m.External.Target))
	}
	return string(m.Type)
}

// hpaEvidence quotes the HPA's bounds, metrics and conditions, and the
// target's requests.
func hpaEvidence(in planInput) events.Evidence {
	hr := in.HPA
	h := hr.HPA
	target := strings.ToLower(h.Spec.ScaleTargetRef.Kind) + "/" + h.Spec.ScaleTargetRef.Name
	lines := []string{quote(fmt.Sprintf("horizontalpodautoscaler/%s scales %s between %d and %d replicas; current %d, desired %d",
		h.Name, target, derefOr(h.Spec.MinReplicas, 1), h.Spec.MaxReplicas, h.Status.CurrentReplicas, h.Status.DesiredReplicas))}
	for _, m := range h.Spec.Metrics {
		lines = append(lines, quote("metric "+metricString(m)))
	}
	for _, c := range h.Status.Conditions {
		lines = append(lines, conditionLine("", string(c.Type), string(c.Status), c.Reason, c.Message, c.LastTransitionTime))
	}
	if hr.Target != nil && hr.Target.Spec != nil {
		for _, c := range hr.Target.Spec.Containers {
			req := "none"
			if len(c.Resources.Requests) > 0 {
				var parts []string
				for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if q, ok := c.Resources.Requests[res]; ok {
						parts = append(parts, string(res)+"="+q.String())
					}
				}
				req = orNone(parts)
			}
			lines = append(lines, quote(fmt.Sprintf("%s container %s requests %s", target, c.Name, req)))
		}
	}
	for _, e := range hr.Errs {
		lines = append(lines, quote(e))
	}
	data := map[string]string{"hpa": h.Name, "target": target, "max_replicas": strconv.Itoa(int(h.Spec.MaxReplicas)),
		"current_replicas": strconv.Itoa(int(h.Status.CurrentReplicas)), "missing_requests": strconv.Itoa(len(hr.Missing))}
	return events.Evidence{Kind: events.EvidenceConditions, Title: fmt.Sprintf("What horizontalpodautoscaler/%s scales and why it does not", h.Name),
		Source: "horizontalpodautoscaler " + h.Name + ", its scale target " + target, Lines: lines, Data: data}
}
