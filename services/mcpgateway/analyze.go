package mcpgateway

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
)

// analyze_cluster must fit an assistant's context however broken the
// cluster is: it reads every matching incident from the watcher, answers
// with counts, the top causes and one small page (DefaultIncidentPage
// incidents, worst first), and pages with its own cursor. Details of one
// incident are get_incident's.
const (
	// DefaultIncidentPage is analyze_cluster's default page size: with the
	// summary it keeps the answer under 4 KB.
	DefaultIncidentPage = 5
	// maxTopCauses and maxNamespaces bound the summary.
	maxTopCauses  = 5
	maxNamespaces = 5
	// watcherPage is the page size asked of the watcher, maxScan the most
	// incidents read for one answer.
	watcherPage = 500
	maxScan     = 10000
)

var incidentIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

type analyzeArgs struct {
	Namespace string `json:"namespace"`
	IssueType string `json:"issue_type"`
	Class     string `json:"class"`
	Owner     string `json:"owner"`
	Limit     int    `json:"limit"`
	Cursor    string `json:"cursor"`
}

func (s *Service) analyzeTool() (*tool, error) {
	return defineTool("analyze_cluster", "Analyze cluster",
		"Summarize the failing workloads of the cluster, grouped into incidents: one incident per controlling owner "+
			"(Deployment, StatefulSet, DaemonSet, Job, or a bare Pod), container and issue type. Answers from the "+
			"watcher's live cache with counts by type, severity and namespace, the top causes, and one page of "+
			"incidents, worst first (default 5; pass next_cursor back as cursor for more). Failures are listed; "+
			"warnings (what is about to fail: trends, capacity, configuration risks) are only counted by type in "+
			"warnings unless asked for with class \"warning\" or a warning issue_type. Failure types: "+
			strings.Join(classTypeNames(events.ClassFailure), ", ")+". Warning types: "+
			strings.Join(classTypeNames(events.ClassWarning), ", ")+". Use it first; then get_incident for one "+
			"incident's details and evidence, and generate_remediation_plan for an incident's owner.",
		readOnlyHints,
		[]argSpec{
			namespaceArg("Only incidents in this namespace. Omit for every namespace.", false),
			issueTypeArg("Only incidents of this issue type. Omit for every type."),
			{name: "class", typ: typeString, desc: "failure (the default: failures listed, warnings counted) or warning (list the warnings).",
				enum: enumNames(events.IssueClasses())},
			{name: "owner", typ: typeString, desc: "Only incidents of this workload: its name (\"payments-api\") or Kind/name (\"Deployment/payments-api\").",
				pattern: ownerRE, rule: ruleOwner, maxLen: 317},
			{name: "limit", typ: typeInteger, desc: "Page size.", min: 1, max: events.MaxAnalyzeLimit, def: DefaultIncidentPage},
			{name: "cursor", typ: typeString, desc: "next_cursor of the previous page (with the same filters).", maxLen: 1024},
		},
		s.analyze)
}

// scanIncidents reads every incident matching req from the watcher,
// following its cursor. truncated is true when there were more than
// maxScan.
func (s *Service) scanIncidents(ctx context.Context, req events.AnalyzeRequest) (resp events.AnalyzeResponse, truncated bool, err error) {
	req.Limit, req.Cursor = watcherPage, ""
	for {
		page, err := request[events.AnalyzeResponse](ctx, s, events.ServiceWatcher, events.VerbAnalyze, req,
			s.cfg.RequestTimeout, map[string]string{"type": "issue_type"})
		if err != nil {
			return resp, false, err
		}
		if resp.Cluster == "" {
			resp = page
			resp.Incidents = append([]events.Incident(nil), page.Incidents...)
		} else {
			resp.Incidents = append(resp.Incidents, page.Incidents...)
		}
		if page.NextCursor == "" || len(page.Incidents) == 0 {
			return resp, false, nil
		}
		if len(resp.Incidents) >= maxScan {
			return resp, true, nil
		}
		req.Cursor = page.NextCursor
	}
}

// analyzeCursor is the position of the next page, tied to the filters it
// was issued for.
func analyzeCursor(a analyzeArgs, offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1:" + strconv.Itoa(offset) + ":" + filterHash(a)))
}

func filterHash(a analyzeArgs) string {
	h := sha256.Sum256([]byte(a.Namespace + "\x00" + a.IssueType + "\x00" + a.Owner + "\x00" + a.Class))
	return hex.EncodeToString(h[:6])
}

func parseAnalyzeCursor(a analyzeArgs) (int, error) {
	if a.Cursor == "" {
		return 0, nil
	}
	bad := argErr("cursor", fmt.Sprintf("%q is not a next_cursor of analyze_cluster with these filters: omit it for the first page", a.Cursor))
	raw, err := base64.RawURLEncoding.DecodeString(a.Cursor)
	if err != nil {
		return 0, bad
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 3 || parts[0] != "v1" || parts[2] != filterHash(a) {
		return 0, bad
	}
	off, err := strconv.Atoi(parts[1])
	if err != nil || off < 0 {
		return 0, bad
	}
	return off, nil
}

func (s *Service) analyze(ctx context.Context, _ *call, a analyzeArgs) (AnalyzeOut, string, error) {
	offset, err := parseAnalyzeCursor(a)
	if err != nil {
		return AnalyzeOut{}, "", err
	}
	if a.Limit == 0 {
		a.Limit = DefaultIncidentPage
	}
	if t := events.IssueType(a.IssueType); a.Class != "" && t != "" && string(t.Class()) != a.Class {
		return AnalyzeOut{}, "", argErr("class", fmt.Sprintf("%q contradicts issue_type %s, which is of class %s: omit class, or omit issue_type", a.Class, t, t.Class()))
	}
	req := events.AnalyzeRequest{Namespace: a.Namespace, Type: events.IssueType(a.IssueType), Owner: a.Owner, Class: events.IssueClass(a.Class)}
	resp, truncated, err := s.scanIncidents(ctx, req)
	if err != nil {
		return AnalyzeOut{}, "", fmt.Errorf("analyze cluster %s: %w", s.cfg.Cluster, err)
	}
	all := resp.Incidents
	out := AnalyzeOut{Cluster: resp.Cluster, Total: max(resp.Total, len(all)), ByType: map[string]int{},
		BySeverity: map[string]int{}, Incidents: []IncidentOut{}, GeneratedAt: resp.GeneratedAt.UTC().Truncate(time.Second), Truncated: truncated}
	for t, n := range resp.ByType {
		out.ByType[string(t)] = n
	}
	for t, n := range resp.Warnings {
		if out.Warnings == nil {
			out.Warnings = map[string]int{}
		}
		out.Warnings[string(t)] = n
	}
	nsCount := map[string]int{}
	type causeKey struct{ typ, reason string }
	causes := map[causeKey]*CauseOut{}
	for _, in := range all {
		out.BySeverity[string(in.Severity)]++
		nsCount[in.Namespace]++
		k := causeKey{string(in.Type), in.Reason}
		c := causes[k]
		if c == nil {
			c = &CauseOut{Type: k.typ, Reason: k.reason, Example: in.Namespace + "/" + in.Owner.Kind + "/" + in.Owner.Name}
			causes[k] = c
		}
		c.Incidents++
		c.Pods += in.PodCount
	}
	out.ByNamespace = topNamespaces(nsCount)
	for _, c := range causes {
		out.TopCauses = append(out.TopCauses, *c)
	}
	sort.Slice(out.TopCauses, func(i, j int) bool {
		ci, cj := out.TopCauses[i], out.TopCauses[j]
		if ci.Incidents != cj.Incidents {
			return ci.Incidents > cj.Incidents
		}
		if ci.Pods != cj.Pods {
			return ci.Pods > cj.Pods
		}
		return ci.Type+ci.Reason < cj.Type+cj.Reason
	})
	if len(out.TopCauses) > maxTopCauses {
		out.TopCauses = out.TopCauses[:maxTopCauses]
	}
	if offset > len(all) {
		offset = len(all)
	}
	end := min(offset+a.Limit, len(all))
	for _, in := range all[offset:end] {
		out.Incidents = append(out.Incidents, incidentOut(in))
	}
	out.Returned = len(out.Incidents)
	out.Offset = offset
	if end < len(all) {
		out.NextCursor = analyzeCursor(a, end)
	}
	return out, analyzeText(out), nil
}

func incidentOut(in events.Incident) IncidentOut {
	return IncidentOut{ID: in.ID, Namespace: in.Namespace, OwnerKind: in.Owner.Kind, OwnerName: in.Owner.Name,
		Type: string(in.Type), Reason: in.Reason, PodCount: in.PodCount,
		Restarts: in.RestartCount, Severity: string(in.Severity), Protected: in.Protected}
}

// topNamespaces keeps the namespaces with most incidents and sums the rest
// under "(other)".
func topNamespaces(counts map[string]int) map[string]int {
	names := make([]string, 0, len(counts))
	for ns := range counts {
		names = append(names, ns)
	}
	sort.Slice(names, func(i, j int) bool {
		if counts[names[i]] != counts[names[j]] {
			return counts[names[i]] > counts[names[j]]
		}
		return names[i] < names[j]
	})
	out := map[string]int{}
	for i, ns := range names {
		if i < maxNamespaces {
			out[ns] = counts[ns]
		} else {
			out["(other)"] += counts[ns]
		}
	}
	return out
}

func sortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func analyzeText(out AnalyzeOut) string {
	if out.Total == 0 {
		return fmt.Sprintf("No failing workloads in cluster %s.", out.Cluster) + warningsText(out)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d incident(s) in cluster %s (%s).", out.Total, out.Cluster, sortedCounts(out.ByType))
	if len(out.TopCauses) > 0 {
		b.WriteString(" Top causes:")
		for _, c := range out.TopCauses {
			fmt.Fprintf(&b, " %s/%s x%d;", c.Type, c.Reason, c.Incidents)
		}
	}
	fmt.Fprintf(&b, "\nIncidents %d-%d, worst first:", out.Offset+1, out.Offset+out.Returned)
	for _, in := range out.Incidents {
		fmt.Fprintf(&b, "\n- %s [%s] %s %s (%s) pods=%d", in.ID, in.Severity, events.DisplayPath(in.Namespace, in.OwnerKind+"/"+in.OwnerName),
			in.Type, in.Reason, in.PodCount)
	}
	if out.NextCursor != "" {
		fmt.Fprintf(&b, "\nMore: cursor %q.", out.NextCursor)
	}
	b.WriteString("\nDetails: get_incident {incident_id}.")
	return b.String() + warningsText(out)
}

// warningsText counts the warnings not listed.
func warningsText(out AnalyzeOut) string {
	if len(out.Warnings) == 0 {
		return ""
	}
	n := 0
	for _, c := range out.Warnings {
		n += c
	}
	return fmt.Sprintf("\n%d warning(s), not failing yet (%s): analyze_cluster {class: \"warning\"} lists them.", n, sortedCounts(out.Warnings))
}

// classTypeNames lists the issue types of class c.
func classTypeNames(c events.IssueClass) []string { return enumNames(events.TypesOf(c)) }

// --- get_incident -----------------------------------------------------

type incidentArgs struct {
	IncidentID string `json:"incident_id"`
}

func incidentIDArg() argSpec {
	return argSpec{name: "incident_id", typ: typeString, desc: "The incident id (id in analyze_cluster).", required: true,
		pattern: incidentIDRE, rule: "an incident id: 16 lower-case hex characters", maxLen: 16}
}

func (s *Service) getIncidentTool() (*tool, error) {
	return defineTool("get_incident", "Get incident",
		"Show one open incident in full: owner and owner chain, container, issue type and cause, exit code, "+
			"restarts, affected pods, first and last seen, how often it was observed, the message (quoted, "+
			"untrusted cluster data) and the remediation plans stored for it. Use the id from analyze_cluster.",
		readOnlyHints,
		[]argSpec{incidentIDArg()},
		func(ctx context.Context, _ *call, a incidentArgs) (IncidentDetailOut, string, error) {
			out, err := s.incident(ctx, a.IncidentID)
			if err != nil {
				return IncidentDetailOut{}, "", err
			}
			return out, incidentText(out), nil
		})
}

// incident finds an open incident by id in the watcher's cache and the
// plans stored for it.
func (s *Service) incident(ctx context.Context, id string) (IncidentDetailOut, error) {
	// Class by class, failures first: a failure's answer does not wait
	// for every warning of the cluster (most workloads carry one).
	for _, c := range events.IssueClasses() {
		resp, _, err := s.scanIncidents(ctx, events.AnalyzeRequest{Class: c})
		if err != nil {
			return IncidentDetailOut{}, fmt.Errorf("get incident %s: %w", id, err)
		}
		for _, in := range resp.Incidents {
			if in.ID != id {
				continue
			}
			plans, err := s.listPlans(ctx)
			if err != nil {
				return IncidentDetailOut{}, fmt.Errorf("get incident %s: %w", id, err)
			}
			return incidentDetail(in, plans), nil
		}
	}
	return IncidentDetailOut{}, fmt.Errorf("%w: no open incident %s in cluster %s: it resolved, or the id is wrong; list the open ones with analyze_cluster",
		ErrIncidentNotFound, id, s.cfg.Cluster)
}

// incidentDetail is get_incident's answer for an incident and the stored
// plans (those of the incident are kept, newest first).
func incidentDetail(in events.Incident, plans []events.Plan) IncidentDetailOut {
	out := IncidentDetailOut{ID: in.ID, Cluster: in.Cluster, Namespace: in.Namespace,
		Owner: targetOut(in.Owner), Container: in.Container, Type: string(in.Type), Reason: in.Reason,
		ExitCode: in.ExitCode, Restarts: in.RestartCount, PodCount: in.PodCount, Pods: in.Pods,
		Severity: string(in.Severity), Protected: in.Protected, FirstSeen: in.FirstSeen, LastSeen: in.LastSeen,
		Observations: in.Count, Plans: []PlanSummaryOut{}, Class: string(in.Type.Class())}
	if w := in.Warning; w != nil {
		out.Evidence = w.Summary()
		for _, m := range w.Measurements {
			out.Measurements = append(out.Measurements, MeasurementOut(m))
		}
		if f := w.Forecast; f != nil {
			out.Forecast = &ForecastOut{Metric: f.Metric, Unit: f.Unit, Current: f.Current, Limit: f.Limit, SlopePerHour: f.SlopePerHour,
				CrossesAt: f.CrossesAt.UTC(), Confidence: f.Confidence, WindowSeconds: f.WindowSeconds, Samples: f.Samples}
		}
	}
	for _, o := range in.OwnerChain {
		out.OwnerChain = append(out.OwnerChain, targetOut(o))
	}
	if in.Message != "" {
		out.MessageNotice = untrustedNotice
		out.QuotedMessage = quoteLines([]string{in.Message})
	}
	sort.Slice(plans, func(i, j int) bool { return plans[i].CreatedAt.After(plans[j].CreatedAt) })
	for _, p := range plans {
		if p.IncidentID == in.ID || (p.Namespace == in.Namespace && p.Target.Kind == in.Owner.Kind && p.Target.Name == in.Owner.Name && p.Type == in.Type) {
			out.Plans = append(out.Plans, planSummary(p))
		}
	}
	return out
}

func incidentText(in IncidentDetailOut) string {
	var b strings.Builder
	if len(in.QuotedMessage) > 0 || len(in.Plans) > 0 {
		b.WriteString(untrustedNotice + "\n")
	}
	fmt.Fprintf(&b, "Incident %s [%s]: %s", in.ID, in.Severity, events.DisplayObject(in.Owner.Kind, in.Namespace, in.Owner.Name))
	if in.Container != "" {
		fmt.Fprintf(&b, " container %s", in.Container)
	}
	fmt.Fprintf(&b, ": %s (%s), %d pod(s), %d restart(s), observed %d time(s) from %s to %s",
		in.Type, in.Reason, in.PodCount, in.Restarts, in.Observations,
		in.FirstSeen.UTC().Format(time.RFC3339), in.LastSeen.UTC().Format(time.RFC3339))
	if in.ExitCode != nil {
		fmt.Fprintf(&b, ", last exit code %d", *in.ExitCode)
	}
	if in.Protected {
		b.WriteString("\nProtected by policy: only diagnostic plans.")
	}
	if in.Class == string(events.ClassWarning) {
		b.WriteString("\nA warning: nothing has failed yet.")
		if in.Evidence != "" {
			b.WriteString(" Evidence: " + in.Evidence + ".")
		}
	}
	if len(in.Pods) > 0 {
		fmt.Fprintf(&b, "\nPods: %s", strings.Join(in.Pods, ", "))
	}
	if len(in.QuotedMessage) > 0 {
		b.WriteString("\n")
		writeQuoted(&b, "message", in.QuotedMessage)
	}
	if len(in.Plans) == 0 {
		fmt.Fprintf(&b, "\nNo plan yet: generate_remediation_plan {resource_type: %q, namespace: %q, resource_name: %q}.",
			in.Owner.Kind, in.Namespace, in.Owner.Name)
	}
	for _, p := range in.Plans {
		fmt.Fprintf(&b, "\nPlan %s (%s, risk %s): %s", p.PlanID, p.State, p.Risk, text.ForModel(p.Summary))
	}
	return b.String()
}
