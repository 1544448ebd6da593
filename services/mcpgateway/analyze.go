package mcpgateway

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
)

type analyzeArgs struct {
	Namespace string `json:"namespace"`
	IssueType string `json:"issue_type"`
	Owner     string `json:"owner"`
	Limit     int    `json:"limit"`
	Cursor    string `json:"cursor"`
}

func (s *Service) analyzeTool() (*tool, error) {
	return defineTool("analyze_cluster", "Analyze cluster",
		"List the failing workloads of the cluster, grouped into incidents: one incident per controlling owner "+
			"(Deployment, StatefulSet, DaemonSet, Job, or a bare Pod), container and issue type, with pod count, "+
			"restarts, severity and first/last seen. Answers from the watcher's live cache, worst first, paged "+
			"(pass next_cursor back as cursor). Issue types: "+strings.Join(issueTypeNames(), ", ")+". "+
			"Use it first; then generate_remediation_plan for an incident's owner.",
		readOnlyHints,
		[]argSpec{
			namespaceArg("Only incidents in this namespace. Omit for every namespace.", false),
			issueTypeArg("Only incidents of this issue type. Omit for every type."),
			{name: "owner", typ: typeString, desc: "Only incidents of this workload: its name (\"payments-api\") or Kind/name (\"Deployment/payments-api\").",
				pattern: ownerRE, rule: ruleOwner, maxLen: 317},
			{name: "limit", typ: typeInteger, desc: "Page size.", min: 1, max: events.MaxAnalyzeLimit, def: events.DefaultAnalyzeLimit},
			{name: "cursor", typ: typeString, desc: "next_cursor of the previous page.", maxLen: 1024},
		},
		s.analyze)
}

func (s *Service) analyze(ctx context.Context, _ *call, a analyzeArgs) (AnalyzeOut, string, error) {
	req := events.AnalyzeRequest{Namespace: a.Namespace, Type: events.IssueType(a.IssueType),
		Owner: a.Owner, Limit: a.Limit, Cursor: a.Cursor}
	resp, err := request[events.AnalyzeResponse](ctx, s, events.ServiceWatcher, events.VerbAnalyze, req,
		s.cfg.RequestTimeout, map[string]string{"type": "issue_type"})
	if err != nil {
		return AnalyzeOut{}, "", fmt.Errorf("analyze cluster %s: %w", s.cfg.Cluster, err)
	}
	out := AnalyzeOut{Cluster: resp.Cluster, Total: resp.Total, Returned: len(resp.Incidents),
		ByType: map[string]int{}, Incidents: make([]IncidentOut, 0, len(resp.Incidents)),
		NextCursor: resp.NextCursor, GeneratedAt: resp.GeneratedAt}
	for t, n := range resp.ByType {
		out.ByType[string(t)] = n
	}
	for _, in := range resp.Incidents {
		out.Incidents = append(out.Incidents, IncidentOut{ID: in.ID, Namespace: in.Namespace,
			OwnerKind: in.Owner.Kind, OwnerName: in.Owner.Name, Container: in.Container,
			Type: string(in.Type), Reason: in.Reason, PodCount: in.PodCount, Restarts: in.RestartCount,
			Severity: string(in.Severity), Protected: in.Protected, FirstSeen: in.FirstSeen, LastSeen: in.LastSeen})
	}
	return out, analyzeText(out), nil
}

func analyzeText(out AnalyzeOut) string {
	if out.Total == 0 {
		return fmt.Sprintf("No failing workloads in cluster %s.", out.Cluster)
	}
	var b strings.Builder
	types := make([]string, 0, len(out.ByType))
	for t := range out.ByType {
		types = append(types, t)
	}
	sort.Strings(types)
	counts := make([]string, len(types))
	for i, t := range types {
		counts[i] = fmt.Sprintf("%s=%d", t, out.ByType[t])
	}
	fmt.Fprintf(&b, "%d incident(s) in cluster %s (%s); showing %d:", out.Total, out.Cluster, strings.Join(counts, ", "), out.Returned)
	for _, in := range out.Incidents {
		fmt.Fprintf(&b, "\n- [%s] %s/%s/%s %s (%s): %d pod(s), %d restart(s), last seen %s",
			in.Severity, in.Namespace, in.OwnerKind, in.OwnerName, in.Type, in.Reason, in.PodCount, in.Restarts,
			in.LastSeen.UTC().Format("2006-01-02T15:04:05Z"))
	}
	if out.NextCursor != "" {
		fmt.Fprintf(&b, "\nMore: call again with cursor %q.", out.NextCursor)
	}
	return b.String()
}
