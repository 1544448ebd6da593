package notifier

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// A Node's incident lives in namespace events.ClusterScopeNamespace, a
// token for subjects and ids: Slack says "Node worker-3", never
// "Node _cluster/worker-3".
func TestSlackShowsANodeWithoutTheClusterToken(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	in := events.Incident{Cluster: "prod", Namespace: events.ClusterScopeNamespace,
		Owner: events.ObjectRef{Kind: "Node", APIVersion: "v1", Name: "worker-3"}, Type: events.IssueNodeNotReady,
		Reason: "not_ready", Message: "node worker-3 is NotReady", Severity: events.SeverityHigh, FirstSeen: now, LastSeen: now, Count: 2}
	in.ID = events.IncidentID(in.Cluster, in.Namespace, in.Owner.Kind, in.Owner.Name, "", in.Type)
	p := events.Plan{ID: "3f1c2d9e-4b5a-4c6d-8e7f-0a1b2c3d4e5f", IncidentID: in.ID, Cluster: "prod", Namespace: events.ClusterScopeNamespace,
		Target: in.Owner, Type: in.Type, Summary: "NodeNotReady in node/worker-3: follow the diagnostic steps.", Risk: events.RiskNone,
		State: events.PlanProposed, Digest: "sha256:abc", CreatedAt: now, ExpiresAt: now.Add(time.Hour), DiagnosticOnly: true,
		Steps: []events.Step{{Action: events.ActionDiagnostic, Title: "Read node worker-3", Risk: events.RiskNone, Target: in.Owner}}}

	check := func(name, txt, want string) {
		t.Helper()
		if strings.Contains(txt, events.ClusterScopeNamespace) || !strings.Contains(txt, want) {
			t.Errorf("%s shows %q or lacks %q:\n%s", name, events.ClusterScopeNamespace, want, txt)
		}
	}
	for _, th := range []*thread{
		{Key: in.ID, Incident: &in, Transition: events.TransitionDetected, Observation: 1, Plan: &p, Status: StatusProposed},
		{Key: in.ID, Plan: &p, Status: StatusProposed}, // a plan asked for, without incident
	} {
		fallback, blocks := render(th, now.Add(time.Minute))
		b, err := json.Marshal(blocks)
		if err != nil {
			t.Fatal(err)
		}
		check("message text", fallback, "NodeNotReady: Node worker-3")
		check("blocks", string(b), "NodeNotReady: Node worker-3")
	}
	th := &thread{Key: in.ID, TS: "1.2", Incident: &in, Transition: events.TransitionDetected, Observation: 2}
	check("reminder", stillFailing(th), "Still failing: Node worker-3 (`not_ready`)")
	resolved := in
	th = &thread{Key: in.ID, TS: "1.2", Incident: &resolved, Transition: events.TransitionResolved, Observation: 3,
		NotifiedHash: incidentHash(&in, events.TransitionDetected)} // told of it while it failed
	check("resolved reply", incidentReply(th), "Resolved: Node worker-3 is healthy again.")
}
