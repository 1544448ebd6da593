package watcher

import (
	"cmp"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Capacity warnings (issue 16): what stops the next pods although nothing
// has failed yet. A ResourceQuota nearly used up (QuotaNearLimit), a node
// whose pods request nearly all it can allocate (NodeNearlyFull), a
// LimitRange whose defaults the namespace's quota cannot fit
// (LimitRangeExceedsQuota) and a cert-manager Certificate about to expire
// with no renewal under way (CertificateExpiring). Each is reported on the
// object a person would change; quotas and LimitRanges are policy objects
// kaar never changes (their plans are diagnostic). The classifiers here
// are pure; warn_capacity_watch.go has the informers that feed them.

// Kinds and reason classes of the capacity warnings.
const (
	kindQuota       = "ResourceQuota"
	kindLimitRange  = "LimitRange"
	kindCertificate = "Certificate"

	reasonQuotaNearLimit      = "near_limit"
	reasonQuotaAtLimit        = "at_limit"
	reasonCPURequested        = "cpu_requested"
	reasonMemoryRequested     = "memory_requested"
	reasonPodsAllocated       = "pods_allocated"
	reasonDefaultExceedsQuota = "default_exceeds_quota"
	reasonCertExpiresSoon     = "expires_soon"
	reasonCertExpired         = "expired"
)

// quotaUsage is one resource of a ResourceQuota: used against hard.
type quotaUsage struct {
	name       corev1.ResourceName
	used, hard resource.Quantity
	pct        float64
}

// quotaUsages are the resources of q with a positive hard limit, the
// fullest first. A hard limit of zero forbids the resource outright (a
// quota's usual way to disable LoadBalancer Services): not a warning.
func quotaUsages(q *corev1.ResourceQuota) []quotaUsage {
	var out []quotaUsage
	for name, hard := range q.Status.Hard {
		h := hard.AsApproximateFloat64()
		if h <= 0 {
			continue
		}
		used := q.Status.Used[name]
		out = append(out, quotaUsage{name: name, used: used, hard: hard, pct: 100 * used.AsApproximateFloat64() / h})
	}
	slices.SortFunc(out, func(a, b quotaUsage) int {
		return cmp.Or(cmp.Compare(b.pct, a.pct), strings.Compare(string(a.name), string(b.name)))
	})
	return out
}

// ClassifyQuota reports a ResourceQuota whose usage of any resource is at
// or above threshold percent of its hard limit (near_limit; at_limit once
// one is used up): the namespace's next objects that need more than what
// is left are refused. The message names every resource over the
// threshold, fullest first; the measurements are those resources. It is a
// pure function of its arguments.
func ClassifyQuota(q *corev1.ResourceQuota, threshold int) []ControllerIssue {
	if q == nil || q.DeletionTimestamp != nil {
		return nil
	}
	var over []quotaUsage
	for _, u := range quotaUsages(q) {
		if u.pct >= float64(threshold) {
			over = append(over, u)
		}
	}
	if len(over) == 0 {
		return nil
	}
	reason, state := reasonQuotaNearLimit, "nearly used up"
	if over[0].pct >= 100 {
		reason, state = reasonQuotaAtLimit, "used up"
	}
	parts := make([]string, 0, len(over))
	ev := &events.WarningEvidence{}
	for _, u := range over {
		unit := quotaUnit(u.name)
		left := u.hard.DeepCopy()
		left.Sub(u.used)
		leftText := "none left"
		if left.Sign() > 0 {
			leftText = quantityText(left, unit) + " left"
		}
		parts = append(parts, fmt.Sprintf("%s %s of %s (%d%%, %s)", u.name, quantityText(u.used, unit), quantityText(u.hard, unit),
			int(math.Floor(u.pct)), leftText))
		if len(ev.Measurements) < events.MaxMeasurements {
			ev.Measurements = append(ev.Measurements, events.Measurement{Name: metricName(string(u.name)),
				Value: quantityValue(u.used, unit), Limit: quantityValue(u.hard, unit), Unit: unit})
		}
	}
	return []ControllerIssue{{Type: events.IssueQuotaNearLimit, Reason: reason, Warning: ev,
		Message: fmt.Sprintf("resourcequota %s is %s: %s; the namespace's next objects that need more than what is left are refused",
			q.Name, state, strings.Join(parts, ", "))}}
}

// quotaUnit is the unit of a quota resource: cores for cpu, bytes for
// memory, storage and huge pages, a count for the rest (pods, objects,
// extended resources).
func quotaUnit(name corev1.ResourceName) string {
	n := string(name)
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		n = n[i+1:] // gold.storageclass.storage.k8s.io/requests.storage
	}
	n = strings.TrimPrefix(strings.TrimPrefix(n, "requests."), "limits.")
	switch {
	case n == "cpu":
		return events.UnitCores
	case n == "memory" || n == "storage" || n == "ephemeral-storage" || strings.HasPrefix(n, "hugepages-"):
		return events.UnitBytes
	}
	return events.UnitCount
}

// quantityValue is q as a number of unit (cores, bytes, a count).
func quantityValue(q resource.Quantity, unit string) float64 {
	if unit == events.UnitCores {
		return float64(q.MilliValue()) / 1000
	}
	return q.AsApproximateFloat64()
}

// quantityText is q for people: "1.5" or "300m" cores, "972Mi" bytes,
// "12" objects.
func quantityText(q resource.Quantity, unit string) string {
	switch unit {
	case events.UnitCores:
		return capCoresText(q.MilliValue())
	case events.UnitBytes:
		return capBytesText(q.Value())
	}
	return strconv.FormatInt(q.Value(), 10)
}

// capCoresText is millicores for people: "4", "3.7", "300m".
func capCoresText(milli int64) string {
	switch {
	case milli%1000 == 0:
		return strconv.FormatInt(milli/1000, 10)
	case milli > -1000 && milli < 1000:
		return strconv.FormatInt(milli, 10) + "m"
	}
	return strconv.FormatFloat(math.Round(float64(milli)/10)/100, 'f', -1, 64)
}

// capBytesText is bytes in binary units, at most one decimal: "7.5Gi",
// "512Mi", "100".
func capBytesText(b int64) string {
	for _, u := range []struct {
		suffix string
		size   float64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if math.Abs(float64(b)) >= u.size {
			return strconv.FormatFloat(math.Round(float64(b)/u.size*10)/10, 'f', -1, 64) + u.suffix
		}
	}
	return strconv.FormatInt(b, 10)
}

// measurementName is what events accepts as a measurement name.
var measurementName = regexp.MustCompile(`^[a-z0-9][a-z0-9_./-]{0,62}$`)

// metricName is a resource name as a measurement name: kept when it is
// one ("requests.memory", "count/deployments.apps"), else lower-cased with
// other characters as '_' and cut to 63.
func metricName(s string) string {
	if measurementName.MatchString(s) {
		return s
	}
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '/' || c == '-') {
			b[i] = '_'
		}
	}
	out := strings.TrimLeft(string(b), "_./-")
	if len(out) > 63 {
		out = out[:63]
	}
	return cmp.Or(out, "resource")
}

// NodeRequested is what the pods bound to a node and not terminated
// request of it: what the scheduler subtracts from its allocatable.
type NodeRequested struct {
	CPUMilli    int64
	MemoryBytes int64
	Pods        int
}

// add counts pod p (its effective requests, see podRequests).
func (r *NodeRequested) add(p *corev1.Pod) {
	cpu, mem := podRequests(p)
	r.CPUMilli += cpu
	r.MemoryBytes += mem
	r.Pods++
}

// podRequests is the cpu (millicores) and memory (bytes) the scheduler
// reserves for pod p: the pod-level requests when set, else the larger of
// its containers' requests (with its restartable init containers, the
// sidecars) and of each init container's (with the sidecars started
// before it), plus the pod overhead. The trimmed pods keep exactly these
// requests (trimPod).
func podRequests(p *corev1.Pod) (cpuMilli, memBytes int64) {
	get := func(l corev1.ResourceList) (int64, int64) {
		var c, m int64
		if q, ok := l[corev1.ResourceCPU]; ok {
			c = q.MilliValue()
		}
		if q, ok := l[corev1.ResourceMemory]; ok {
			m = q.Value()
		}
		return c, m
	}
	var cpu, mem, sideCPU, sideMem, initCPU, initMem int64
	for _, c := range p.Spec.Containers {
		cc, cm := get(c.Resources.Requests)
		cpu, mem = cpu+cc, mem+cm
	}
	for _, c := range p.Spec.InitContainers {
		cc, cm := get(c.Resources.Requests)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			cpu, mem = cpu+cc, mem+cm
			sideCPU, sideMem = sideCPU+cc, sideMem+cm
			continue
		}
		initCPU, initMem = max(initCPU, cc+sideCPU), max(initMem, cm+sideMem)
	}
	cpu, mem = max(cpu, initCPU), max(mem, initMem)
	if r := p.Spec.Resources; r != nil {
		if q, ok := r.Requests[corev1.ResourceCPU]; ok {
			cpu = q.MilliValue()
		}
		if q, ok := r.Requests[corev1.ResourceMemory]; ok {
			mem = q.Value()
		}
	}
	oc, om := get(p.Spec.Overhead)
	return cpu + oc, mem + om
}

// requestsOnly keeps the cpu and memory requests of a container's (or a
// pod's) resources: what NodeNearlyFull adds up. Limits and other
// resources go.
func requestsOnly(r corev1.ResourceRequirements) corev1.ResourceRequirements {
	var out corev1.ResourceList
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := r.Requests[name]; ok {
			if out == nil {
				out = make(corev1.ResourceList, 2)
			}
			out[name] = q
		}
	}
	return corev1.ResourceRequirements{Requests: out}
}

// podLevelRequests is requestsOnly for a pod's own resources (nil stays
// nil, as does a pod without cpu or memory requests).
func podLevelRequests(r *corev1.ResourceRequirements) *corev1.ResourceRequirements {
	if r == nil {
		return nil
	}
	out := requestsOnly(*r)
	if out.Requests == nil {
		return nil
	}
	return &out
}

// nodeResource is one of a node's allocatable resources and what its
// pods request of it.
type nodeResource struct {
	reason, name, unit string
	requested, alloc   float64
	pct                float64
	// used and total are the texts of requested and alloc; next says what
	// no longer fits.
	used, total, next string
}

// ClassifyNodeCapacity reports a node whose pods request threshold percent
// or more of its allocatable cpu (cpu_requested), memory
// (memory_requested) or pods (pods_allocated), the fullest first: the
// next pods that need more than what is left will not schedule there. It
// is a pure function of its arguments.
func ClassifyNodeCapacity(n *corev1.Node, req NodeRequested, threshold int) []ControllerIssue {
	if n == nil || n.DeletionTimestamp != nil {
		return nil
	}
	alloc := n.Status.Allocatable
	cpu, mem, pods := alloc[corev1.ResourceCPU], alloc[corev1.ResourceMemory], alloc[corev1.ResourcePods]
	var all []nodeResource
	if a := cpu.MilliValue(); a > 0 {
		free := a - req.CPUMilli
		freeText := capCoresText(free)
		if !strings.HasSuffix(freeText, "m") {
			freeText += " cpu" // "more than 2 cpu", "more than 300m"
		}
		all = append(all, nodeResource{reason: reasonCPURequested, name: "cpu_requested", unit: events.UnitCores,
			requested: float64(req.CPUMilli) / 1000, alloc: float64(a) / 1000,
			used: "pods request " + capCoresText(req.CPUMilli), total: capCoresText(a) + " cpu",
			next: nextText(free, "the next pod requesting more than "+freeText+" will not schedule here",
				"no pod requesting cpu will schedule here")})
	}
	if a := mem.Value(); a > 0 {
		free := a - req.MemoryBytes
		all = append(all, nodeResource{reason: reasonMemoryRequested, name: "memory_requested", unit: events.UnitBytes,
			requested: float64(req.MemoryBytes), alloc: float64(a),
			used: "pods request " + capBytesText(req.MemoryBytes), total: capBytesText(a) + " memory",
			next: nextText(free, "the next pod requesting more than "+capBytesText(free)+" of memory will not schedule here",
				"no pod requesting memory will schedule here")})
	}
	if a := pods.Value(); a > 0 {
		free := a - int64(req.Pods)
		all = append(all, nodeResource{reason: reasonPodsAllocated, name: "pods_allocated", unit: events.UnitCount,
			requested: float64(req.Pods), alloc: float64(a),
			used: strconv.Itoa(req.Pods) + " pods", total: strconv.FormatInt(a, 10) + " allocatable",
			next: nextText(free, podsLeftText(free), "no more pod fits here")})
	}
	for i := range all {
		all[i].pct = 100 * all[i].requested / all[i].alloc
	}
	slices.SortStableFunc(all, func(a, b nodeResource) int { return cmp.Compare(b.pct, a.pct) })
	if len(all) == 0 || all[0].pct < float64(threshold) {
		return nil
	}
	var parts, nexts []string
	ev := &events.WarningEvidence{}
	for _, r := range all {
		ev.Measurements = append(ev.Measurements, events.Measurement{Name: r.name, Value: r.requested, Limit: r.alloc, Unit: r.unit})
		if r.pct >= float64(threshold) {
			parts = append(parts, fmt.Sprintf("%s of %s (%d%%)", r.used, r.total, int(math.Floor(r.pct))))
			nexts = append(nexts, r.next)
		}
	}
	return []ControllerIssue{{Type: events.IssueNodeNearlyFull, Reason: all[0].reason, PodCount: req.Pods, Warning: ev,
		Message: fmt.Sprintf("node %s: %s; %s", n.Name, strings.Join(parts, ", "), strings.Join(nexts, "; "))}}
}

func podsLeftText(free int64) string {
	if free == 1 {
		return "only 1 more pod fits here"
	}
	return fmt.Sprintf("only %d more pods fit here", free)
}

func nextText(free int64, some, none string) string {
	if free > 0 {
		return some
	}
	return none
}

// quotaApplies reports a quota that counts every pod relying on a
// LimitRange's defaults: no scope, or only NotBestEffort (such a pod has
// requests). A quota scoped to Terminating pods, a priority class or
// cross-namespace affinity counts only some pods.
func quotaApplies(q *corev1.ResourceQuota) bool {
	if q.Spec.ScopeSelector != nil && len(q.Spec.ScopeSelector.MatchExpressions) > 0 {
		return false
	}
	for _, s := range q.Spec.Scopes {
		if s != corev1.ResourceQuotaScopeNotBestEffort {
			return false
		}
	}
	return true
}

// defaultChecks are the LimitRange defaults a quota can refuse and the
// quota resources they count against.
var defaultChecks = []struct {
	what, measurement string
	limit             bool // Default (a limit) rather than DefaultRequest
	resource          corev1.ResourceName
	quota             []corev1.ResourceName
}{
	{"default cpu request", "default_request.cpu", false, corev1.ResourceCPU, []corev1.ResourceName{corev1.ResourceRequestsCPU, corev1.ResourceCPU}},
	{"default memory request", "default_request.memory", false, corev1.ResourceMemory, []corev1.ResourceName{corev1.ResourceRequestsMemory, corev1.ResourceMemory}},
	{"default cpu limit", "default_limit.cpu", true, corev1.ResourceCPU, []corev1.ResourceName{corev1.ResourceLimitsCPU}},
	{"default memory limit", "default_limit.memory", true, corev1.ResourceMemory, []corev1.ResourceName{corev1.ResourceLimitsMemory}},
}

// ClassifyLimitRange reports a LimitRange whose container defaults
// (default limits, default requests) of cpu or memory are larger than
// what a ResourceQuota of the namespace has left of the resource they
// count against, or than its hard limit itself (default_exceeds_quota):
// the next pod whose containers rely on the defaults is refused. quotas
// are the namespace's. It is a pure function of its arguments.
func ClassifyLimitRange(lr *corev1.LimitRange, quotas []*corev1.ResourceQuota) []ControllerIssue {
	if lr == nil || lr.DeletionTimestamp != nil || len(quotas) == 0 {
		return nil
	}
	quotas = slices.DeleteFunc(slices.Clone(quotas), func(q *corev1.ResourceQuota) bool {
		return q.DeletionTimestamp != nil || !quotaApplies(q)
	})
	slices.SortFunc(quotas, func(a, b *corev1.ResourceQuota) int { return strings.Compare(a.Name, b.Name) })
	var problems []string
	ev := &events.WarningEvidence{}
	for _, d := range containerDefaults(lr) {
		for _, q := range quotas {
			for _, name := range d.quota {
				problem, m, ok := defaultProblem(d.what, d.measurement, d.def, q, name)
				if !ok {
					continue
				}
				problems = append(problems, problem)
				if len(ev.Measurements) < events.MaxMeasurements {
					ev.Measurements = append(ev.Measurements, m)
				}
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return []ControllerIssue{{Type: events.IssueLimitRangeExceedsQuota, Reason: reasonDefaultExceedsQuota, Warning: ev,
		Message: fmt.Sprintf("limitrange %s: %s; the next pod whose containers rely on these defaults is refused",
			lr.Name, strings.Join(problems, "; "))}}
}

// containerDefault is a LimitRange's default of a resource for
// containers, with the quota resources it counts against.
type containerDefault struct {
	what, measurement string
	def               resource.Quantity
	quota             []corev1.ResourceName
}

// containerDefaults are lr's container defaults of cpu and memory (limits
// and requests) in defaultChecks order.
func containerDefaults(lr *corev1.LimitRange) []containerDefault {
	var out []containerDefault
	for _, item := range lr.Spec.Limits {
		if item.Type != corev1.LimitTypeContainer {
			continue // defaults apply to containers only
		}
		for _, c := range defaultChecks {
			src := item.DefaultRequest
			if c.limit {
				src = item.Default
			}
			if def, ok := src[c.resource]; ok && def.Sign() > 0 {
				out = append(out, containerDefault{what: c.what, measurement: c.measurement, def: def, quota: c.quota})
			}
		}
	}
	return out
}

// defaultProblem says whether default def (what: "default memory
// limit") is more than quota q allows of resource name in all, or has
// left of it, with the measurement of it.
func defaultProblem(what, measurement string, def resource.Quantity, q *corev1.ResourceQuota, name corev1.ResourceName) (string, events.Measurement, bool) {
	hard, ok := q.Status.Hard[name]
	if !ok {
		return "", events.Measurement{}, false
	}
	unit := quotaUnit(name)
	used := q.Status.Used[name]
	left := hard.DeepCopy()
	left.Sub(used)
	var problem string
	against := left
	switch {
	case def.Cmp(hard) > 0:
		against = hard
		problem = fmt.Sprintf("the %s %s is more than resourcequota %s allows in all (%s %s)",
			what, quantityText(def, unit), q.Name, name, quantityText(hard, unit))
	case def.Cmp(left) > 0:
		problem = fmt.Sprintf("the %s %s is more than resourcequota %s has left of %s (%s of %s used)",
			what, quantityText(def, unit), q.Name, name, quantityText(used, unit), quantityText(hard, unit))
	default:
		return "", events.Measurement{}, false
	}
	return problem, events.Measurement{Name: measurement, Value: quantityValue(def, unit),
		Limit: max(quantityValue(against, unit), 0), Unit: unit}, true
}

// CertificateSummary is what the watcher keeps of a cert-manager
// Certificate (cert-manager.io/v1): its secret's name (kaar never reads
// the Secret), when the certificate expires and is due for renewal, and
// its Ready and Issuing conditions.
type CertificateSummary struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	SecretName  string
	NotAfter    time.Time // zero: not issued yet
	RenewalTime time.Time
	// Ready and Issuing are nil when absent. Issuing True is a renewal
	// under way.
	Ready, Issuing *CertificateCondition
}

// CertificateCondition is a condition of a Certificate.
type CertificateCondition struct {
	Status, Reason, Message string
}

// DeepCopyObject makes CertificateSummary a runtime.Object (the
// informer's cache holds it).
func (c *CertificateSummary) DeepCopyObject() runtime.Object {
	if c == nil {
		return nil
	}
	out := *c
	c.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if c.Ready != nil {
		r := *c.Ready
		out.Ready = &r
	}
	if c.Issuing != nil {
		i := *c.Issuing
		out.Issuing = &i
	}
	return &out
}

// ClassifyCertificate reports a Certificate whose certificate expires
// within horizon (expires_soon) or has expired (expired) while no renewal
// is under way (Issuing is not True). It returns when to look again: when
// the certificate enters the horizon, or expires. It is a pure function
// of its arguments.
func ClassifyCertificate(c *CertificateSummary, now time.Time, horizon time.Duration) ([]ControllerIssue, time.Time) {
	if c == nil || c.DeletionTimestamp != nil || c.NotAfter.IsZero() {
		return nil, time.Time{}
	}
	if c.Issuing != nil && c.Issuing.Status == string(metav1.ConditionTrue) {
		return nil, time.Time{} // its end updates the Certificate
	}
	left := c.NotAfter.Sub(now)
	if left > horizon {
		return nil, c.NotAfter.Add(-horizon)
	}
	secret := ""
	if c.SecretName != "" {
		secret = " (secret " + c.SecretName + ")"
	}
	reason, recheck := reasonCertExpiresSoon, c.NotAfter
	msg := fmt.Sprintf("certificate %s%s expires at %s, in %s", c.Name, secret, sinceText(c.NotAfter), capDurationText(left))
	if left <= 0 {
		reason, recheck = reasonCertExpired, time.Time{}
		msg = fmt.Sprintf("certificate %s%s expired at %s, %s ago", c.Name, secret, sinceText(c.NotAfter), capDurationText(-left))
	}
	msg += ", and no renewal is under way"
	if !c.RenewalTime.IsZero() && !c.RenewalTime.After(now) {
		msg += " (renewal was due at " + sinceText(c.RenewalTime) + ")"
	}
	if r := c.Ready; r != nil && r.Status != string(metav1.ConditionTrue) {
		msg += fmt.Sprintf("; Ready %s: %s", r.Status, cmp.Or(strings.TrimSpace(r.Reason+" "+r.Message), "no reason given"))
	}
	ev := &events.WarningEvidence{Measurements: []events.Measurement{{Name: "expires_in", Value: math.Round(left.Seconds()),
		Limit: horizon.Seconds(), Unit: events.UnitSeconds}}}
	return []ControllerIssue{{Type: events.IssueCertificateExpiring, Reason: reason, Message: msg, Warning: ev}}, recheck
}

// capDurationText is a duration for people, to the hour beyond a day:
// "5d 22h", "3h 10m", "42m", "30s".
func capDurationText(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		d = d.Round(time.Hour)
		days, hours := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
		if hours == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd %dh", days, hours)
	case d >= time.Hour:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh %dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d.Round(time.Minute)/time.Minute))
	}
	return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
}
