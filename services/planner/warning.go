package planner

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Warnings (issue class warning, docs/warnings.md): nothing has failed
// yet. The planner never plans one from the issue stream (consume.go
// acknowledges it); it plans one when asked (the plan endpoint, what
// generate_remediation_plan calls). Every warning gets a diagnostic plan
// with its evidence in words and the commands a person runs; the one
// typed fix is MemoryNearLimit's, the same increase_memory step an
// OOMKilled container gets, sized from the forecast
// (actions_resources.go). Policy objects (quotas, LimitRanges, PDBs),
// nodes and certificates are never changed, and neither are probes,
// requests, images or spreads that only the application's owner can
// choose.

// Owner kinds of warnings, besides the workloads and Nodes.
const (
	KindResourceQuota       = "ResourceQuota"
	KindLimitRange          = "LimitRange"
	KindPodDisruptionBudget = "PodDisruptionBudget"
	KindCertificate         = "Certificate"
)

// warningDiagnostic says why a warning type gets diagnostic steps only,
// whatever the configured strategies; "" for MemoryNearLimit (its
// strategies apply) and for failures.
func warningDiagnostic(t events.IssueType) string {
	switch t {
	case events.IssueQuotaNearLimit, events.IssueLimitRangeExceedsQuota, events.IssuePDBBlocksDrain:
		return "the warning is about a policy object (ResourceQuota, LimitRange, PodDisruptionBudget), which belongs to whoever runs the namespace and which kaar never changes: diagnostic steps only"
	case events.IssueNodeNearlyFull:
		return "a node's capacity is a person's decision (add nodes, move or resize workloads); kaar never acts on nodes: diagnostic steps only"
	case events.IssueCertificateExpiring:
		return "renewing a certificate is cert-manager's job, and why it does not is for a person to find; kaar never changes Certificates and never reads Secrets: diagnostic steps only"
	case events.IssueMissingResources, events.IssueMissingProbes, events.IssueMutableImageTag, events.IssueSingleNodeRisk:
		return "the fix is a value only the application's owner can choose (a request or limit, a probe, an image digest, a spread); kaar does not guess it: diagnostic steps only"
	case events.IssueRecurringRestarts, events.IssueReadyReplicasDipping:
		return "the cause is in the application or its dependencies, and nothing has failed for good yet: diagnostic steps only"
	}
	return ""
}

// certificate is the part of a cert-manager Certificate
// (cert-manager.io/v1) the planner reads.
type certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName string   `json:"secretName"`
		DNSNames   []string `json:"dnsNames,omitempty"`
		IssuerRef  struct {
			Name string `json:"name"`
			Kind string `json:"kind,omitempty"`
		} `json:"issuerRef"`
	} `json:"spec"`
	Status struct {
		NotAfter    *metav1.Time `json:"notAfter,omitempty"`
		RenewalTime *metav1.Time `json:"renewalTime,omitempty"`
		Conditions  []struct {
			Type    string `json:"type"`
			Status  string `json:"status"`
			Reason  string `json:"reason,omitempty"`
			Message string `json:"message,omitempty"`
		} `json:"conditions,omitempty"`
	} `json:"status"`
}

// getCertificate reads a cert-manager Certificate through the clientset's
// REST client (the planner has no dynamic client for one custom kind).
func (r reader) getCertificate(ctx context.Context, ns, name string) (*certificate, error) {
	rc := r.kube.Discovery().RESTClient()
	if rc == nil || reflect.ValueOf(rc).IsNil() {
		return nil, fmt.Errorf("this Kubernetes client cannot read cert-manager Certificates")
	}
	raw, err := rc.Get().AbsPath("/apis/cert-manager.io/v1/namespaces", ns, "certificates", name).DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var c certificate
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("decode certificate %s/%s: %w", ns, name, err)
	}
	return &c, nil
}

// getLimitRange finds a LimitRange by listing the namespace's (the
// planner's role lists LimitRanges, it does not get them).
func (r reader) getLimitRange(ctx context.Context, ns, name string) (*corev1.LimitRange, error) {
	list, err := r.kube.CoreV1().LimitRanges(ns).List(ctx, metav1.ListOptions{Limit: listLimit})
	if err != nil {
		return nil, err
	}
	for i := range list.Items {
		if list.Items[i].Name == name {
			return &list.Items[i], nil
		}
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "limitranges"}, name)
}

// getWarningOwner reads the owner kinds only warnings have.
func (r reader) getWarningOwner(ctx context.Context, ref events.ObjectRef) (any, bool, error) {
	ns, name, opts := ref.Namespace, ref.Name, metav1.GetOptions{}
	switch ref.Kind {
	case KindResourceQuota:
		o, err := r.kube.CoreV1().ResourceQuotas(ns).Get(ctx, name, opts)
		return o, true, err
	case KindLimitRange:
		o, err := r.getLimitRange(ctx, ns, name)
		return o, true, err
	case KindPodDisruptionBudget:
		o, err := r.kube.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, name, opts)
		return o, true, err
	case KindCertificate:
		o, err := r.getCertificate(ctx, ns, name)
		return o, true, err
	}
	return nil, false, nil
}

// wrapWarningOwner wraps the owner kinds only warnings have: objects
// without a pod template, so their plans are diagnostic.
func wrapWarningOwner(obj any) (*workload, bool) {
	w := func(kind, apiVersion string, m metav1.ObjectMeta) *workload {
		return &workload{Ref: kindRef(kind, apiVersion, m), Generation: m.Generation, ResourceVersion: m.ResourceVersion,
			Labels: m.Labels, Annotations: m.Annotations}
	}
	switch o := obj.(type) {
	case *corev1.ResourceQuota:
		return w(KindResourceQuota, "v1", o.ObjectMeta), true
	case *corev1.LimitRange:
		return w(KindLimitRange, "v1", o.ObjectMeta), true
	case *policyv1.PodDisruptionBudget:
		return w(KindPodDisruptionBudget, "policy/v1", o.ObjectMeta), true
	case *certificate:
		return w(KindCertificate, "cert-manager.io/v1", o.ObjectMeta), true
	}
	return nil, false
}

// The sizing of a memory limit raised before the OOM (MemoryNearLimit).
const (
	// warningGrowthHorizon is how much growth at the fitted rate the new
	// limit holds, unless the strategy's param "horizon" says otherwise.
	warningGrowthHorizon = 24 * time.Hour
	// warningHeadroom is added on top of the projected working set.
	warningHeadroom = 1.2
	// warningMinRaise is the least raise worth a rollout.
	warningMinRaise = 1.25
)

// forecastLimit sizes the memory limit of a MemoryNearLimit container
// from the warning's forecast: the working set it projects after
// warningGrowthHorizon (or the strategy's "horizon") of growth at the
// fitted rate, plus 20% headroom; at least 1.25 times the current limit
// and at most remediation.memory_factor times it (a warning never gets a
// larger raise than an OOMKilled container would). The caller caps it
// at remediation.max_memory_limit. why is set when the forecast no
// longer describes the container (its limit was raised since).
func (b *builder) forecastLimit(st Strategy, c *corev1.Container, limit int64, factor float64) (newLimit int64, why string, notes []string) {
	var f *events.Forecast
	if w := b.in.Incident.Warning; w != nil {
		f = w.Forecast
	}
	ceiling := roundUpMiB(float64(limit) * factor)
	if f == nil || f.Unit != events.UnitBytes || f.Current <= 0 {
		return ceiling, "", []string{fmt.Sprintf("increase_memory: the warning carries no memory forecast: the limit is raised by remediation.memory_factor (%gx), as for an OOMKilled container", factor)}
	}
	if f.Limit > 0 && float64(limit) > f.Limit+mebibyte {
		return 0, fmt.Sprintf("the memory limit of container %s is %s, above the %s the forecast was made against: it was raised since (the watcher re-evaluates the trend against the new limit)",
			c.Name, formatBytes(limit), humanBytes(f.Limit)), nil
	}
	horizon := warningGrowthHorizon
	if d, err := time.ParseDuration(st.Params["horizon"]); err == nil && d > 0 {
		horizon = d
	}
	projected := f.Current + max(f.SlopePerHour, 0)*horizon.Hours()
	want := roundUpMiB(projected * warningHeadroom)
	floor := roundUpMiB(float64(limit) * warningMinRaise)
	newLimit = min(max(want, floor), ceiling)
	notes = append(notes, fmt.Sprintf("increase_memory: sized from the forecast: %s now, growing %s an hour, is %s after %s; with 20%% headroom the container needs %s. The new limit is at least %gx and at most remediation.memory_factor (%gx) the current %s",
		humanBytes(f.Current), humanBytes(f.SlopePerHour), humanBytes(projected), fmtHours(horizon), humanBytes(float64(want)), warningMinRaise, factor, formatBytes(limit)))
	if want > ceiling {
		notes = append(notes, fmt.Sprintf("increase_memory: the projected need (%s) is more than remediation.memory_factor allows: growth this steep is often a leak, which a higher limit only postpones", humanBytes(float64(want))))
	}
	return newLimit, "", notes
}

// forecastClause is the forecast in a few words for a summary: "230Mi of
// its 256Mi limit, growing 10Mi an hour, projected to reach it at
// 2026-11-27T03:10:00Z".
func forecastClause(in planInput) string {
	w := in.Incident.Warning
	if w == nil || w.Forecast == nil {
		return ""
	}
	f := w.Forecast
	return fmt.Sprintf("%s of its %s limit, growing %s an hour, projected to reach it at %s",
		humanBytes(f.Current), humanBytes(f.Limit), humanBytes(f.SlopePerHour), fmtTime(f.CrossesAt))
}

// warningEvidence is the warning's numbers in words: each measurement,
// and the forecast of a trend.
func warningEvidence(in planInput) (events.Evidence, bool) {
	w := in.Incident.Warning
	if w == nil || (len(w.Measurements) == 0 && w.Forecast == nil) {
		return events.Evidence{}, false
	}
	data := map[string]string{}
	var lines []string
	for _, m := range w.Measurements {
		lines = append(lines, measurementLine(m))
		data[m.Name] = strconv.FormatFloat(m.Value, 'f', -1, 64)
		if m.Limit > 0 {
			data[m.Name+".limit"] = strconv.FormatFloat(m.Limit, 'f', -1, 64)
		}
	}
	if f := w.Forecast; f != nil {
		lines = append(lines, forecastLine(f, in.Now))
		data["crosses_at"] = fmtTime(f.CrossesAt)
		data["slope_per_hour"] = strconv.FormatFloat(f.SlopePerHour, 'f', -1, 64)
		data["confidence"] = strconv.FormatFloat(f.Confidence, 'f', 2, 64)
	}
	title := fmt.Sprintf("Warning %s (%s)", in.Incident.Type, strings.ReplaceAll(in.Incident.Reason, "_", " "))
	if len(lines) > 0 {
		title += ": " + lines[0]
	}
	if msg := in.Incident.Message; msg != "" {
		lines = append([]string{"watcher: " + quote(msg)}, lines...)
	}
	kind := events.EvidenceConditions
	switch in.Incident.Type {
	case events.IssueMemoryNearLimit, events.IssueMissingResources, events.IssueQuotaNearLimit, events.IssueNodeNearlyFull, events.IssueLimitRangeExceedsQuota:
		kind = events.EvidenceResources
	case events.IssueMissingProbes:
		kind = events.EvidenceProbe
	case events.IssuePDBBlocksDrain:
		kind = events.EvidencePolicy
	}
	return events.Evidence{Kind: kind, Title: oneLine(title), Source: "the watcher's warning on " + in.Owner.ref() + " (incident " + in.Incident.ID + ")",
		Lines: lines, Data: data}, true
}

// measurementLine: "memory_working_set: 230Mi of 256Mi (90%) over 2h".
func measurementLine(m events.Measurement) string {
	s := fmt.Sprintf("%s: %s", m.Name, formatValue(m.Value, m.Unit))
	if m.Limit > 0 {
		s += fmt.Sprintf(" of %s (%.0f%%)", formatValue(m.Limit, m.Unit), m.Percent())
	}
	if m.WindowSeconds > 0 {
		s += " over " + fmtHours(time.Duration(m.WindowSeconds)*time.Second)
	}
	return s
}

// forecastLine: "forecast: memory_working_set 230Mi now, growing 10Mi an
// hour (fit over 2h of 24 samples, R² 0.97): reaches 256Mi at ... (in
// 2h30m)".
func forecastLine(f *events.Forecast, now time.Time) string {
	s := fmt.Sprintf("forecast: %s %s now, growing %s an hour (fit over %s of %d samples, R² %.2f): reaches %s at %s",
		f.Metric, formatValue(f.Current, f.Unit), formatValue(f.SlopePerHour, f.Unit), fmtHours(time.Duration(f.WindowSeconds)*time.Second),
		f.Samples, f.Confidence, formatValue(f.Limit, f.Unit), fmtTime(f.CrossesAt))
	if !now.IsZero() && f.CrossesAt.After(now) {
		s += " (in " + fmtHours(f.CrossesAt.Sub(now)) + ")"
	}
	return s
}

// formatValue renders a number in its unit for people.
func formatValue(v float64, unit string) string {
	switch unit {
	case events.UnitBytes:
		return humanBytes(v)
	case events.UnitCores:
		if math.Abs(v) < 1 {
			return fmt.Sprintf("%.0fm", v*1000)
		}
		return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64) + " cores"
	case events.UnitPercent:
		return fmt.Sprintf("%.0f%%", v)
	case events.UnitSeconds:
		return fmtHours(time.Duration(v * float64(time.Second)))
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// humanBytes renders bytes in Ki, Mi or Gi with at most one decimal.
func humanBytes(v float64) string {
	for _, u := range []struct {
		name string
		size float64
	}{{"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if math.Abs(v) >= u.size {
			return strconv.FormatFloat(math.Round(v/u.size*10)/10, 'f', -1, 64) + u.name
		}
	}
	return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
}

// fmtHours renders a duration to the minute ("2h30m", "45m"), in days
// past two days.
func fmtHours(d time.Duration) string {
	if d >= 48*time.Hour {
		return strconv.FormatFloat(math.Round(d.Hours()/24*10)/10, 'f', -1, 64) + " days"
	}
	d = d.Round(time.Minute)
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case h == 0:
		return fmt.Sprintf("%dm", m)
	case m == 0:
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dh%dm", h, m)
}

// policyObjectEvidence is what was read of the policy object, node or
// certificate a warning is reported on.
func policyObjectEvidence(in planInput) (events.Evidence, bool) {
	ref := in.Owner.ref()
	ev := func(kind events.EvidenceKind, title string, lines []string, data map[string]string) (events.Evidence, bool) {
		for i := range lines {
			lines[i] = quote(lines[i])
		}
		return events.Evidence{Kind: kind, Title: title, Source: ref + " (read by the planner)", Lines: lines, Data: data}, true
	}
	switch o := in.Owner.Object.(type) {
	case *corev1.ResourceQuota:
		var lines []string
		for _, res := range sortedResources(o.Status.Hard) {
			hard, used := o.Status.Hard[res], o.Status.Used[res]
			lines = append(lines, fmt.Sprintf("%s: used %s of hard %s", res, used.String(), hard.String()))
		}
		return ev(events.EvidencePolicy, fmt.Sprintf("ResourceQuota %s: used against hard", o.Name), lines, nil)
	case *corev1.LimitRange:
		var lines []string
		for _, l := range o.Spec.Limits {
			for _, res := range sortedResources(l.Default) {
				q := l.Default[res]
				lines = append(lines, fmt.Sprintf("%s default limit %s: %s", l.Type, res, q.String()))
			}
			for _, res := range sortedResources(l.DefaultRequest) {
				q := l.DefaultRequest[res]
				lines = append(lines, fmt.Sprintf("%s default request %s: %s", l.Type, res, q.String()))
			}
		}
		return ev(events.EvidencePolicy, fmt.Sprintf("LimitRange %s: the defaults a container without its own values gets", o.Name), lines, nil)
	case *policyv1.PodDisruptionBudget:
		lines := []string{fmt.Sprintf("minAvailable %s, maxUnavailable %s", intOrStr(o.Spec.MinAvailable), intOrStr(o.Spec.MaxUnavailable)),
			fmt.Sprintf("pods expected %d, healthy %d, desired healthy %d, disruptions allowed %d",
				o.Status.ExpectedPods, o.Status.CurrentHealthy, o.Status.DesiredHealthy, o.Status.DisruptionsAllowed)}
		if o.Spec.Selector != nil {
			lines = append(lines, "selector "+metav1.FormatLabelSelector(o.Spec.Selector))
		}
		return ev(events.EvidencePolicy, fmt.Sprintf("PodDisruptionBudget %s allows %d disruptions", o.Name, o.Status.DisruptionsAllowed), lines,
			map[string]string{"disruptions_allowed": strconv.Itoa(int(o.Status.DisruptionsAllowed)), "expected_pods": strconv.Itoa(int(o.Status.ExpectedPods))})
	case *certificate:
		lines := []string{fmt.Sprintf("notAfter %s, renewalTime %s", fmtTimePtr(o.Status.NotAfter), fmtTimePtr(o.Status.RenewalTime)),
			fmt.Sprintf("issuer %s %s, secret %s", o.Spec.IssuerRef.Kind, o.Spec.IssuerRef.Name, o.Spec.SecretName)}
		for _, c := range o.Status.Conditions {
			lines = append(lines, fmt.Sprintf("condition %s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message))
		}
		return ev(events.EvidenceConditions, fmt.Sprintf("Certificate %s expires %s", o.Name, fmtTimePtr(o.Status.NotAfter)), lines, nil)
	}
	return events.Evidence{}, false
}

func sortedResources(l corev1.ResourceList) []corev1.ResourceName {
	out := make([]corev1.ResourceName, 0, len(l))
	for k := range l {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// warningSteps are the diagnostic steps of a warning: what to look at,
// and what a person changes, with the exact commands.
func warningSteps(in planInput, b *builder, step stepFunc) []events.Step {
	w := in.Owner
	name := w.Ref.Name
	c := b.containerName()
	_, pod := b.podRef()
	on := func(s events.Step) events.Step { return b.onOwner(s) }
	evidence := quote(in.Incident.Message)
	switch in.Incident.Type {
	case events.IssueMemoryNearLimit:
		limit := "its limit"
		if _, cc, _ := w.container(c); cc != nil {
			if q, ok := cc.Resources.Limits[corev1.ResourceMemory]; ok {
				limit = "its " + q.String() + " limit"
			}
		}
		out := []events.Step{}
		if pod != "" {
			out = append(out, step(fmt.Sprintf("Container %s grows toward %s (%s): check its memory now", c, limit, forecastClause(in)), "top", "pod", pod, "--containers"))
		}
		return append(out,
			on(step(fmt.Sprintf("Raise the memory limit of %s by hand before the OOM if it needs more, or find the leak or the heap setting (-Xmx, GOMEMLIMIT, ...) that lets it grow", w.ref()),
				"set", "resources", w.ref(), "-c", c, "--limits=memory=<new limit>")))
	case events.IssueRecurringRestarts:
		out := []events.Step{}
		if pod != "" {
			out = append(out, step(fmt.Sprintf("Container %s restarts again and again without crash-looping (%s): read why its last run ended", c, evidence), "logs", pod, "-c", c, "--previous"),
				step("Its last termination (exit code, reason, OOMKilled?) and the kubelet's events (liveness probe kills)", "describe", "pod", pod))
		}
		return append(out, on(step(fmt.Sprintf("Fix the cause in the application or its liveness probe in %s", w.ref()), "get", w.ref(), "-o", "yaml")))
	case events.IssueReadyReplicasDipping:
		return []events.Step{
			on(step(fmt.Sprintf("The ready replicas of %s keep dipping (%s): read its conditions and the events of its pods", w.ref(), evidence), "describe", w.ref())),
			on(step("Which pods go unready, and how often (readiness probe failures, restarts, evictions)", "get", "pods", "-l", selectorOf(w), "-o", "wide")),
			on(step("The readiness probes it runs: too tight a timeout or threshold makes pods flap under load",
				"get", w.ref(), "-o", "jsonpath={range .spec.template.spec.containers[*]}{.name}: {.readinessProbe}{\"\\n\"}{end}")),
		}
	case events.IssueQuotaNearLimit:
		return []events.Step{
			on(step(fmt.Sprintf("ResourceQuota %s is nearly used up (%s): the next pods, or the next rollout's surge, are refused", name, evidence), "describe", "resourcequota", name)),
			on(step("What uses it: the pods of the namespace and their requests and limits",
				"get", "pods", "-o", "custom-columns=NAME:.metadata.name,REQUESTS:.spec.containers[*].resources.requests,LIMITS:.spec.containers[*].resources.limits")),
			on(step(fmt.Sprintf("By whoever runs the namespace: raise the hard limit of %s, or lower what the workloads request or run (kaar never changes quotas)", name), "edit", "resourcequota", name)),
		}
	case events.IssueLimitRangeExceedsQuota:
		return []events.Step{
			on(step(fmt.Sprintf("LimitRange %s gives containers defaults that the namespace's quota cannot hold (%s): the next pod without its own values is refused", name, evidence), "describe", "limitrange", name)),
			on(step("The quota the defaults are measured against", "describe", "resourcequota")),
			on(step(fmt.Sprintf("By whoever runs the namespace: lower the defaults of %s or raise the quota; or give every container its own requests and limits (kaar never changes either)", name), "edit", "limitrange", name)),
		}
	case events.IssuePDBBlocksDrain:
		return []events.Step{
			on(step(fmt.Sprintf("PodDisruptionBudget %s allows no disruption (%s): every node drain stalls on its pods", name, evidence), "describe", "pdb", name)),
			on(step("The workload it covers and its replicas", "get", "pdb", name, "-o", "yaml")),
			on(step("By the application's owner: run more replicas than minAvailable, or set maxUnavailable: 1 (kaar never changes PodDisruptionBudgets)", "edit", "pdb", name)),
		}
	case events.IssueNodeNearlyFull:
		node := func(title string, args ...string) events.Step {
			s := step(title)
			s.Target, s.Kubectl = w.Ref, clusterCommand(args...)
			return s
		}
		return []events.Step{
			node(fmt.Sprintf("Node %s is nearly full (%s): read its Allocated resources (requests against allocatable)", name, evidence), "describe", "node", name),
			node("What it really uses now (requests are what the scheduler counts; usage is what runs)", "top", "node", name),
			node("The pods on it and what they request: the largest are the ones to move or resize", "get", "pods", "--all-namespaces", "--field-selector", "spec.nodeName="+name, "-o", "wide"),
			node("By a person: add nodes (or let the cluster autoscaler), or lower requests that are far above usage; kaar never acts on nodes", "top", "pods", "--all-namespaces", "--sort-by=cpu"),
		}
	case events.IssueCertificateExpiring:
		cmctl := func(s events.Step, args ...string) events.Step { // cert-manager's command line, not kubectl
			s.Kubectl = text.ShellQuote(append(append([]string{"cmctl"}, args...), "-n", in.Incident.Namespace)...)
			return s
		}
		return []events.Step{
			on(step(fmt.Sprintf("Certificate %s expires soon and is not being renewed (%s): read its status, conditions and events", name, evidence), "describe", "certificate", name)),
			on(cmctl(step("Why cert-manager does not renew it: the issuer, the last CertificateRequest and its order or challenge (cmctl is cert-manager's command line)"), "status", "certificate", name)),
			on(step("The requests cert-manager made for it", "get", "certificaterequests", "-o", "wide")),
			on(cmctl(step("By a person, once the issuer works: ask cert-manager to renew it now (kaar never changes Certificates and never reads Secrets)"), "renew", name)),
		}
	case events.IssueMissingResources:
		out := []events.Step{on(step(fmt.Sprintf("Container %s of %s lacks memory or CPU values (%s): see what its template sets", c, w.ref(), evidence),
			"get", w.ref(), "-o", "jsonpath={range .spec.template.spec.containers[*]}{.name}: {.resources}{\"\\n\"}{end}"))}
		if pod != "" {
			out = append(out, step("What it really uses, to choose the values from", "top", "pod", pod, "--containers"))
		}
		return append(out, on(step(fmt.Sprintf("By the application's owner: set the requests near the observed usage and a memory limit with headroom in %s", w.ref()),
			"set", "resources", w.ref(), "-c", c, "--requests=cpu=<cpu>,memory=<memory>", "--limits=memory=<limit>")))
	case events.IssueMissingProbes:
		return missingProbeSteps(in, b, step, evidence)
	case events.IssueMutableImageTag:
		return mutableTagSteps(in, b, step, evidence)
	case events.IssueSingleNodeRisk:
		return []events.Step{
			on(step(fmt.Sprintf("The replicas of %s can all land on one node (%s): see where they run", w.ref(), evidence), "get", "pods", "-l", selectorOf(w), "-o", "wide")),
			on(step(fmt.Sprintf("By the application's owner: add a topologySpreadConstraint on kubernetes.io/hostname (maxSkew 1) or a preferred pod anti-affinity to the pod template of %s", w.ref()), "edit", w.ref())),
		}
	}
	return []events.Step{on(step(fmt.Sprintf("Inspect %s: %s", w.ref(), evidence), "describe", w.ref()))}
}

// missingProbeSteps say which probes a container lacks and what to add,
// from the ports it declares.
func missingProbeSteps(in planInput, b *builder, step stepFunc, evidence string) []events.Step {
	w := in.Owner
	c := b.containerName()
	what := "a readinessProbe (when it may serve) and a livenessProbe (when it must be restarted)"
	switch in.Incident.Reason {
	case "no_readiness_probe":
		what = "a readinessProbe (when it may serve traffic)"
	case "no_liveness_probe":
		what = "a livenessProbe (when it is stuck and must be restarted)"
	}
	how := "an httpGet on the application's health path, or a tcpSocket on the port it listens on"
	if _, cc, _ := w.container(c); cc != nil && len(cc.Ports) > 0 {
		p := cc.Ports[0]
		port := strconv.Itoa(int(p.ContainerPort))
		if p.Name != "" {
			port = p.Name
		}
		how = fmt.Sprintf("an httpGet on the application's health path at port %s, or a tcpSocket on port %s", port, port)
	}
	return []events.Step{
		b.onOwner(step(fmt.Sprintf("Container %s of %s has no %s (%s): see its template", c, w.ref(), strings.TrimPrefix(strings.ReplaceAll(in.Incident.Reason, "_", " "), "no "), evidence),
			"get", w.ref(), "-o", "yaml")),
		b.onOwner(step(fmt.Sprintf("By the application's owner: add %s to container %s: %s. Only the owner knows what healthy means; a probe copied from elsewhere can restart a healthy container", what, c, how),
			"edit", w.ref())),
	}
}

// mutableTagSteps name the image and the digest the pods run now, so a
// person can pin it.
func mutableTagSteps(in planInput, b *builder, step stepFunc, evidence string) []events.Step {
	w := in.Owner
	c := b.containerName()
	img := "<image>"
	if _, cc, _ := w.container(c); cc != nil {
		img = cc.Image
	}
	pin := img + "@<digest>"
	if cs := containerStatus(in.Pod, c); cs != nil {
		if i := strings.Index(cs.ImageID, "@sha256:"); i >= 0 {
			pin = strings.TrimSuffix(strings.TrimSuffix(img, ":latest"), "@") + cs.ImageID[i:]
		}
	}
	return []events.Step{
		b.onOwner(step(fmt.Sprintf("Container %s of %s runs image %s, whose tag can move (%s): a restart can pull another image. The digest its pods run now:", c, w.ref(), img, evidence),
			"get", "pods", "-l", selectorOf(w), "-o", "jsonpath={range .items[*]}{.metadata.name}: {.status.containerStatuses[*].imageID}{\"\\n\"}{end}")),
		b.onOwner(step(fmt.Sprintf("By the application's owner: pin a version tag or the digest in %s (and in its source, if a tool manages it)", w.ref()),
			"set", "image", w.ref(), c+"="+pin)),
	}
}

// selectorOf is the workload's pod selector for kubectl -l.
func selectorOf(w *workload) string {
	if w.Selector == nil {
		return "<selector>"
	}
	if s := metav1.FormatLabelSelector(w.Selector); s != "<none>" && s != "<error>" {
		return s
	}
	return "<selector>"
}

// intOrStr renders an optional int-or-percent ("-" when unset).
func intOrStr(v *intstr.IntOrString) string {
	if v == nil {
		return "-"
	}
	return v.String()
}
