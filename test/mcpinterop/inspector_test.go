package mcpinterop_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kaar-dev/kaar/pkg/sandbox"
)

// The shapes of kaar's answers as an independent client reads them.
type mcpTool struct {
	Name         string         `json:"name"`
	Description  string         `json:"description"`
	InputSchema  map[string]any `json:"inputSchema"`
	OutputSchema map[string]any `json:"outputSchema"`
	Annotations  map[string]any `json:"annotations"`
}

type toolResult struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	StructuredContent json.RawMessage `json:"structuredContent"`
	IsError           bool            `json:"isError"`
	Meta              map[string]any  `json:"_meta"`
}

type testOut struct {
	Status  string `json:"status"`
	Cluster string `json:"cluster"`
	Bus     struct {
		Connected bool `json:"connected"`
		JetStream bool `json:"jetstream"`
	} `json:"bus"`
	Services []struct {
		Name string `json:"name"`
		Up   bool   `json:"up"`
	} `json:"services"`
}

type analyzeOut struct {
	Cluster   string         `json:"cluster"`
	Total     int            `json:"total"`
	ByType    map[string]int `json:"by_type"`
	Incidents []struct {
		Namespace string `json:"namespace"`
		OwnerKind string `json:"owner_kind"`
		OwnerName string `json:"owner_name"`
		Type      string `json:"type"`
		Reason    string `json:"reason"`
	} `json:"incidents"`
}

// pendingDeployment creates a Deployment whose pod no node can take (a
// node selector that matches none): the watcher reports one Pending
// incident (reason node_selector) once watcher.pending_grace has passed.
// It needs no room on the sandbox's nodes, which the other tests share.
func pendingDeployment(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	replicas := int32(1)
	labels := map[string]string{"app": name}
	_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"interop.kaar.dev/node": "none"},
					Containers:   []corev1.Container{{Name: "web", Image: "nginx:1.27"}},
				},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// pendingGrace makes the watcher report an unschedulable pod at once.
const pendingGrace = "watcher:\n  pending_grace: 1s"

// waitIncident polls analyze_cluster over REST until kaar reports the one
// Pending incident in ns, so the MCP peers then read a known state.
func waitIncident(t *testing.T, s *served) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last any
	for time.Now().Before(deadline) {
		res, err := restCall(s.base, "analyze_cluster", map[string]any{"namespace": s.ns})
		if err == nil {
			last = res
			if bt, ok := res["by_type"].(map[string]any); ok && bt["Pending"] == float64(1) {
				return
			}
		} else {
			last = err
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("kaar did not report the Pending incident in %s within 3m; last answer: %v", s.ns, last)
}

// restToolNames lists the tools through kaar's REST API (with token, when
// given): what MCP's tools/list must match.
func restToolNames(t *testing.T, base, token string) []string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/mcp/v1/tools", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /mcp/v1/tools: HTTP %d", resp.StatusCode)
	}
	var body struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range body.Tools {
		names = append(names, tl.Name)
	}
	sort.Strings(names)
	return names
}

// transport is how the Inspector reaches kaar: options go before a stdio
// command (after "--") and may go anywhere for a URL.
type transport struct {
	name      string
	era       string   // --protocol-era: "" (the Inspector's default, legacy), legacy or modern
	target    []string // the URL and --transport, or "--" and the command line
	pathFirst string   // directory put first on PATH (where "kaar" is found)
}

func (tr transport) args(opts ...string) []string {
	if tr.era != "" {
		opts = append(opts, "--protocol-era", tr.era)
	}
	return append(opts, tr.target...)
}

// checkTools asserts on tools/list as the Inspector printed it: the same
// tools as the REST API lists, each with its schemas and all four
// behaviour hints, the read-only ones marked so.
func checkTools(t *testing.T, tr transport, restNames []string, extra ...string) {
	t.Helper()
	var list struct {
		Tools []mcpTool `json:"tools"`
	}
	run := inspector(t, tr.pathFirst, tr.args(append([]string{"--method", "tools/list", "--format", "json"}, extra...)...)...)
	run.result(t, &list)
	var names []string
	byName := map[string]mcpTool{}
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
		byName[tl.Name] = tl
		if tl.Description == "" || tl.InputSchema["type"] != "object" || tl.OutputSchema["type"] != "object" {
			t.Errorf("%s: tool %s: want a description and object input and output schemas, got %+v", tr.name, tl.Name, tl)
		}
		for _, hint := range []string{"readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"} {
			if _, ok := tl.Annotations[hint].(bool); !ok {
				t.Errorf("%s: tool %s: annotation %s is not set: %v", tr.name, tl.Name, hint, tl.Annotations)
			}
		}
	}
	sort.Strings(names)
	if !reflect.DeepEqual(names, restNames) {
		t.Errorf("%s: tools/list names %v, the REST API lists %v", tr.name, names, restNames)
	}
	for _, name := range []string{"analyze_cluster", "test", "get_incident", "list_remediation_plans"} {
		a := byName[name].Annotations
		if a["readOnlyHint"] != true || a["destructiveHint"] != false {
			t.Errorf("%s: %s should be read-only and not destructive: %v", tr.name, name, a)
		}
	}
	if a := byName["approve_remediation_plan"].Annotations; a["readOnlyHint"] != false || a["destructiveHint"] != true {
		t.Errorf("%s: approve_remediation_plan should be marked destructive: %v", tr.name, a)
	}
}

// callTool calls one tool with the Inspector and decodes its structured
// content into v.
func callTool(t *testing.T, tr transport, tool string, args map[string]any, v any) toolResult {
	t.Helper()
	opts := []string{"--method", "tools/call", "--tool-name", tool, "--format", "json"}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, "--tool-args-json", string(b))
	}
	run := inspector(t, tr.pathFirst, tr.args(opts...)...)
	var res toolResult
	run.result(t, &res)
	if res.IsError || len(res.Content) == 0 || res.Content[0].Type != "text" || res.Content[0].Text == "" || len(res.StructuredContent) == 0 {
		t.Fatalf("%s: %s: want a text and structured content without isError: %s", tr.name, tool, run)
	}
	// In the 2026-07-28 era every result names the server in _meta (there
	// is no initialize); the 2025-11-25 era has no such field.
	info, _ := res.Meta["io.modelcontextprotocol/serverInfo"].(map[string]any)
	if modern := tr.era == "modern"; modern != (info != nil) || (modern && info["name"] != "kaar") {
		t.Errorf("%s: %s: _meta %v: not the answer of the protocol era asked for (%s)", tr.name, tool, res.Meta, tr.era)
	}
	if err := json.Unmarshal(res.StructuredContent, v); err != nil {
		t.Fatalf("%s: %s: decode structuredContent: %v: %s", tr.name, tool, err, res.StructuredContent)
	}
	return res
}

func checkTestTool(t *testing.T, tr transport, cluster string) {
	t.Helper()
	var out testOut
	callTool(t, tr, "test", nil, &out)
	if out.Status != "ok" || out.Cluster != cluster || !out.Bus.Connected || !out.Bus.JetStream || len(out.Services) < 3 {
		t.Errorf("%s: test: want status ok, cluster %q, bus connected with JetStream, the services: %+v", tr.name, cluster, out)
	}
	for _, svc := range out.Services {
		if !svc.Up {
			t.Errorf("%s: test: service %s is down: %+v", tr.name, svc.Name, out)
		}
	}
}

func checkAnalyze(t *testing.T, tr transport, s *served) {
	t.Helper()
	var out analyzeOut
	callTool(t, tr, "analyze_cluster", map[string]any{"namespace": s.ns}, &out)
	if out.Cluster != s.cluster || out.Total != 1 || out.ByType["Pending"] != 1 || len(out.Incidents) != 1 {
		t.Fatalf("%s: analyze_cluster: want the one Pending incident of %s in cluster %s, got %+v", tr.name, s.ns, s.cluster, out)
	}
	if in := out.Incidents[0]; in.Namespace != s.ns || in.OwnerKind != "Deployment" || in.OwnerName != "web" || in.Type != "Pending" || in.Reason != "node_selector" {
		t.Errorf("%s: analyze_cluster: incident %+v, want Deployment %s/web Pending for node_selector", tr.name, in, s.ns)
	}
}

// TestInspectorHTTPAndStdio drives kaar with the MCP Inspector CLI over
// streamable HTTP (the URL kaar serve prints) and over stdio (the command
// line kaar serve prints, run as printed with kaar found on PATH), in both
// protocol eras: it lists the tools and calls the read-only tools test and
// analyze_cluster.
func TestInspectorHTTPAndStdio(t *testing.T) {
	t.Parallel()
	mcpTools(t)
	c := sandbox.ForTest(t)
	cs := c.Clientset()
	ns := sandbox.NewNamespace(t, cs)
	pendingDeployment(t, cs, ns, "web")
	s := startServe(t, c, ns, serveOptions{extraYAML: pendingGrace})
	waitIncident(t, s)
	restNames := restToolNames(t, s.base, "")

	stdio := strings.Fields(s.stdioLine)
	if stdio[0] != "kaar" || !strings.Contains(s.stdioLine, "--stdio") {
		t.Fatalf("kaar serve printed the stdio command line %q", s.stdioLine)
	}
	httpTarget := []string{s.mcpURL, "--transport", "http"}
	stdioTarget := append([]string{"--"}, stdio...)
	kaarDir := filepath.Dir(kaarBinary(t))
	// legacy: initialize with protocol 2025-11-25; modern: 2026-07-28
	// (server/discover, stateless requests).
	transports := []transport{
		{name: "http-legacy", era: "legacy", target: httpTarget},
		{name: "http-modern", era: "modern", target: httpTarget},
		{name: "stdio-legacy", era: "legacy", target: stdioTarget, pathFirst: kaarDir},
		{name: "stdio-modern", era: "modern", target: stdioTarget, pathFirst: kaarDir},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			// --strict: exit 6 on a tool schema that clients cannot map
			// (error severity); warnings are printed only.
			checkTools(t, tr, restNames, "--strict")
			checkTestTool(t, tr, s.cluster)
			checkAnalyze(t, tr, s)
		})
	}
}

// TestStdioBannerLineNamesCluster: the stdio command line that kaar serve
// prints must reach that serve's pipeline also when the cluster has a name
// other than "default" (the name is part of every bus subject).
func TestStdioBannerLineNamesCluster(t *testing.T) {
	t.Parallel()
	mcpTools(t)
	c := sandbox.ForTest(t)
	s := startServe(t, c, sandbox.NewNamespace(t, c.Clientset()), serveOptions{cluster: "interop-named"})
	tr := transport{name: "stdio", target: append([]string{"--"}, strings.Fields(s.stdioLine)...), pathFirst: filepath.Dir(kaarBinary(t))}
	var out testOut
	callTool(t, tr, "test", nil, &out)
	o := outcome{}
	if out.Status != "ok" || out.Cluster != s.cluster {
		o = outcome{failed: true, message: fmt.Sprintf("%q printed by a serve of cluster %q answers test with status %q for cluster %q", s.stdioLine, s.cluster, out.Status, out.Cluster)}
	}
	compareExpected(t, "", loadExpectedFailures(t), map[string]outcome{"interop/stdio-banner-cluster-name": o})
}
