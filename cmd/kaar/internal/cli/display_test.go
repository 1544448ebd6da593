package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
)

// A Node's incident lives in namespace events.ClusterScopeNamespace, a
// token for subjects and ids: kaar incidents shows Node/worker-3.
func TestIncidentsShowANodeWithoutTheClusterToken(t *testing.T) {
	e := newCLIBus(t)
	now := time.Now().UTC()
	in := events.Incident{Cluster: "default", Namespace: events.ClusterScopeNamespace,
		Owner: events.ObjectRef{Kind: "Node", APIVersion: "v1", Name: "worker-3"}, Type: events.IssueNodeNotReady,
		Reason: "not_ready", FirstSeen: now, LastSeen: now, Count: 1, Severity: events.SeverityHigh}
	e.publishDetected(t, in)
	out, code := e.run(t, "", "incidents")
	if code != 0 || !strings.Contains(out, in.ID) || !strings.Contains(out, " Node/worker-3 ") || strings.Contains(out, events.ClusterScopeNamespace) {
		t.Fatalf("incidents (%d): want Node/worker-3 without %q:\n%s", code, events.ClusterScopeNamespace, out)
	}
}

// publishDetected publishes in (its id computed) as detected on ISSUES,
// as the watcher of cluster "default" does.
func (e *cliBusEnv) publishDetected(t *testing.T, in events.Incident) {
	t.Helper()
	in.ID = events.IncidentID(in.Cluster, in.Namespace, in.Owner.Kind, in.Owner.Name, in.Container, in.Type)
	env, err := events.New(events.TransitionDetected.EventType(), events.SourceWatcher, "default", in.ID,
		events.IncidentEvent{Transition: events.TransitionDetected, Incident: in, ObservedAt: in.LastSeen, Observation: 1})
	if err != nil {
		t.Fatal(err)
	}
	subj, err := events.IssueSubject("default", in.Namespace, in.Type)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(context.Background(), e.js, subj, env, events.IncidentMsgID(in.ID, 1)); err != nil {
		t.Fatal(err)
	}
}
