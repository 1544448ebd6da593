package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// kaar incidents lists failures and counts warnings; --warnings lists the
// warnings with their evidence.
func TestIncidentsWarnings(t *testing.T) {
	e := newCLIBus(t)
	now := time.Now().UTC()
	publish := func(in events.Incident) {
		t.Helper()
		in.Cluster, in.FirstSeen, in.LastSeen, in.Count, in.Severity = "default", now, now, 1, in.Type.DefaultSeverity()
		e.publishDetected(t, in)
	}
	web := events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web", APIVersion: "apps/v1"}
	publish(events.Incident{Namespace: "shop", Owner: web, Container: "app", Type: events.IssueOOMKilled, Reason: "oom_killed", PodCount: 1})
	publish(events.Incident{Namespace: "shop", Owner: events.ObjectRef{Kind: "ResourceQuota", Namespace: "shop", Name: "compute"},
		Type: events.IssueQuotaNearLimit, Reason: "near_limit", Warning: &events.WarningEvidence{Measurements: []events.Measurement{
			{Name: "requests.memory", Value: 3.8 * (1 << 30), Limit: 4 << 30, Unit: events.UnitBytes}}}})

	out, code := e.run(t, "", "incidents")
	if code != 0 || !strings.Contains(out, "OOMKilled") || strings.Contains(out, "QuotaNearLimit") ||
		!strings.Contains(out, "1 open warning(s), nothing failed yet: kaar incidents --warnings") {
		t.Fatalf("incidents (%d): want the failure listed and the warning counted:\n%s", code, out)
	}
	out, code = e.run(t, "", "incidents", "--warnings")
	if code != 0 || strings.Contains(out, "OOMKilled") || !strings.Contains(out, "ResourceQuota/shop/compute") ||
		!strings.Contains(out, "requests.memory 3.8Gi of 4Gi (95%)") {
		t.Fatalf("incidents --warnings (%d): want the warning with its evidence:\n%s", code, out)
	}
}
