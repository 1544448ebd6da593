package main_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kaar-dev/kaar/pkg/sandbox"
)

// A rollout that gave a Deployment a nodeSelector no node has leaves its
// new pod Pending. kaar (every service, driven over MCP) plans the
// selector of the last healthy revision, the executor applies it after
// approval, and the pod is scheduled and running.
func TestPendingNodeSelectorHealsThroughTheExecutor(t *testing.T) {
	parallel(t)
	c := sandbox.ForTest(t)
	cs := c.Clientset()
	ns := sandbox.NewNamespace(t, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dep := sandbox.TestDeployment(ns, "search", "nginx:1.27", 1, nil)
	dep.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodsHealthy(t, cs, ns, "search", 2*time.Minute)
	patch := []byte(`[{"op":"replace","path":"/spec/template/spec/nodeSelector","value":{"kubernetes.io/os":"plan9"}}]`)
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, "search", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	inst := startServe(t, c, ns, "watcher:\n  pending_grace: 1s")
	mcp := newMCPCaller(t, inst, "")
	waitIncidents(t, mcp, ns, 2*time.Minute, "the Pending incident", func(a analyzeOut) bool {
		return len(a.Incidents) == 1 && a.Incidents[0].Type == "Pending" && a.Incidents[0].OwnerName == "search"
	})
	p := call[planOut](t, mcp, "generate_remediation_plan", map[string]any{"resource_type": "deployment", "namespace": ns, "resource_name": "search"})
	var fix *stepOut
	for i := range p.Steps {
		if p.Steps[i].Action == "set_node_selector" {
			fix = &p.Steps[i]
		}
	}
	if fix == nil || fix.DryRun != "passed" || p.DiagnosticOnly {
		t.Fatalf("plan %+v: want a set_node_selector step with a passed dry run", p)
	}
	call[decisionOut](t, mcp, "approve_remediation_plan", map[string]any{"plan_id": p.PlanID, "digest": p.Digest})
	r := call[remediateOut](t, mcp, "remediate_issue", map[string]any{"plan_id": p.PlanID})
	if r.Execution == nil || r.Execution.State != "succeeded" || r.Execution.Verification == nil || !r.Execution.Verification.Healthy {
		t.Fatalf("remediate: %+v", r.Execution)
	}
	waitPodsHealthy(t, cs, ns, "search", time.Minute)
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=search"})
	if err != nil {
		t.Fatal(err)
	}
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp == nil && (pod.Spec.NodeSelector["kubernetes.io/os"] != "linux" || pod.Spec.NodeName == "") {
			t.Errorf("pod %s: selector %v on node %q", pod.Name, pod.Spec.NodeSelector, pod.Spec.NodeName)
		}
	}
	waitIncidents(t, mcp, ns, 2*time.Minute, "the incident resolved", func(a analyzeOut) bool { return a.Total == 0 })
}
