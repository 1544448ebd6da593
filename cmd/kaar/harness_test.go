package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kaar-dev/kaar/cmd/kaar/internal/cli"
	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/sandbox"
)

func TestMain(m *testing.M) {
	code := sandbox.RunTests(m)
	removeBuiltKaar()
	os.Exit(code)
}

// parallel marks a test as parallel: every test works in its own
// namespace with its own kaar (in-process or processes), bus and store.
// With KAAR_TRANSCRIPT set the tests run one after another, so that the
// transcript reads as one session per test.
func parallel(t *testing.T) {
	t.Helper()
	if os.Getenv("KAAR_TRANSCRIPT") == "" {
		t.Parallel()
	}
}

// instance is one running kaar (in-process "kaar serve", or split
// processes) watching one namespace of the sandbox.
type instance struct {
	base    string // http://127.0.0.1:port
	ns      string
	cluster string
	kube    kubernetes.Interface
	output  fmt.Stringer // what kaar printed, for in-process instances
	cfgFile string       // its configuration file, for in-process instances
}

// writeConfig writes a config file for one kaar instance; extra is YAML
// appended under remediation (e.g. "  approval_window: 2s").
func writeConfig(t testing.TB, c *sandbox.Cluster, ns, cluster string, port int, remediationExtra string, kubernetesExtra ...string) string {
	t.Helper()
	cfg := fmt.Sprintf(`server:
  host: 127.0.0.1
  port: %d
  log_level: debug
kubernetes:
  kubeconfig: %s
  namespace: %s
  cluster_name: %s
%s
signing:
  key_dir: %s
remediation:
  max_pods: 10
  verify_timeout: 2m
%s
`, port, c.KubeconfigPath, ns, cluster, strings.Join(kubernetesExtra, "\n"), t.TempDir(), remediationExtra)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startServe runs "kaar serve" in this process against the sandbox,
// watching namespace ns, and waits until its gateway answers /health.
func startServe(t testing.TB, c *sandbox.Cluster, ns, remediationExtra string, kubernetesExtra ...string) *instance {
	t.Helper()
	port := testutil.FreePort(t)
	cluster := "e2e-" + strings.ToLower(strings.ReplaceAll(ns[len(ns)-5:], "-", ""))
	cfgFile := writeConfig(t, c, ns, cluster, port, remediationExtra, kubernetesExtra...)
	// Its own JetStream store: instances of tests running in parallel
	// never share one (the default is the user's state directory).
	f, err := os.OpenFile(cfgFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(f, "nats:\n  store_dir: %s\n", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out testutil.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Main(ctx, []string{"serve", "--config", cfgFile, "--nats-listen", "127.0.0.1:0", "--no-sandbox"}, strings.NewReader(""), &out, &out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("kaar serve exited with %d", code)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("kaar serve did not stop within 30s of cancellation")
		}
		if t.Failed() {
			t.Logf("kaar serve output:\n%s", tail(out.String(), 200))
		}
	})
	inst := &instance{base: fmt.Sprintf("http://127.0.0.1:%d", port), ns: ns, cluster: cluster, kube: c.Clientset(), output: &out, cfgFile: cfgFile}
	waitHealthy(t, inst, done, &out)
	return inst
}

func waitHealthy(t testing.TB, inst *instance, done <-chan int, out fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case code := <-done:
			t.Fatalf("kaar exited early with %d:\n%s", code, tail(out.String(), 100))
		default:
		}
		resp, err := http.Get(inst.base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("kaar did not become healthy within 60s:\n%s", tail(out.String(), 100))
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// toolCaller calls one kaar tool and returns its structured result, or the
// tool error text (MCP isError, HTTP 4xx/5xx).
type toolCaller interface {
	Call(ctx context.Context, tool string, args map[string]any) (result json.RawMessage, toolErr string, err error)
}

// mcpCaller drives kaar with the official MCP Go SDK over streamable HTTP.
// With KAAR_TRANSCRIPT=path it appends every call and the text answer a
// model would read to that file (the case-study transcript).
type mcpCaller struct {
	cs         *sdk.ClientSession
	transcript io.Writer
	last       string // the last call recorded: polling repeats it
}

func newMCPCaller(t *testing.T, inst *instance, protocolVersion string) *mcpCaller {
	t.Helper()
	m := &mcpCaller{}
	// The client is an assistant with a person at the keyboard: kaar asks
	// the person to confirm every decision (MCP elicitation), and the
	// person agrees, as the user of a real client would.
	cl := sdk.NewClient(&sdk.Implementation{Name: "kaar-e2e", Version: "1"}, &sdk.ClientOptions{
		ElicitationHandler: func(_ context.Context, r *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			if m.transcript != nil {
				fmt.Fprintf(m.transcript, "The person is asked to confirm:\n\n%s\n\nand confirms.\n\n", r.Params.Message)
			}
			return &sdk.ElicitResult{Action: "accept", Content: map[string]any{"approve": true, "reject": true}}, nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var opts *sdk.ClientSessionOptions
	if protocolVersion != "" {
		opts = &sdk.ClientSessionOptions{ProtocolVersion: protocolVersion}
	}
	cs, err := cl.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: inst.base + "/mcp"}, opts)
	if err != nil {
		t.Fatalf("MCP connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	m.cs = cs
	if path := os.Getenv("KAAR_TRANSCRIPT"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatalf("KAAR_TRANSCRIPT: %v", err)
		}
		t.Cleanup(func() { f.Close() })
		fmt.Fprintf(f, "## %s (MCP %s, streamable HTTP)\n\n", t.Name(), cs.InitializeResult().ProtocolVersion)
		m.transcript = f
	}
	return m
}

// record appends one call and its text content to the transcript.
func (m *mcpCaller) record(tool string, args map[string]any, res *sdk.CallToolResult, took time.Duration) {
	if m.transcript == nil {
		return
	}
	a, _ := json.Marshal(args)
	var texts []string
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			texts = append(texts, tc.Text)
		}
	}
	key := tool + string(a) + strings.Join(texts, "\n")
	if key == m.last {
		return
	}
	m.last = key
	structured, _ := json.Marshal(res.StructuredContent)
	fmt.Fprintf(m.transcript, "-> %s %s\n<- (%s, isError=%t, structured %d bytes)\n%s\n\n", tool, a,
		took.Round(time.Millisecond), res.IsError, len(structured), strings.Join(texts, "\n"))
}

func (m *mcpCaller) Call(ctx context.Context, tool string, args map[string]any) (json.RawMessage, string, error) {
	start := time.Now()
	res, err := m.cs.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return nil, "", fmt.Errorf("MCP tools/call %s: %w", tool, err)
	}
	m.record(tool, args, res, time.Since(start))
	if res.IsError {
		var texts []string
		for _, c := range res.Content {
			if tc, ok := c.(*sdk.TextContent); ok {
				texts = append(texts, tc.Text)
			}
		}
		return nil, strings.Join(texts, "\n"), nil
	}
	if res.StructuredContent == nil {
		return nil, "", fmt.Errorf("MCP tools/call %s: no structured content", tool)
	}
	b, err := json.Marshal(res.StructuredContent)
	return b, "", err
}

// restCaller drives kaar through the original REST API, as the original
// README's curl examples do.
type restCaller struct{ base string }

func (r restCaller) Call(ctx context.Context, tool string, args map[string]any) (json.RawMessage, string, error) {
	body, err := json.Marshal(args)
	if err != nil {
		return nil, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/mcp/v1/invoke/"+tool, bytes.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("POST /mcp/v1/invoke/%s: %w", tool, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			return nil, "", fmt.Errorf("POST /mcp/v1/invoke/%s: HTTP %d without a JSON error: %s", tool, resp.StatusCode, b)
		}
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
			return nil, "", fmt.Errorf("POST /mcp/v1/invoke/%s: HTTP %d: %s", tool, resp.StatusCode, e.Error)
		}
		return nil, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, e.Error), nil
	}
	var ok struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &ok); err != nil || len(ok.Result) == 0 {
		return nil, "", fmt.Errorf("POST /mcp/v1/invoke/%s: 200 without a result: %s", tool, b)
	}
	return ok.Result, "", nil
}

// call invokes a tool that must succeed and decodes its result into T.
func call[T any](t testing.TB, c toolCaller, tool string, args map[string]any) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	raw, toolErr, err := c.Call(ctx, tool, args)
	if err != nil {
		t.Fatalf("%s(%v): %v", tool, args, err)
	}
	if toolErr != "" {
		t.Fatalf("%s(%v) failed: %s", tool, args, toolErr)
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: decode %s: %v", tool, raw, err)
	}
	return v
}

// callErr invokes a tool that must fail and returns its error text.
func callErr(t *testing.T, c toolCaller, tool string, args map[string]any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw, toolErr, err := c.Call(ctx, tool, args)
	if err != nil {
		t.Fatalf("%s(%v): transport error instead of a tool error: %v", tool, args, err)
	}
	if toolErr == "" {
		t.Fatalf("%s(%v) succeeded, want an error; result: %s", tool, args, raw)
	}
	return toolErr
}

// The tool results, as an independent client reads them.
type incidentOut struct {
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	OwnerKind string `json:"owner_kind"`
	OwnerName string `json:"owner_name"`
	Type      string `json:"type"`
	Reason    string `json:"reason"`
	PodCount  int    `json:"pod_count"`
}

type analyzeOut struct {
	Total     int            `json:"total"`
	ByType    map[string]int `json:"by_type"`
	Incidents []incidentOut  `json:"incidents"`
}

type stepOut struct {
	Action   string `json:"action"`
	Mutating bool   `json:"mutating"`
	DryRun   string `json:"dry_run"`
	Kubectl  string `json:"kubectl"`
}

type planOut struct {
	PlanID         string    `json:"plan_id"`
	Digest         string    `json:"digest"`
	State          string    `json:"state"`
	IssueType      string    `json:"issue_type"`
	DiagnosticOnly bool      `json:"diagnostic_only"`
	Steps          []stepOut `json:"steps"`
	Summary        string    `json:"summary"`
	ExpiresAt      time.Time `json:"expires_at"`
	Target         struct {
		Kind, Name string
	} `json:"target"`
}

type decisionOut struct {
	PlanID    string `json:"plan_id"`
	Digest    string `json:"digest"`
	Decision  string `json:"decision"`
	Duplicate bool   `json:"duplicate"`
}

type executionOut struct {
	State         string `json:"state"`
	Final         bool   `json:"final"`
	RefusalReason string `json:"refusal_reason"`
	Error         string `json:"error"`
	Steps         []struct {
		Index  int    `json:"index"`
		Action string `json:"action"`
		Status string `json:"status"`
	} `json:"steps"`
	Verification *struct {
		Healthy bool `json:"healthy"`
	} `json:"verification"`
}

// remediateOut is remediate_issue's answer: the plan and its execution.
type remediateOut struct {
	PlanID    string        `json:"plan_id"`
	Execution *executionOut `json:"execution"`
}

// waitIncidents polls analyze_cluster until want(incidents) holds.
func waitIncidents(t *testing.T, c toolCaller, ns string, timeout time.Duration, what string, want func(analyzeOut) bool) analyzeOut {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last analyzeOut
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		raw, toolErr, err := c.Call(ctx, "analyze_cluster", map[string]any{"namespace": ns})
		cancel()
		switch {
		case err != nil:
			t.Fatalf("analyze_cluster: %v", err)
		case toolErr != "" && !strings.Contains(toolErr, "unavailable"):
			t.Fatalf("analyze_cluster failed: %s", toolErr)
		case toolErr == "":
			// The watcher answers "unavailable" until its cache has synced.
			last = analyzeOut{}
			if err := json.Unmarshal(raw, &last); err != nil {
				t.Fatalf("analyze_cluster: decode %s: %v", raw, err)
			}
			if want(last) {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("analyze_cluster: %s not reached within %s; last answer: %+v", what, timeout, last)
		}
		time.Sleep(time.Second)
	}
}

// podsHealthy reports whether every pod of the Deployment's current
// revision is Running and Ready and there are as many as desired.
func podsHealthy(ctx context.Context, cs kubernetes.Interface, ns, name string) (bool, string) {
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	if !sandbox.DeploymentAvailable(dep) {
		return false, fmt.Sprintf("deployment %s: %d/%d updated, %d available", name, dep.Status.UpdatedReplicas, *dep.Spec.Replicas, dep.Status.AvailableReplicas)
	}
	sel := metav1.FormatLabelSelector(dep.Spec.Selector)
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return false, err.Error()
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		if st := sandbox.PodStatus(&p); st != "Running" {
			return false, fmt.Sprintf("pod %s is %s", p.Name, st)
		}
	}
	return true, ""
}

func waitPodsHealthy(t *testing.T, cs kubernetes.Interface, ns, name string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var why string
	for ctx.Err() == nil {
		var ok bool
		if ok, why = podsHealthy(ctx, cs, ns, name); ok {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("deployment %s/%s not healthy within %s: %s", ns, name, timeout, why)
}

// breakDeployment creates a healthy Deployment, waits for it, then rolls
// it to an image that does not exist, as the demo's frontend.
func breakDeployment(t *testing.T, cs kubernetes.Interface, ns, name string) *appsv1.Deployment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	replicas := int32(2)
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodsHealthy(t, cs, ns, name, 2*time.Minute)
	cur, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Template.Spec.Containers[0].Image = "nginx:1.27-nonexistent"
	cur, err = cs.AppsV1().Deployments(ns).Update(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cur
}

func generation(t *testing.T, cs kubernetes.Interface, ns, name string) int64 {
	t.Helper()
	dep, err := cs.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return dep.Generation
}
