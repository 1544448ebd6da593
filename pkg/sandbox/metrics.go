package sandbox

import (
	"fmt"
	"strings"
)

// Resource usage conventions: what kwok reports as a pod's usage (its
// kubelet's /metrics/resource, which metrics-server scrapes and serves as
// metrics.k8s.io), a function of the pod spec like the failure stages.
// README.md documents them.
const (
	// AnnotationMemoryGrowth (pod annotation): the first container's
	// working set grows by this much memory per minute (a quantity such as
	// "30Mi") from the pod's creation, on top of AnnotationMemoryUsage (or
	// the default). The reported usage stops at the container's memory
	// limit, as the kernel would; the OOM stage reads only
	// AnnotationMemoryUsage.
	AnnotationMemoryGrowth = "sandbox.kaar.dev/memory-growth"
	// AnnotationCPUUsage (pod annotation): the first container's CPU
	// usage, a quantity of cores such as "250m".
	AnnotationCPUUsage = "sandbox.kaar.dev/cpu-usage"
	// DefaultMemoryUsage and DefaultCPUUsage are what every container
	// reports without annotations (and every container but the first),
	// so that `kubectl top` shows every pod.
	DefaultMemoryUsage = "10Mi"
	DefaultCPUUsage    = "1m"
	// NodeSystemMemoryUsage and NodeSystemCPUUsage are what a node uses
	// besides its pods (the system and the kubelet): an empty node
	// reports them, and metrics-server drops a node reporting zero.
	NodeSystemMemoryUsage = "256Mi"
	NodeSystemCPUUsage    = "50m"
)

// nodeSystemMemoryBytes and nodeSystemCPUCores are the node's own usage
// as the Metric's CEL expressions add it.
const (
	nodeSystemMemoryBytes = "268435456.0"
	nodeSystemCPUCores    = "0.05"
)

// quantityRE is the CEL (RE2) pattern of an annotation value the usage
// expressions accept as a quantity; anything else counts as absent, so a
// typo gives the default instead of an evaluation error (which kwok
// reports as zero usage).
const quantityRE = `^[0-9]+([.][0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$`

// MetricsPathAnnotation is the node annotation metrics-server (0.7 and
// later) reads to find a node's resource metrics on its kubelet port:
// kwok serves every node's on one server, under a per-node path.
const MetricsPathAnnotation = "metrics.k8s.io/resource-metrics-path"

// metricsPath is the path of node's resource metrics on kwok's server.
func metricsPath(node string) string { return "/metrics/nodes/" + node + "/metrics/resource" }

// celAnnotated is a CEL condition: the first container is being evaluated
// and the pod has annotation a with a quantity.
func celAnnotated(a string) string {
	return fmt.Sprintf(`container.name == pod.spec.containers[0].name && %q in pod.metadata.annotations && pod.metadata.annotations[%q].matches(%q)`,
		a, a, quantityRE)
}

// celQuantity is a CEL expression: the quantity of annotation a.
func celQuantity(a string) string {
	return fmt.Sprintf(`Quantity(pod.metadata.annotations[%q])`, a)
}

// memoryUsageExpr is the CEL expression of a container's working set
// (kwok's ResourceUsage): AnnotationMemoryUsage (or the default) plus
// AnnotationMemoryGrowth per minute since the pod's creation, at most the
// container's memory limit.
func memoryUsageExpr() string {
	used := fmt.Sprintf(`((%s) ? %s : Quantity(%q)) + ((%s) ? %s * (pod.SinceSecond() / 60.0) : Quantity("0"))`,
		celAnnotated(AnnotationMemoryUsage), celQuantity(AnnotationMemoryUsage), DefaultMemoryUsage,
		celAnnotated(AnnotationMemoryGrowth), celQuantity(AnnotationMemoryGrowth))
	limit := `container.resources.limits["memory"]`
	// dyn: kwok's CEL checker types a comparison of quantities as int,
	// though it evaluates to a bool.
	return fmt.Sprintf(`("memory" in container.resources.limits && dyn(%s > %s)) ? %s : %s`, used, limit, limit, used)
}

// cpuUsageExpr is the CEL expression of a container's CPU usage in cores.
func cpuUsageExpr() string {
	return fmt.Sprintf(`(%s) ? %s : Quantity(%q)`, celAnnotated(AnnotationCPUUsage), celQuantity(AnnotationCPUUsage), DefaultCPUUsage)
}

// renderMetricsConfig returns kwok configuration documents: a
// ClusterResourceUsage giving every container its usage, and a Metric
// serving the kubelet's /metrics/resource for every node at
// metricsPath(node), from kwok 0.8.0's kustomize/metrics (usage and
// resource) with three changes: the container start time is in seconds
// since the epoch (the stock Metric reports seconds since creation); a
// container's cumulative CPU starts at one millicore-second, not zero
// (kwok integrates the usage from the first scrape, which metrics-server
// would drop as incomplete, delaying a new pod's metrics by a scrape; a
// constant offset leaves every rate as it was); a node adds its system
// usage (NodeSystemMemoryUsage, NodeSystemCPUUsage) to its pods'.
func renderMetricsConfig() string {
	var b strings.Builder
	fmt.Fprintf(&b, `---
# Resource usage of every container: annotations %s, %s and %s
# of the pod (pkg/sandbox/metrics.go, README.md).
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterResourceUsage
metadata:
  name: kaar-sandbox-usage
spec:
  selector: {}
  usages:
  - usage:
      memory:
        expression: %q
      cpu:
        expression: %q
`, AnnotationMemoryUsage, AnnotationMemoryGrowth, AnnotationCPUUsage, memoryUsageExpr(), cpuUsageExpr())
	b.WriteString(`---
# The kubelet's resource metrics, scraped by metrics-server.
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Metric
metadata:
  name: kaar-sandbox-metrics-resource
spec:
  path: "` + metricsPath("{nodeName}") + `"
  metrics:
  - name: scrape_error
    dimension: node
    help: "[ALPHA] 1 if there was an error while getting metrics from the node, 0 otherwise"
    kind: gauge
    value: "0"
  - name: container_start_time_seconds
    dimension: container
    help: "[ALPHA] Start time of the container since unix epoch in seconds"
    kind: gauge
    labels:
    - {name: container, value: container.name}
    - {name: namespace, value: pod.metadata.namespace}
    - {name: pod, value: pod.metadata.name}
    value: UnixSecond(pod.metadata.creationTimestamp)
  - name: container_cpu_usage_seconds_total
    dimension: container
    help: "[ALPHA] Cumulative cpu time consumed by the container in core-seconds"
    kind: counter
    labels:
    - {name: container, value: container.name}
    - {name: namespace, value: pod.metadata.namespace}
    - {name: pod, value: pod.metadata.name}
    value: pod.CumulativeUsage("cpu", container.name) + 0.001
  - name: container_memory_working_set_bytes
    dimension: container
    help: "[ALPHA] Current working set of the container in bytes"
    kind: gauge
    labels:
    - {name: container, value: container.name}
    - {name: namespace, value: pod.metadata.namespace}
    - {name: pod, value: pod.metadata.name}
    value: pod.Usage("memory", container.name)
  - name: pod_cpu_usage_seconds_total
    dimension: pod
    help: "[ALPHA] Cumulative cpu time consumed by the pod in core-seconds"
    kind: counter
    labels:
    - {name: namespace, value: pod.metadata.namespace}
    - {name: pod, value: pod.metadata.name}
    value: pod.CumulativeUsage("cpu")
  - name: pod_memory_working_set_bytes
    dimension: pod
    help: "[ALPHA] Current working set of the pod in bytes"
    kind: gauge
    labels:
    - {name: namespace, value: pod.metadata.namespace}
    - {name: pod, value: pod.metadata.name}
    value: pod.Usage("memory")
  - name: node_cpu_usage_seconds_total
    dimension: node
    help: "[ALPHA] Cumulative cpu time consumed by the node in core-seconds"
    kind: counter
    value: node.CumulativeUsage("cpu") + ` + nodeSystemCPUCores + ` * node.SinceSecond()
  - name: node_memory_working_set_bytes
    dimension: node
    help: "[ALPHA] Current working set of the node in bytes"
    kind: gauge
    value: node.Usage("memory") + ` + nodeSystemMemoryBytes + `
`)
	return b.String()
}
