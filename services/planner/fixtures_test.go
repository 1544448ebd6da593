package planner

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testCluster is the cluster name of the tests.
const testCluster = "test"

// shopFixture is one demo workload recorded from the sandbox
// (testdata/shop/<name>.json: kubectl get -o json, managedFields removed):
// the Deployment, its ReplicaSets, pods and events.
type shopFixture struct {
	Deployment  appsv1.Deployment   `json:"deployment"`
	ReplicaSets []appsv1.ReplicaSet `json:"replicaSets"`
	Pods        []corev1.Pod        `json:"pods"`
	Events      []corev1.Event      `json:"events"`
}

func loadShop(t testing.TB, name string) shopFixture {
	t.Helper()
	var f shopFixture
	readJSON(t, filepath.Join("testdata", "shop", name+".json"), &f)
	return f
}

func loadNodes(t testing.TB) []corev1.Node {
	t.Helper()
	var nodes []corev1.Node
	readJSON(t, filepath.Join("testdata", "shop", "nodes.json"), &nodes)
	return nodes
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// failingPod is the first pod that is not ready (the one the incident is
// about).
func (f shopFixture) failingPod(t testing.TB) *corev1.Pod {
	t.Helper()
	for i := range f.Pods {
		p := &f.Pods[i]
		ready := false
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			return p
		}
	}
	t.Fatalf("fixture %s has no failing pod", f.Deployment.Name)
	return nil
}

// incident builds the incident the watcher would announce for the
// fixture's failing pod.
func (f shopFixture) incident(t testing.TB, typ events.IssueType, container string) events.Incident {
	t.Helper()
	p := f.failingPod(t)
	d := f.Deployment
	owner := events.ObjectRef{Kind: KindDeployment, Namespace: d.Namespace, Name: d.Name, UID: string(d.UID), APIVersion: "apps/v1"}
	chain := []events.ObjectRef{owner}
	if c := metav1.GetControllerOf(p); c != nil {
		chain = []events.ObjectRef{{Kind: c.Kind, Namespace: d.Namespace, Name: c.Name, UID: string(c.UID), APIVersion: c.APIVersion}, owner}
	}
	seen := time.Date(2026, 11, 27, 0, 40, 0, 0, time.UTC)
	inc := events.Incident{
		ID:      events.IncidentID(testCluster, d.Namespace, KindDeployment, d.Name, container, typ),
		Cluster: testCluster, Namespace: d.Namespace, Owner: owner, OwnerChain: chain, Container: container,
		Type: typ, Reason: "test_reason", Pods: []string{p.Name}, PodCount: 1,
		FirstSeen: seen.Add(-time.Minute), LastSeen: seen, Count: 3, Severity: typ.DefaultSeverity(),
	}
	if cs := containerStatus(p, container); cs != nil && cs.LastTerminationState.Terminated != nil {
		code := cs.LastTerminationState.Terminated.ExitCode
		inc.ExitCode = &code
		inc.RestartCount = cs.RestartCount
	}
	if err := inc.Validate(); err != nil {
		t.Fatalf("fixture incident: %v", err)
	}
	return inc
}

// input builds the planInput gather would read for the fixture.
func (f shopFixture) input(t testing.TB, cfg Config, typ events.IssueType, container string) planInput {
	t.Helper()
	dep := f.Deployment.DeepCopy()
	w, err := workloadOf(dep)
	if err != nil {
		t.Fatal(err)
	}
	in := planInput{Cfg: cfg, Incident: f.incident(t, typ, container), Owner: w, Pod: f.failingPod(t),
		ReplicaSets: f.ReplicaSets, Events: f.Events, Now: time.Date(2026, 11, 27, 0, 41, 0, 0, time.UTC)}
	for _, p := range f.Pods {
		if isEvicted(&p) {
			in.EvictedPods = append(in.EvictedPods, p)
		}
	}
	return in
}

// testConfig is the default configuration for cluster "test".
func testConfig(t testing.TB) Config {
	t.Helper()
	c := config.Default()
	c.Kubernetes.ClusterName = testCluster
	cfg, err := ConfigFrom(c).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// acceptAll is a dry run that accepts every step.
func acceptAll(events.Step) events.DryRunResult {
	return events.DryRunResult{OK: true, Message: "accepted", At: time.Date(2026, 11, 27, 0, 41, 0, 0, time.UTC)}
}

// decodeOps decodes a JSON patch.
func decodeOps(t testing.TB, raw json.RawMessage) []map[string]any {
	t.Helper()
	var ops []map[string]any
	if err := json.Unmarshal(raw, &ops); err != nil {
		t.Fatalf("patch %s: %v", raw, err)
	}
	return ops
}
