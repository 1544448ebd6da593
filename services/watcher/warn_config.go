package watcher

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Configuration risks (class warning): a workload's pod template that
// works today but fails badly on a bad day, and budgets that stall node
// drains. Reported on the object a person would change: the Deployment,
// StatefulSet or DaemonSet with the container (MissingResources,
// MissingProbes, MutableImageTag), the Deployment (SingleNodeRisk), the
// PodDisruptionBudget (PDBBlocksDrain).
//
// The workload informers do not cache pod templates whole: their
// transform keeps a summary of what these rules read (templateSummary).
// The namespace's LimitRanges (their container defaults) and the
// PodDisruptionBudgets have informers of their own, started only when the
// watcher may list them: without LimitRanges MissingResources is off
// (a default could fill what the template lacks), without
// PodDisruptionBudgets PDBBlocksDrain is; the watcher says so once.

// Reason classes of the configuration risks.
const (
	reasonNoMemoryLimit    = "no_memory_limit"
	reasonNoMemoryRequest  = "no_memory_request"
	reasonNoCPURequest     = "no_cpu_request"
	reasonNoReadinessProbe = "no_readiness_probe"
	reasonNoLivenessProbe  = "no_liveness_probe"
	reasonNoProbes         = "no_probes"
	reasonLatestTag        = "latest_tag"
	reasonNoTag            = "no_tag"
	reasonNoSpread         = "no_spread"
	reasonAllOnOneNode     = "all_on_one_node"
	reasonZeroDisruptions  = "zero_disruptions_allowed"
	kindPDB                = "PodDisruptionBudget"
)

// LimitDefaults are what a namespace's LimitRanges fill in for a container
// that does not say: the default memory limit and the default memory and
// cpu requests (nil: none). The API server stores a LimitRange with its
// defaults completed (a default limit from max, a default request from
// the default limit or min), so these are what admission applies.
type LimitDefaults struct {
	MemoryLimit, MemoryRequest, CPURequest *resource.Quantity
	// From is the LimitRange that gives the memory limit, for messages.
	From string
}

// limitDefaultsOf merges the container defaults of LimitRanges, the
// first by name that has each (admission applies them in turn, and the
// first sets what the container lacks).
func limitDefaultsOf(lrs []*corev1.LimitRange) LimitDefaults {
	slices.SortFunc(lrs, func(a, b *corev1.LimitRange) int { return strings.Compare(a.Name, b.Name) })
	var d LimitDefaults
	for _, lr := range lrs {
		for _, it := range lr.Spec.Limits {
			if it.Type != corev1.LimitTypeContainer {
				continue
			}
			if d.MemoryLimit == nil {
				if d.MemoryLimit = quantity(it.Default, corev1.ResourceMemory); d.MemoryLimit != nil {
					d.From = lr.Name
				}
			}
			if d.MemoryRequest == nil {
				d.MemoryRequest = quantity(it.DefaultRequest, corev1.ResourceMemory)
			}
			if d.CPURequest == nil {
				d.CPURequest = quantity(it.DefaultRequest, corev1.ResourceCPU)
			}
		}
	}
	return d
}

func quantity(l corev1.ResourceList, n corev1.ResourceName) *resource.Quantity {
	if q, ok := l[n]; ok {
		return &q
	}
	return nil
}

func firstQuantity(qs ...*resource.Quantity) *resource.Quantity {
	for _, q := range qs {
		if q != nil {
			return q
		}
	}
	return nil
}

// TemplateRisks are the configuration risks of the containers of a pod
// template (spec) of workload who ("deployment web"): one issue per
// container and type, of the types on says are on. Init containers are
// checked for resources and image tags, not probes (they exit); the
// others for probes only when longRunning (a Deployment, StatefulSet or
// DaemonSet). It is a pure function of its arguments.
func TemplateRisks(who string, spec *corev1.PodSpec, d LimitDefaults, longRunning bool, on func(events.IssueType) bool) []ControllerIssue {
	var out []ControllerIssue
	check := func(c *corev1.Container, role string, probes bool) {
		if on(events.IssueMissingResources) {
			if iss := resourceRisk(who, role, c, spec.Resources, d); iss != nil {
				out = append(out, *iss)
			}
		}
		if probes && on(events.IssueMissingProbes) {
			if iss := probeRisk(who, role, c); iss != nil {
				out = append(out, *iss)
			}
		}
		if on(events.IssueMutableImageTag) {
			if iss := imageRisk(who, role, c); iss != nil {
				out = append(out, *iss)
			}
		}
	}
	for i := range spec.InitContainers {
		check(&spec.InitContainers[i], "init container", false)
	}
	for i := range spec.Containers {
		check(&spec.Containers[i], "container", longRunning)
	}
	return out
}

// resourceRisk: a container without a memory limit, a memory request or
// a cpu request, after what the API server and admission fill in: a
// request defaults to the container's limit, a pod-level value (spec
// .resources) covers its containers, and a LimitRange default fills what
// is still missing. The first missing is the reason; the message names
// them all.
func resourceRisk(who, role string, c *corev1.Container, pod *corev1.ResourceRequirements, d LimitDefaults) *ControllerIssue {
	const mem, cpu = corev1.ResourceMemory, corev1.ResourceCPU
	var podLimits, podRequests corev1.ResourceList
	if pod != nil {
		podLimits, podRequests = pod.Limits, pod.Requests
	}
	memLimit := firstQuantity(quantity(c.Resources.Limits, mem), quantity(podLimits, mem), d.MemoryLimit)
	memRequest := firstQuantity(quantity(c.Resources.Requests, mem), quantity(c.Resources.Limits, mem),
		quantity(podRequests, mem), quantity(podLimits, mem), d.MemoryRequest)
	cpuRequest := firstQuantity(quantity(c.Resources.Requests, cpu), quantity(c.Resources.Limits, cpu),
		quantity(podRequests, cpu), quantity(podLimits, cpu), d.CPURequest)
	var missing []string
	for _, m := range []struct {
		q      *resource.Quantity
		reason string
	}{{memLimit, reasonNoMemoryLimit}, {memRequest, reasonNoMemoryRequest}, {cpuRequest, reasonNoCPURequest}} {
		if m.q == nil {
			missing = append(missing, m.reason)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s %s has ", who, role, c.Name)
	switch missing[0] {
	case reasonNoMemoryLimit:
		b.WriteString("no memory limit (it may use all of its node's memory")
		if memRequest != nil {
			fmt.Fprintf(&b, "; its request is %s", memRequest)
		}
		b.WriteString(")")
	case reasonNoMemoryRequest:
		fmt.Fprintf(&b, "no memory request (the scheduler places it as if it used no memory; its limit is %s)", memLimit)
	case reasonNoCPURequest:
		b.WriteString("no cpu request (the scheduler places it as if it used no cpu, and under contention it gets the smallest share)")
	}
	if rest := missing[1:]; len(rest) > 0 {
		words := make([]string, len(rest))
		for i, r := range rest {
			words[i] = strings.ReplaceAll(strings.TrimPrefix(r, "no_"), "_", " ")
		}
		fmt.Fprintf(&b, ", nor a %s", strings.Join(words, " nor a "))
	}
	var ms []events.Measurement
	if memLimit != nil {
		ms = append(ms, events.Measurement{Name: "memory_limit", Value: float64(memLimit.Value()), Unit: events.UnitBytes})
	}
	if memRequest != nil {
		ms = append(ms, events.Measurement{Name: "memory_request", Value: float64(memRequest.Value()), Unit: events.UnitBytes})
	}
	if cpuRequest != nil {
		ms = append(ms, events.Measurement{Name: "cpu_request", Value: float64(cpuRequest.MilliValue()) / 1000, Unit: events.UnitCores})
	}
	return &ControllerIssue{Type: events.IssueMissingResources, Reason: missing[0], Container: c.Name,
		Message: b.String(), Warning: evidence(ms...)}
}

// probeRisk: a long-running container without a readiness or liveness
// probe. A container that declares no port is not expected to have a
// readiness probe (readiness gates the traffic of Services, and it
// declares none to receive); it may still hang, so it is expected to
// have a liveness probe. A startup probe alone is neither.
func probeRisk(who, role string, c *corev1.Container) *ControllerIssue {
	ready, live, serves := c.ReadinessProbe != nil, c.LivenessProbe != nil, len(c.Ports) > 0
	var reason, msg string
	switch {
	case serves && !ready && !live:
		reason = reasonNoProbes
		msg = "neither a readiness nor a liveness probe (Services send it traffic as soon as it starts, ready or not, and a process that hangs is never restarted)"
	case serves && !ready:
		reason = reasonNoReadinessProbe
		msg = "no readiness probe (Services send it traffic as soon as it starts, ready or not; it has a liveness probe)"
	case !live:
		reason = reasonNoLivenessProbe
		msg = "no liveness probe (a process that hangs without exiting is never restarted)"
		if !serves && !ready {
			msg = "no liveness probe (a process that hangs without exiting is never restarted; it declares no port, so no readiness probe is expected)"
		}
	default:
		return nil
	}
	return &ControllerIssue{Type: events.IssueMissingProbes, Reason: reason, Container: c.Name,
		Message: fmt.Sprintf("%s: %s %s has %s", who, role, c.Name, msg)}
}

// imageRisk: an image tagged latest or not tagged at all (which pulls
// latest), and not pinned by a digest.
func imageRisk(who, role string, c *corev1.Container) *ControllerIssue {
	tag, pinned := imageTag(c.Image)
	switch {
	case c.Image == "" || pinned:
		return nil
	case tag == "":
		return &ControllerIssue{Type: events.IssueMutableImageTag, Reason: reasonNoTag, Container: c.Name,
			Message: fmt.Sprintf("%s: %s %s runs image %s with no tag, which pulls latest: a restart or a new node may run a different image than the one running now (pin a version or a digest)",
				who, role, c.Name, c.Image)}
	case tag == "latest":
		return &ControllerIssue{Type: events.IssueMutableImageTag, Reason: reasonLatestTag, Container: c.Name,
			Message: fmt.Sprintf("%s: %s %s runs image %s, a tag that moves: a restart or a new node may run a different image than the one running now (pin a version or a digest)",
				who, role, c.Name, c.Image)}
	}
	return nil
}

// imageTag returns an image reference's tag ("" for none) and whether it
// is pinned by a digest (name@sha256:..., with or without a tag). A
// registry's port ("registry:5000/app") is not a tag.
func imageTag(image string) (tag string, pinned bool) {
	if strings.Contains(image, "@") {
		return "", true
	}
	last := image[strings.LastIndex(image, "/")+1:]
	if i := strings.LastIndex(last, ":"); i >= 0 {
		return last[i+1:], false
	}
	return "", false
}

// SpreadRisk reports a Deployment of more than one replica whose ready
// pods (of pods, its cached pods) all run on one node now (all_on_one_node,
// judged once no rollout is under way: a rollout moves pods), or whose
// template neither spreads its pods over nodes nor keeps them apart
// (no_spread): no topology spread constraint on kubernetes.io/hostname
// and no pod anti-affinity on it, each selecting the Deployment's own
// pods. It is a pure function of its arguments.
func SpreadRisk(d *appsv1.Deployment, pods []*corev1.Pod) *ControllerIssue {
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if replicas < 2 || d.DeletionTimestamp != nil {
		return nil
	}
	who := "deployment " + d.Name
	settled := d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == d.Status.Replicas
	nodes := map[string]int{}
	ready := 0
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Spec.NodeName != "" && podReady(p) {
			nodes[p.Spec.NodeName]++
			ready++
		}
	}
	counts := []events.Measurement{{Name: "replicas", Value: float64(replicas), Unit: events.UnitCount}}
	if settled && ready >= 2 && len(nodes) == 1 {
		var node string
		for n := range nodes {
			node = n
		}
		return &ControllerIssue{Type: events.IssueSingleNodeRisk, Reason: reasonAllOnOneNode, PodCount: ready,
			Message: fmt.Sprintf("%s: all %d of its ready pods run on node %s (of %s): one node failure or drain takes them all down",
				who, ready, node, plural(int(replicas), "replica")),
			Warning: evidence(append(counts, events.Measurement{Name: "ready_pods", Value: float64(ready), Unit: events.UnitCount},
				events.Measurement{Name: "nodes", Value: 1, Unit: events.UnitCount})...)}
	}
	if spreadsOverNodes(&d.Spec.Template) {
		return nil
	}
	return &ControllerIssue{Type: events.IssueSingleNodeRisk, Reason: reasonNoSpread,
		Message: fmt.Sprintf("%s: its %s may all land on one node: its pod template has no topology spread constraint and no pod anti-affinity on %s (one node failure or drain could take them all down)",
			who, plural(int(replicas), "replica"), corev1.LabelHostname),
		Warning: evidence(counts...)}
}

// spreadsOverNodes reports a pod template that spreads its own pods over
// nodes: a topology spread constraint or a pod anti-affinity term
// (required or preferred) on the hostname whose selector selects the
// template's labels.
func spreadsOverNodes(t *corev1.PodTemplateSpec) bool {
	own := func(sel *metav1.LabelSelector) bool {
		s, err := metav1.LabelSelectorAsSelector(sel)
		return sel != nil && err == nil && !s.Empty() && s.Matches(labels.Set(t.Labels))
	}
	for _, c := range t.Spec.TopologySpreadConstraints {
		if c.TopologyKey == corev1.LabelHostname && own(c.LabelSelector) {
			return true
		}
	}
	if t.Spec.Affinity == nil || t.Spec.Affinity.PodAntiAffinity == nil {
		return false
	}
	anti := t.Spec.Affinity.PodAntiAffinity
	for _, term := range anti.RequiredDuringSchedulingIgnoredDuringExecution {
		if term.TopologyKey == corev1.LabelHostname && own(term.LabelSelector) {
			return true
		}
	}
	for _, w := range anti.PreferredDuringSchedulingIgnoredDuringExecution {
		if w.PodAffinityTerm.TopologyKey == corev1.LabelHostname && own(w.PodAffinityTerm.LabelSelector) {
			return true
		}
	}
	return false
}

// ClassifyPDB reports a PodDisruptionBudget that allows no disruption while
// every pod it covers is healthy (zero_disruptions_allowed): a single
// replica with minAvailable 1, maxUnavailable 0. Every node drain that
// would evict one of its pods stalls. Not while pods are unhealthy (the
// budget then holds on purpose, and the failure is reported on its
// workload), nor before the disruption controller has computed its status
// for the current spec. It is a pure function of its argument.
func ClassifyPDB(p *policyv1.PodDisruptionBudget) []ControllerIssue {
	st := p.Status
	if p.DeletionTimestamp != nil || st.ObservedGeneration < p.Generation || st.ExpectedPods < 1 ||
		st.DisruptionsAllowed != 0 || st.CurrentHealthy != st.ExpectedPods {
		return nil
	}
	return []ControllerIssue{{Type: events.IssuePDBBlocksDrain, Reason: reasonZeroDisruptions, PodCount: int(st.ExpectedPods),
		Message: fmt.Sprintf("poddisruptionbudget %s allows 0 disruptions while its pods are all healthy (%d of %d; %s, so %d must stay healthy): every node drain that would evict one of them stalls until the budget or the replica count changes",
			p.Name, st.CurrentHealthy, st.ExpectedPods, budgetText(p), st.DesiredHealthy),
		Warning: evidence(
			events.Measurement{Name: "disruptions_allowed", Value: float64(st.DisruptionsAllowed), Unit: events.UnitCount},
			events.Measurement{Name: "current_healthy", Value: float64(st.CurrentHealthy), Limit: float64(st.ExpectedPods), Unit: events.UnitCount},
			events.Measurement{Name: "desired_healthy", Value: float64(st.DesiredHealthy), Unit: events.UnitCount},
			events.Measurement{Name: "expected_pods", Value: float64(st.ExpectedPods), Unit: events.UnitCount})}}
}

func budgetText(p *policyv1.PodDisruptionBudget) string {
	switch {
	case p.Spec.MinAvailable != nil:
		return "minAvailable " + p.Spec.MinAvailable.String()
	case p.Spec.MaxUnavailable != nil:
		return "maxUnavailable " + p.Spec.MaxUnavailable.String()
	}
	return "no minAvailable nor maxUnavailable"
}

// evidence is the measurements as a warning's evidence (nil for none).
func evidence(ms ...events.Measurement) *events.WarningEvidence {
	if len(ms) == 0 {
		return nil
	}
	return &events.WarningEvidence{Measurements: ms}
}

// templateSummary is what the watcher caches of a workload's pod
// template: its labels (which Services select it) and what the
// configuration risks read, nothing else. Containers keep their name,
// image, declared ports, restart policy (a sidecar), the cpu and memory
// of their requests and limits, and whether they have a readiness and a
// liveness probe (a shared empty Probe stands for any); the pod keeps its
// pod-level cpu and memory, and its topology spread constraints and pod
// anti-affinity terms on the hostname (their topology key and selector).
// It returns new objects, so it is idempotent.
func templateSummary(t corev1.PodTemplateSpec) corev1.PodTemplateSpec {
	out := templateLabels(t)
	out.Spec.InitContainers = summaryContainers(t.Spec.InitContainers)
	out.Spec.Containers = summaryContainers(t.Spec.Containers)
	if t.Spec.Resources != nil {
		if r := cpuMemory(*t.Spec.Resources); r.Limits != nil || r.Requests != nil {
			out.Spec.Resources = &r
		}
	}
	for _, c := range t.Spec.TopologySpreadConstraints {
		if c.TopologyKey == corev1.LabelHostname {
			out.Spec.TopologySpreadConstraints = append(out.Spec.TopologySpreadConstraints, corev1.TopologySpreadConstraint{
				TopologyKey: c.TopologyKey, MaxSkew: c.MaxSkew, WhenUnsatisfiable: c.WhenUnsatisfiable, LabelSelector: c.LabelSelector})
		}
	}
	if a := t.Spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		var anti corev1.PodAntiAffinity
		for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			if term.TopologyKey == corev1.LabelHostname {
				anti.RequiredDuringSchedulingIgnoredDuringExecution = append(anti.RequiredDuringSchedulingIgnoredDuringExecution,
					corev1.PodAffinityTerm{TopologyKey: term.TopologyKey, LabelSelector: term.LabelSelector})
			}
		}
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			if w.PodAffinityTerm.TopologyKey == corev1.LabelHostname {
				anti.PreferredDuringSchedulingIgnoredDuringExecution = append(anti.PreferredDuringSchedulingIgnoredDuringExecution,
					corev1.WeightedPodAffinityTerm{Weight: w.Weight, PodAffinityTerm: corev1.PodAffinityTerm{
						TopologyKey: w.PodAffinityTerm.TopologyKey, LabelSelector: w.PodAffinityTerm.LabelSelector}})
			}
		}
		if anti.RequiredDuringSchedulingIgnoredDuringExecution != nil || anti.PreferredDuringSchedulingIgnoredDuringExecution != nil {
			out.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &anti}
		}
	}
	return out
}

// probePresent stands for a container's probe in a cached template
// summary: the rules ask whether there is one, not what it is.
var probePresent = &corev1.Probe{}

func presence(p *corev1.Probe) *corev1.Probe {
	if p == nil {
		return nil
	}
	return probePresent
}

func summaryContainers(in []corev1.Container) []corev1.Container {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(in))
	for i, c := range in {
		out[i] = corev1.Container{Name: intern(c.Name), Image: intern(c.Image), Ports: trimPorts(c.Ports),
			RestartPolicy: c.RestartPolicy, Resources: cpuMemory(c.Resources),
			ReadinessProbe: presence(c.ReadinessProbe), LivenessProbe: presence(c.LivenessProbe)}
	}
	return out
}

// cpuMemory keeps the cpu and memory of requirements (nil maps when
// they have neither), in maps shared by every container with the same
// values (internResources).
func cpuMemory(r corev1.ResourceRequirements) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Limits: internResources(r.Limits), Requests: internResources(r.Requests)}
}

// resourceLists are the shared cpu and memory maps of the cached
// templates, by their values ("100m/128Mi"): a map of one or two
// quantities costs some 600 bytes, and most containers of a cluster
// share a few sizes. The caches' objects are never modified, so one map
// can serve them all; callers must not modify it either.
var resourceLists = struct {
	sync.Mutex
	m map[string]corev1.ResourceList
}{m: map[string]corev1.ResourceList{}}

// internResources returns the shared map of l's cpu and memory (nil for
// neither).
func internResources(l corev1.ResourceList) corev1.ResourceList {
	cpu, hasCPU := l[corev1.ResourceCPU]
	mem, hasMem := l[corev1.ResourceMemory]
	if !hasCPU && !hasMem {
		return nil
	}
	var key strings.Builder
	if hasCPU {
		key.WriteString(cpu.String())
	}
	key.WriteByte('/')
	if hasMem {
		key.WriteString(mem.String())
	}
	resourceLists.Lock()
	defer resourceLists.Unlock()
	if out, ok := resourceLists.m[key.String()]; ok {
		return out
	}
	if len(resourceLists.m) >= maxInterned {
		clear(resourceLists.m)
	}
	out := make(corev1.ResourceList, 2)
	if hasCPU {
		out[corev1.ResourceCPU] = cpu
	}
	if hasMem {
		out[corev1.ResourceMemory] = mem
	}
	resourceLists.m[key.String()] = out
	return out
}

// trimPDB keeps what ClassifyPDB reads.
func trimPDB(p *policyv1.PodDisruptionBudget) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{TypeMeta: p.TypeMeta, ObjectMeta: trimMeta(p.ObjectMeta),
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: p.Spec.MinAvailable, MaxUnavailable: p.Spec.MaxUnavailable},
		Status: policyv1.PodDisruptionBudgetStatus{ObservedGeneration: p.Status.ObservedGeneration,
			DisruptionsAllowed: p.Status.DisruptionsAllowed, CurrentHealthy: p.Status.CurrentHealthy,
			DesiredHealthy: p.Status.DesiredHealthy, ExpectedPods: p.Status.ExpectedPods}}
}

// trimLimitRange keeps the container defaults of cpu and memory.
func trimLimitRange(lr *corev1.LimitRange) *corev1.LimitRange {
	out := &corev1.LimitRange{TypeMeta: lr.TypeMeta, ObjectMeta: trimMeta(lr.ObjectMeta)}
	for _, it := range lr.Spec.Limits {
		if it.Type != corev1.LimitTypeContainer {
			continue
		}
		d := cpuMemory(corev1.ResourceRequirements{Limits: it.Default, Requests: it.DefaultRequest})
		if d.Limits != nil || d.Requests != nil {
			out.Spec.Limits = append(out.Spec.Limits, corev1.LimitRangeItem{Type: it.Type, Default: d.Limits, DefaultRequest: d.Requests})
		}
	}
	return out
}

func riskTransform(obj any) (any, error) {
	switch o := obj.(type) {
	case *policyv1.PodDisruptionBudget:
		return trimPDB(o), nil
	case *corev1.LimitRange:
		return trimLimitRange(o), nil
	}
	return transform(obj)
}

// riskWatch is the configuration risks' own informers: the
// PodDisruptionBudgets and LimitRanges of the watched scope, each nil
// when the watcher may not list them.
type riskWatch struct {
	cs      kubernetes.Interface
	factory informers.SharedInformerFactory
	pdbs    cache.SharedIndexInformer
	limits  cache.SharedIndexInformer
}

// watchConfigRisks registers the configuration risks when warnings are
// enabled: their source, and the handlers that evaluate a workload when
// its template, replicas or rollout change and a Deployment when one of
// its pods becomes ready or not (its pods' nodes). New calls it; Run
// starts the informers of their own (startConfigRisks).
func (s *Service) watchConfigRisks(cs kubernetes.Interface) error {
	if !s.cfg.Warnings.Enabled {
		return nil
	}
	s.risks = &riskWatch{cs: cs}
	s.warningSources = append(s.warningSources, s.configRiskObs)
	for kind, inf := range map[string]cache.SharedIndexInformer{"Deployment": s.cl.deploys, "StatefulSet": s.cl.sts, "DaemonSet": s.cl.ds} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { s.riskWorkloadChanged(kind, nil, obj) },
			UpdateFunc: func(old, cur any) { s.riskWorkloadChanged(kind, old, cur) },
			DeleteFunc: func(obj any) { s.riskWorkloadChanged(kind, nil, obj) },
		}); err != nil {
			return fmt.Errorf("watcher: %s risk handler: %w", kind, err)
		}
	}
	if !s.cfg.Warnings.on(events.IssueSingleNodeRisk) {
		return nil
	}
	if _, err := s.cl.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.riskPodChanged(nil, obj) },
		UpdateFunc: s.riskPodChanged,
		DeleteFunc: func(obj any) { s.riskPodChanged(nil, obj) },
	}); err != nil {
		return fmt.Errorf("watcher: pod risk handler: %w", err)
	}
	return nil
}

// startConfigRisks starts the PodDisruptionBudget and LimitRange
// informers the watcher may list, and says once which warnings are off
// for lack of them. A nil watch (warnings disabled) does nothing.
func (s *Service) startConfigRisks(ctx context.Context) {
	w := s.risks
	if w == nil {
		return
	}
	opts := []informers.SharedInformerOption{informers.WithTransform(riskTransform)}
	if s.cfg.Namespace != "" {
		opts = append(opts, informers.WithNamespace(s.cfg.Namespace))
	}
	f := informers.NewSharedInformerFactoryWithOptions(w.cs, s.cfg.ResyncPeriod, opts...)
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	one := metav1.ListOptions{Limit: 1}
	if s.cfg.Warnings.on(events.IssuePDBBlocksDrain) {
		_, err := w.cs.PolicyV1().PodDisruptionBudgets(s.cfg.Namespace).List(lctx, one)
		if s.readable(err, "poddisruptionbudgets", events.IssuePDBBlocksDrain) {
			w.pdbs = f.Policy().V1().PodDisruptionBudgets().Informer()
			s.addHandler(w.pdbs, "poddisruptionbudget", s.pdbChanged)
		}
	}
	if s.cfg.Warnings.on(events.IssueMissingResources) {
		_, err := w.cs.CoreV1().LimitRanges(s.cfg.Namespace).List(lctx, one)
		if s.readable(err, "limitranges", events.IssueMissingResources) {
			w.limits = f.Core().V1().LimitRanges().Informer()
			s.addHandler(w.limits, "limitrange", func(_, obj any) { s.limitRangeChanged(obj) })
		}
	}
	w.factory = f
	f.StartWithContext(ctx)
}

// readable says whether a probe list of resource succeeded enough to
// watch it: forbidden or an absent API turns warning t off (said once);
// another error is left to the informer's retries.
func (s *Service) readable(err error, resource string, t events.IssueType) bool {
	if err == nil || !apierrors.IsForbidden(err) && !apierrors.IsNotFound(err) {
		return true
	}
	s.log.Warn("warning type off: the watcher may not list "+resource, slog.String("type", string(t)), slog.Any("error", err))
	return false
}

func (s *Service) addHandler(inf cache.SharedIndexInformer, what string, fn func(old, obj any)) {
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { fn(nil, obj) }, UpdateFunc: fn, DeleteFunc: func(obj any) { fn(nil, obj) },
	}); err != nil {
		// Only a stopped informer refuses a handler; it has not started.
		s.log.Error("add "+what+" handler", slog.Any("error", err))
	}
}

// synced are the risk informers' HasSynced, for the bounded wait at
// start-up.
func (w *riskWatch) synced() []cache.InformerSynced {
	var out []cache.InformerSynced
	for _, inf := range []cache.SharedIndexInformer{w.pdbsOrNil(), w.limitsOrNil()} {
		if inf != nil {
			out = append(out, inf.HasSynced)
		}
	}
	return out
}

func (w *riskWatch) pdbsOrNil() cache.SharedIndexInformer {
	if w == nil {
		return nil
	}
	return w.pdbs
}

func (w *riskWatch) limitsOrNil() cache.SharedIndexInformer {
	if w == nil {
		return nil
	}
	return w.limits
}

func (w *riskWatch) shutdown() {
	if w != nil && w.factory != nil {
		w.factory.Shutdown()
	}
}

// configRiskObs is the configuration risks' warning source.
func (s *Service) configRiskObs(k ownerKey, now time.Time) ([]ctrlObs, time.Time) {
	// A cache not synced yet (Run waits for these a few seconds only)
	// knows nothing: look again soon rather than take a budget for gone,
	// or a container for lacking what a LimitRange not yet read gives it.
	soon := now.Add(time.Second)
	if k.Kind == kindPDB {
		if s.risks.pdbs == nil {
			return nil, time.Time{}
		}
		if !s.risks.pdbs.HasSynced() {
			return nil, soon
		}
		p := get[policyv1.PodDisruptionBudget](s.risks.pdbs, k.Namespace, k.Name)
		if p == nil {
			return nil, time.Time{}
		}
		issues := ClassifyPDB(p)
		if len(issues) == 0 {
			return nil, time.Time{}
		}
		ref := events.ObjectRef{Kind: kindPDB, APIVersion: "policy/v1", Namespace: p.Namespace, Name: p.Name, UID: string(p.UID)}
		return []ctrlObs{{Chain: []events.ObjectRef{ref}, Issues: issues}}, time.Time{}
	}
	m, spec, replicas := s.cachedWorkload(k)
	if m == nil || m.GetDeletionTimestamp() != nil || replicas == 0 {
		return nil, time.Time{}
	}
	var recheck time.Time
	limitsRead := s.risks.limits != nil && s.risks.limits.HasSynced()
	if s.risks.limits != nil && !limitsRead && s.cfg.Warnings.on(events.IssueMissingResources) {
		recheck = soon
	}
	on := func(t events.IssueType) bool {
		return s.cfg.Warnings.on(t) && (t != events.IssueMissingResources || limitsRead)
	}
	issues := TemplateRisks(strings.ToLower(k.Kind)+" "+k.Name, spec, s.limitDefaults(k.Namespace), true, on)
	if d, ok := m.(*appsv1.Deployment); ok && on(events.IssueSingleNodeRisk) {
		if iss := SpreadRisk(d, s.cl.podsOf(k)); iss != nil {
			issues = append(issues, *iss)
		}
	}
	if len(issues) == 0 {
		return nil, recheck
	}
	ref := events.ObjectRef{Kind: k.Kind, APIVersion: "apps/v1", Namespace: m.GetNamespace(), Name: m.GetName(), UID: string(m.GetUID())}
	return []ctrlObs{{Chain: []events.ObjectRef{ref}, Issues: issues}}, recheck
}

// cachedWorkload returns the cached Deployment, StatefulSet or DaemonSet
// k, its template summary and its desired replicas (-1 for a DaemonSet);
// nil for anything else.
func (s *Service) cachedWorkload(k ownerKey) (metav1.Object, *corev1.PodSpec, int32) {
	replicas := func(r *int32) int32 {
		if r == nil {
			return 1
		}
		return *r
	}
	switch k.Kind {
	case "Deployment":
		if o := get[appsv1.Deployment](s.cl.deploys, k.Namespace, k.Name); o != nil {
			return o, &o.Spec.Template.Spec, replicas(o.Spec.Replicas)
		}
	case "StatefulSet":
		if o := get[appsv1.StatefulSet](s.cl.sts, k.Namespace, k.Name); o != nil {
			return o, &o.Spec.Template.Spec, replicas(o.Spec.Replicas)
		}
	case "DaemonSet":
		if o := get[appsv1.DaemonSet](s.cl.ds, k.Namespace, k.Name); o != nil {
			return o, &o.Spec.Template.Spec, -1
		}
	}
	return nil, nil, 0
}

// limitDefaults are the container defaults of namespace ns's cached
// LimitRanges.
func (s *Service) limitDefaults(ns string) LimitDefaults {
	if s.risks.limits == nil {
		return LimitDefaults{}
	}
	return limitDefaultsOf(inNamespace[corev1.LimitRange](s.risks.limits, ns))
}

// riskInputs is what a workload's risks depend on besides its pods.
type riskInputs struct {
	template              *corev1.PodTemplateSpec
	replicas              *int32
	generation, observed  int64
	updated, statusCopies int32
}

func riskInputsOf(obj any) (riskInputs, bool) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return riskInputs{&o.Spec.Template, o.Spec.Replicas, o.Generation, o.Status.ObservedGeneration,
			o.Status.UpdatedReplicas, o.Status.Replicas}, true
	case *appsv1.StatefulSet:
		return riskInputs{template: &o.Spec.Template, replicas: o.Spec.Replicas}, true
	case *appsv1.DaemonSet:
		return riskInputs{template: &o.Spec.Template}, true
	}
	return riskInputs{}, false
}

// riskWorkloadChanged evaluates a workload that comes, goes, or whose
// risk inputs changed, when it may have a risk or has incidents (a
// status-only update of a workload with incidents is evaluated by
// controllerChanged already).
func (s *Service) riskWorkloadChanged(kind string, oldObj, obj any) {
	m := objectOf(obj)
	if m == nil || !s.filter.watched(m.GetNamespace()) {
		return
	}
	if _, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = m
	}
	cur, ok := riskInputsOf(obj)
	if !ok {
		return
	}
	if prev, ok := riskInputsOf(oldObj); ok && reflect.DeepEqual(prev, cur) {
		return
	}
	k := ownerKey{Namespace: m.GetNamespace(), Kind: kind, Name: m.GetName()}
	if s.tracker.Has(k) || s.mayRisk(obj) {
		s.queue.AddAfter(k, s.cfg.Debounce)
	}
}

// mayRisk reports a workload that may have a configuration risk: one of
// its containers has one without LimitRange defaults (which only remove
// risks), or it is a Deployment of more than one replica.
func (s *Service) mayRisk(obj any) bool {
	one := func(r *int32) int32 {
		if r == nil {
			return 1
		}
		return *r
	}
	var spec *corev1.PodSpec
	switch o := obj.(type) {
	case *appsv1.Deployment:
		if n := one(o.Spec.Replicas); n == 0 || n > 1 && s.cfg.Warnings.on(events.IssueSingleNodeRisk) {
			return n > 0
		}
		spec = &o.Spec.Template.Spec
	case *appsv1.StatefulSet:
		if one(o.Spec.Replicas) == 0 {
			return false
		}
		spec = &o.Spec.Template.Spec
	case *appsv1.DaemonSet:
		spec = &o.Spec.Template.Spec
	default:
		return false
	}
	return len(TemplateRisks("", spec, LimitDefaults{}, true, s.cfg.Warnings.on)) > 0
}

// riskPodChanged evaluates the Deployment of more than one replica of a
// pod that became ready or not, or changed node, once the caches are
// synced (until then every workload is evaluated anyway).
func (s *Service) riskPodChanged(oldObj, obj any) {
	p, old := podOf(obj), podOf(oldObj)
	if p == nil || !s.synced() || !s.filter.watched(p.Namespace) {
		return
	}
	if old == nil && !podReady(p) || old != nil && podReady(old) == podReady(p) && old.Spec.NodeName == p.Spec.NodeName {
		return
	}
	owner, _ := resolveOwner(p, s.cl)
	if owner.Kind != "Deployment" {
		return
	}
	if d := get[appsv1.Deployment](s.cl.deploys, owner.Namespace, owner.Name); d != nil && d.Spec.Replicas != nil && *d.Spec.Replicas > 1 {
		s.queue.AddAfter(keyOf(owner), s.cfg.Debounce)
	}
}

// limitRangeChanged evaluates the workloads of a LimitRange's namespace:
// its defaults decide whether their containers lack resources.
func (s *Service) limitRangeChanged(obj any) {
	m := objectOf(obj)
	if m == nil || !s.filter.watched(m.GetNamespace()) {
		return
	}
	ns := m.GetNamespace()
	for _, inf := range []struct {
		kind string
		i    cache.SharedIndexInformer
	}{{"Deployment", s.cl.deploys}, {"StatefulSet", s.cl.sts}, {"DaemonSet", s.cl.ds}} {
		objs, _ := inf.i.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
		for _, o := range objs {
			if w := objectOf(o); w != nil {
				if k := (ownerKey{Namespace: ns, Kind: inf.kind, Name: w.GetName()}); s.tracker.Has(k) || s.mayRisk(o) {
					s.queue.AddAfter(k, s.cfg.Debounce)
				}
			}
		}
	}
}

// pdbChanged evaluates a PodDisruptionBudget that blocks drains, did, or
// has incidents.
func (s *Service) pdbChanged(oldObj, obj any) {
	m := objectOf(obj)
	p, _ := m.(*policyv1.PodDisruptionBudget)
	if p == nil || !s.filter.watched(p.Namespace) {
		return
	}
	k := ownerKey{Namespace: p.Namespace, Kind: kindPDB, Name: p.Name}
	old, _ := objectOf(oldObj).(*policyv1.PodDisruptionBudget)
	if len(ClassifyPDB(p)) > 0 || old != nil && len(ClassifyPDB(old)) > 0 || s.tracker.Has(k) {
		s.queue.AddAfter(k, s.cfg.Debounce)
	}
}
