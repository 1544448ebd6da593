package mcpgateway

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// nodeIncidentAndPlan are an incident about a Node and its plan: their
// namespace is events.ClusterScopeNamespace, a token for subjects and
// ids that people must not read.
func nodeIncidentAndPlan() (events.Incident, events.Plan) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	in := events.Incident{Cluster: "prod", Namespace: events.ClusterScopeNamespace,
		Owner: events.ObjectRef{Kind: "Node", APIVersion: "v1", Name: "worker-3"}, Type: events.IssueNodeNotReady,
		Reason: "not_ready", Message: "node worker-3 is NotReady", Severity: events.SeverityHigh, FirstSeen: now, LastSeen: now, Count: 1}
	in.ID = events.IncidentID(in.Cluster, in.Namespace, in.Owner.Kind, in.Owner.Name, "", in.Type)
	p := events.Plan{ID: "3f1c2d9e-4b5a-4c6d-8e7f-0a1b2c3d4e5f", IncidentID: in.ID, Cluster: "prod", Namespace: events.ClusterScopeNamespace,
		Target: in.Owner, Type: in.Type, Summary: "NodeNotReady in node/worker-3 (not ready): follow the diagnostic steps.",
		Steps: []events.Step{{Action: events.ActionDiagnostic, Title: "Read node worker-3", Risk: events.RiskNone, Target: in.Owner,
			Kubectl: "kubectl describe node worker-3"}},
		Risk: events.RiskNone, State: events.PlanProposed, Digest: "sha256:abc", CreatedAt: now, ExpiresAt: now.Add(time.Hour), DiagnosticOnly: true}
	return in, p
}

// noClusterToken fails when a text for people shows the namespace token;
// a tool argument that must carry it (namespace: "_cluster") is allowed.
func noClusterToken(t *testing.T, name, txt, want string) {
	t.Helper()
	rest := strings.ReplaceAll(txt, `namespace: "`+events.ClusterScopeNamespace+`"`, "")
	if strings.Contains(rest, events.ClusterScopeNamespace) || !strings.Contains(txt, want) {
		t.Errorf("%s shows %q or lacks %q:\n%s", name, events.ClusterScopeNamespace, want, txt)
	}
}

func TestTextsShowANodeWithoutTheClusterToken(t *testing.T) {
	in, p := nodeIncidentAndPlan()
	s := &Service{now: func() time.Time { return p.CreatedAt.Add(time.Minute) }}
	out := AnalyzeOut{Total: 1, Returned: 1, Incidents: []IncidentOut{incidentOut(in)}}
	noClusterToken(t, "analyze_cluster", analyzeText(out), "Node/worker-3 NodeNotReady")
	noClusterToken(t, "get_incident", incidentText(incidentDetail(in, []events.Plan{p})), "Incident "+in.ID+" [high]: Node worker-3: NodeNotReady")
	// Without a plan, the suggested call names the namespace token: an
	// argument, which the gateway accepts for Nodes.
	noClusterToken(t, "get_incident without plan", incidentText(incidentDetail(in, nil)), "Node worker-3")
	noClusterToken(t, "get_remediation_plan", planText(s.planOut(p)), "for Node/worker-3, NodeNotReady")
	noClusterToken(t, "elicitation", s.confirmMessage(p, p.Digest), "Target: Node worker-3 (cluster prod)")
	noClusterToken(t, "remediate_issue", remediateMessage(RemediateOut{Target: targetOut(p.Target)}, ""), "Node/worker-3")
}
