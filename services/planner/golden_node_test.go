package planner

import (
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Plans of node and HPA incidents: diagnostic by design, with the node's
// conditions, taints and pods, or the HPA's metrics, conditions and its
// target's requests, as evidence.
func init() { planCases = append(planCases, nodeCases...) }

var diag3 = []events.ActionType{events.ActionDiagnostic, events.ActionDiagnostic, events.ActionDiagnostic}

var nodeCases = []planCase{
	{name: "node-not-ready-diagnostic", id: 80, workload: "node:not_ready", typ: events.IssueNodeNotReady,
		expect: expect{actions: append(diag3, events.ActionDiagnostic, events.ActionDiagnostic), diagnosticOnly: true, risk: events.RiskNone,
			notes:   []string{"kaar never cordons, drains, uncordons or deletes nodes"},
			summary: []string{"NodeNotReady in node/kwok-node-3 (not ready, 3 pods)"},
			fields: []fieldCheck{
				eq("/target/kind", "Node"), eq("/namespace", events.ClusterScopeNamespace), absent("/target/namespace"),
				has("/steps/0/title", "Node kwok-node-3 is NotReady since 2026-11-27T00:40:00Z: KubeletNotReady: container runtime network not ready"),
				eq("/steps/0/kubectl", "kubectl describe node kwok-node-3"), eq("/steps/0/target/kind", "Node"),
				has("/steps/1/title", "reports itself not ready"),
				has("/steps/2/title", "Affected: 3 pods on it (1 of DaemonSets), 1 evicted from it"),
				eq("/steps/2/kubectl", "kubectl get pods --all-namespaces --field-selector spec.nodeName=kwok-node-3 -o wide"),
				eq("/steps/3/kubectl", "kubectl cordon kwok-node-3"), has("/steps/3/title", "kaar never cordons, drains or deletes nodes"),
				eq("/evidence/0/kind", "conditions"), eq("/evidence/0/data/ready", "False"), eq("/evidence/0/data/pods", "3"),
				eq("/evidence/0/data/evicted_pods", "1"),
				has("/evidence/0/lines/1", "condition Ready=False KubeletNotReady (since 2026-11-27T00:40:00Z)"),
				has("/evidence/0/lines/4", "taint node.kubernetes.io/not-ready:NoSchedule"),
				has("/evidence/0/lines/6", "apps replicaset/web-7d9c: 2 pods, 1 evicted"),
				has("/evidence/0/lines/7", "kube-system daemonset/proxy: 1 pod"),
			}}},
	{name: "node-unreachable-diagnostic", id: 81, workload: "node:node_unreachable", typ: events.IssueNodeNotReady,
		expect: expect{actions: append(diag3, events.ActionDiagnostic, events.ActionDiagnostic), diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", "is unreachable (Ready Unknown)"), has("/steps/1/title", "stopped posting its status"),
				eq("/steps/1/kubectl", "kubectl get lease -n kube-node-lease kwok-node-3 -o 'jsonpath={.spec.renewTime}'"),
			}}},
	{name: "node-memory-pressure-diagnostic", id: 82, workload: "node:memory_pressure", typ: events.IssueNodePressure,
		expect: expect{actions: append(diag3, events.ActionDiagnostic), diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", "Node kwok-node-3 is under memory pressure since 2026-11-27T00:40:00Z: KubeletHasInsufficientMemory"),
				has("/steps/1/title", "The kubelet evicts pods"), eq("/steps/2/kubectl", "kubectl top pods --all-namespaces --sort-by=memory"),
			}}},
	{name: "node-cordoned-too-long-diagnostic", id: 83, workload: "node:cordoned_too_long", typ: events.IssueNodeCordoned,
		expect: expect{actions: append(diag3, events.ActionDiagnostic, events.ActionDiagnostic), diagnosticOnly: true,
			summary: []string{"NodeCordoned in node/kwok-node-3 (cordoned too long, 3 pods)"},
			fields: []fieldCheck{
				has("/steps/0/title", "Node kwok-node-3 is cordoned (spec.unschedulable) since 2026-11-27T00:40:00Z"),
				has("/steps/1/title", "a drain did not finish or never started"),
				eq("/steps/2/kubectl", "kubectl get pods --all-namespaces --field-selector status.phase=Pending"),
				eq("/steps/3/kubectl", "kubectl uncordon kwok-node-3"), has("/steps/3/title", "kaar never uncordons"),
				eq("/evidence/0/data/unschedulable", "true"),
			}}},
	{name: "hpa-metrics-api-unavailable-diagnostic", id: 84, workload: "hpa:metrics_api_unavailable", typ: events.IssueHPAMetricsUnavailable,
		expect: expect{actions: append(diag3, events.ActionDiagnostic), diagnosticOnly: true,
			notes:   []string{"kaar does not change HorizontalPodAutoscalers or choose requests"},
			summary: []string{"HPAMetricsUnavailable in horizontalpodautoscaler/web (metrics api unavailable)"},
			fields: []fieldCheck{
				eq("/target/kind", "HorizontalPodAutoscaler"), eq("/namespace", "apps"),
				has("/steps/0/title", "cannot compute the replica count of deployment/web since 2026-11-27T00:40:00Z (FailedGetResourceMetric): the HPA was unable to compute the replica count"),
				eq("/steps/0/kubectl", "kubectl -n apps describe hpa web"),
				has("/steps/1/title", "The metrics API it reads is not served"),
				has("/steps/2/title", "In deployment/web, container app has no cpu request"),
				eq("/steps/2/kubectl", "kubectl -n apps set resources deployment/web -c app '--requests=cpu=<request>'"),
				eq("/evidence/0/kind", "conditions"), eq("/evidence/0/data/missing_requests", "1"),
				has("/evidence/0/lines/1", "metric cpu utilization 50%"),
				has("/evidence/0/lines/4", "deployment/web container app requests none"),
				eq("/steps/1/kubectl", "kubectl get apiservices v1beta1.metrics.k8s.io v1beta1.custom.metrics.k8s.io v1beta1.external.metrics.k8s.io"),
			}}},
	{name: "hpa-missing-request-diagnostic", id: 85, workload: "hpa:missing_request", typ: events.IssueHPAMetricsUnavailable,
		expect: expect{actions: diag3, diagnosticOnly: true,
			fields: []fieldCheck{has("/steps/0/title", "missing request for cpu in container app"), has("/steps/1/title", "container app has no cpu request")}}},
	{name: "hpa-at-max-replicas-diagnostic", id: 86, workload: "hpa:at_max_replicas", typ: events.IssueHPAAtMaxReplicas,
		expect: expect{actions: append(diag3, events.ActionDiagnostic), diagnosticOnly: true,
			fields: []fieldCheck{
				has("/steps/0/title", "has wanted more than its maxReplicas 3 since 2026-11-27T00:40:00Z (the desired replica count is more than the maximum replica count); deployment/web runs 3 replicas"),
				eq("/steps/2/kubectl", `kubectl -n apps patch hpa web --type=merge -p '{"spec":{"maxReplicas":6}}'`),
				has("/steps/2/title", "kaar does not change HPAs"),
			}}},
}

var nodeSince = metav1.NewTime(time.Date(2026, 11, 27, 0, 40, 0, 0, time.UTC))

// nodeInput: node kwok-node-3 NotReady, unreachable, under memory
// pressure or cordoned (reason), with two pods of Deployment apps/web
// (and one evicted) and a DaemonSet pod on it.
func nodeInput(t *testing.T, cfg Config, reason string) planInput {
	t.Helper()
	cond := func(typ corev1.NodeConditionType, st corev1.ConditionStatus, r, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: typ, Status: st, Reason: r, Message: msg, LastTransitionTime: nodeSince}
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "kwok-node-3", UID: "node-uid", ResourceVersion: "901"},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
		}}}
	taint := func(key string) corev1.Taint {
		return corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule, TimeAdded: &nodeSince}
	}
	msg := ""
	switch reason {
	case "not_ready":
		n.Status.Conditions[0] = cond(corev1.NodeReady, corev1.ConditionFalse, "KubeletNotReady",
			"container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized")
		n.Spec.Taints = []corev1.Taint{taint(corev1.TaintNodeNotReady)}
		msg = "node kwok-node-3 has been NotReady since 2026-11-27T00:40:00Z: KubeletNotReady: container runtime network not ready"
	case nodeReasonUnreachable:
		for i := range n.Status.Conditions {
			n.Status.Conditions[i] = cond(n.Status.Conditions[i].Type, corev1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status.")
		}
		n.Spec.Taints = []corev1.Taint{taint(corev1.TaintNodeUnreachable)}
		msg = "node kwok-node-3 has been unreachable (Ready Unknown) since 2026-11-27T00:40:00Z"
	case nodeReasonMemoryPressure:
		n.Status.Conditions[1] = cond(corev1.NodeMemoryPressure, corev1.ConditionTrue, "KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
		n.Spec.Taints = []corev1.Taint{taint(corev1.TaintNodeMemoryPressure)}
		msg = "node kwok-node-3 is under memory pressure"
	case nodeReasonCordonedTooLong:
		n.Spec.Unschedulable = true
		n.Spec.Taints = []corev1.Taint{taint(corev1.TaintNodeUnschedulable)}
		msg = "node kwok-node-3 has been cordoned for 2h0m0s (since 2026-11-27T00:40:00Z) and its workloads have not moved"
	default:
		t.Fatalf("no node input for reason %q", reason)
	}
	typ := map[string]events.IssueType{"not_ready": events.IssueNodeNotReady, nodeReasonUnreachable: events.IssueNodeNotReady,
		nodeReasonMemoryPressure: events.IssueNodePressure, nodeReasonCordonedTooLong: events.IssueNodeCordoned}[reason]
	pod := func(ns, name, kind, owner string, phase corev1.PodPhase) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, OwnerReferences: []metav1.OwnerReference{
			{Kind: kind, Name: owner, Controller: new(true), APIVersion: "apps/v1"}}},
			Spec: corev1.PodSpec{NodeName: n.Name}, Status: corev1.PodStatus{Phase: phase}}
		if phase == corev1.PodFailed {
			p.Status.Reason = "Evicted"
		}
		return p
	}
	nr := &nodeRead{Node: n, Pods: []corev1.Pod{
		pod("apps", "web-7d9c-a", KindReplicaSet, "web-7d9c", corev1.PodRunning),
		pod("apps", "web-7d9c-b", KindReplicaSet, "web-7d9c", corev1.PodRunning),
		pod("apps", "web-7d9c-c", KindReplicaSet, "web-7d9c", corev1.PodFailed),
		pod("kube-system", "proxy-x", KindDaemonSet, "proxy", corev1.PodRunning),
	}}
	w, err := workloadOf(n)
	if err != nil {
		t.Fatal(err)
	}
	ref := w.Ref
	inc := noPodIncident(ref, typ, reason, msg)
	inc.Namespace = events.ClusterScopeNamespace
	inc.ID = events.IncidentID(testCluster, inc.Namespace, ref.Kind, ref.Name, "", typ)
	inc.PodCount = 3
	inc.OwnerChain = []events.ObjectRef{ref}
	return planInput{Cfg: cfg, Owner: w, Incident: inc, Node: nr, Now: goldenNow}
}

// hpaInput: HPA apps/web scaling Deployment web (container app without
// a cpu request) on cpu utilization, between 1 and 3 replicas, failing
// for reason.
func hpaInput(t *testing.T, cfg Config, reason string) planInput {
	t.Helper()
	dep := goldenDeploymentWithoutRequests()
	h := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps", UID: "hpa-uid", ResourceVersion: "777"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{Kind: "Deployment", Name: "web", APIVersion: "apps/v1"},
			MinReplicas: new(int32(1)), MaxReplicas: 3,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: new(int32(50))}}}}},
		Status: autoscalingv2.HorizontalPodAutoscalerStatus{CurrentReplicas: 1, DesiredReplicas: 1}}
	cond := func(typ autoscalingv2.HorizontalPodAutoscalerConditionType, st corev1.ConditionStatus, r, msg string) autoscalingv2.HorizontalPodAutoscalerCondition {
		return autoscalingv2.HorizontalPodAutoscalerCondition{Type: typ, Status: st, Reason: r, Message: msg, LastTransitionTime: nodeSince}
	}
	able := cond(autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededGetScale", "the HPA controller was able to get the target's current scale")
	typ, msg := events.IssueHPAMetricsUnavailable, ""
	switch reason {
	case hpaReasonMetricsAPIUnavailable:
		msg = "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)"
		h.Status.Conditions = []autoscalingv2.HorizontalPodAutoscalerCondition{able, cond(autoscalingv2.ScalingActive, corev1.ConditionFalse, "FailedGetResourceMetric", msg)}
	case hpaReasonMissingRequest:
		msg = "the HPA was unable to compute the replica count: failed to get cpu utilization: missing request for cpu in container app of Pod web-7d9c-a"
		h.Status.Conditions = []autoscalingv2.HorizontalPodAutoscalerCondition{able, cond(autoscalingv2.ScalingActive, corev1.ConditionFalse, "FailedGetResourceMetric", msg)}
	case "at_max_replicas":
		typ, msg = events.IssueHPAAtMaxReplicas, "the desired replica count is more than the maximum replica count"
		dep.Spec.Template.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
		h.Status.CurrentReplicas, h.Status.DesiredReplicas = 3, 3
		h.Status.Conditions = []autoscalingv2.HorizontalPodAutoscalerCondition{able,
			cond(autoscalingv2.ScalingActive, corev1.ConditionTrue, "ValidMetricFound", "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)"),
			cond(autoscalingv2.ScalingLimited, corev1.ConditionTrue, "TooManyReplicas", msg)}
	default:
		t.Fatalf("no HPA input for reason %q", reason)
	}
	w, err := workloadOf(h)
	if err != nil {
		t.Fatal(err)
	}
	tw, err := workloadOf(dep)
	if err != nil {
		t.Fatal(err)
	}
	inc := noPodIncident(w.Ref, typ, reason, "horizontalpodautoscaler web: "+msg)
	inc.OwnerChain = []events.ObjectRef{w.Ref}
	hr := &hpaRead{HPA: h, Target: tw}
	hr.Missing = missingRequests(h, tw)
	return planInput{Cfg: cfg, Owner: w, Incident: inc, HPA: hr, Now: goldenNow}
}

// goldenDeploymentWithoutRequests is Deployment apps/web (1 replica),
// one container app without requests.
func goldenDeploymentWithoutRequests() *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "apps", UID: "dep-uid", ResourceVersion: "500", Generation: 2},
		Spec: appsv1.DeploymentSpec{Replicas: new(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:2"}}}}}}
}
