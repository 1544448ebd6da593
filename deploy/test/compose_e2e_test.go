package deploytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/sandbox"
)

// The demo tokens of deploy/compose/demo-secrets/mcp-tokens.yaml: a person
// with the approver role, and a read-only one.
const (
	approverToken = "kaar-demo-approver-token"
	readToken     = "kaar-demo-read-token-0"
)

// composeCaseStudy are the case study's broken Deployments of the demo shop
// (sandbox.DemoBroken, not Extra) and what kaar must find.
var composeCaseStudy = map[string]string{
	"payments-api": "CrashLoopBackOff",
	"recommender":  "OOMKilled",
	"frontend":     "ImagePullBackOff",
}

// TestComposeDemoHealsTheCaseStudy is the compose demo as a user meets it,
// in Docker: hack/compose.sh up (what `make compose-up` runs: Docker
// installed and started if needed, the images built FROM scratch, the
// stack up and healthy) prints the MCP endpoint and token; every container
// answers its readiness probe; the original curl flow works (GET /health,
// GET /mcp/v1/tools, POST /mcp/v1/invoke/{tool}); over MCP, a person with
// the approver token analyzes the demo shop and plans the three case-study
// fixes; it approves one and kills the executor container (SIGKILL) while
// that plan executes (claimed, a step started, not finished), approves the
// other two while the executor is down, and starts it again: the killed
// plan is resumed by the restarted executor and finishes once, the others
// run once, each step is applied once and each Deployment gets exactly one
// new revision and heals.
// hack/compose.sh down removes it all. A project name and host ports of its
// own let it run beside a demo started by hand.
func TestComposeDemoHealsTheCaseStudy(t *testing.T) {
	sandbox.SkipShort(t, "it builds the images and runs docker-compose.yaml in Docker")
	t.Parallel()
	d := composeUp(t)
	d.checkReady(t)
	d.curlFlow(t)
	kube := d.kube(t)
	mcp := d.mcpSession(t, approverToken)

	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range composeCaseStudy {
			if !yield(n) {
				return
			}
		}
	})
	d.waitIncidents(ctx, t, mcp, "the three case-study incidents", func(in map[string]string) bool {
		for name, typ := range composeCaseStudy {
			if in[name] != typ {
				return false
			}
		}
		return true
	})
	t.Logf("analyze: the three case-study incidents after %s", time.Since(began).Round(time.Second))
	plans := map[string]composePlan{}
	revisions := map[string]int{}
	for _, name := range names {
		var p composePlan
		mcpCall(ctx, t, mcp, "generate_remediation_plan", map[string]any{
			"resource_type": "deployment", "namespace": "shop", "resource_name": name}, &p)
		if p.PlanID == "" || !strings.HasPrefix(p.Digest, "sha256:") || p.State != "proposed" || p.DiagnosticOnly {
			t.Fatalf("plan for %s: %+v", name, p)
		}
		plans[name] = p
		revisions[name] = revision(ctx, t, kube, name)
	}

	// One plan is approved with the executor running, and the executor
	// container is killed (SIGKILL) in the middle of it: claimed, a step
	// started, not finished. The others are approved while it is down:
	// the decisions wait on the bus, and nothing runs until it is back.
	killed := names[0]
	d.approve(ctx, t, mcp, killed, plans[killed])
	d.killMidPlan(ctx, t, mcp, killed, plans[killed].PlanID)
	killedAt := time.Now()
	for _, name := range names[1:] {
		d.approve(ctx, t, mcp, name, plans[name])
	}
	for _, name := range names[1:] {
		if got := revision(ctx, t, kube, name); got != revisions[name] {
			t.Fatalf("%s changed (revision %d -> %d) while the executor was stopped", name, revisions[name], got)
		}
	}
	if got := strings.TrimSpace(d.dockerOut("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", d.containerID(t, "executor"))); got != "exited 137" {
		t.Fatalf("executor container after docker kill: %q, want exited 137 (killed, not restarted by Docker)", got)
	}
	d.compose(t, "start", "executor")

	for _, name := range names {
		p := plans[name]
		var r struct {
			Execution *struct {
				State        string `json:"state"`
				Steps        []any  `json:"steps"`
				Verification *struct {
					Healthy bool `json:"healthy"`
				} `json:"verification"`
			} `json:"execution"`
		}
		raw := mcpCall(ctx, t, mcp, "remediate_issue", map[string]any{"plan_id": p.PlanID, "timeout_seconds": 300}, &r)
		if r.Execution == nil || r.Execution.State != "succeeded" || r.Execution.Verification == nil || !r.Execution.Verification.Healthy {
			t.Fatalf("remediate %s: want a succeeded, verified execution; got %s", name, raw)
		}
		d.checkOnce(ctx, t, mcp, name, p.PlanID, len(r.Execution.Steps), name == killed)
		if name == killed {
			t.Logf("%s: plan %s resumed by the restarted executor and finished %s after the kill", name, p.PlanID, time.Since(killedAt).Round(time.Second))
		}
		t.Logf("%s: plan %s executed once (%d steps), verified healthy, after %s", name, p.PlanID, len(r.Execution.Steps), time.Since(began).Round(time.Second))
		if got := revision(ctx, t, kube, name); got != revisions[name]+1 {
			t.Errorf("%s: revision %d -> %d, want one new revision (the plan ran once)", name, revisions[name], got)
		}
	}
	d.waitIncidents(ctx, t, mcp, "the case-study incidents resolved", func(in map[string]string) bool {
		for name := range composeCaseStudy {
			if _, open := in[name]; open {
				return false
			}
		}
		return true
	})
	t.Logf("case study healed over MCP in %s", time.Since(began).Round(time.Second))
	// The restarted executor is ready again, and so is everything else.
	d.checkReady(t)
}

// composeDemo is one running copy of docker-compose.yaml.
type composeDemo struct {
	root    string
	env     []string // DOCKER_HOST, DOCKER_CONFIG, the project and its ports
	project string
	mcpPort int
}

// composeUp runs hack/compose.sh up with a project name and host ports of
// the test's own, and hack/compose.sh down at the end (logs first, on
// failure).
func composeUp(t *testing.T) *composeDemo {
	t.Helper()
	d := &composeDemo{root: repoRoot(t), project: fmt.Sprintf("kaar-e2e-%d", os.Getpid()), mcpPort: freePort(t)}
	d.env = append(os.Environ(), "COMPOSE_PROJECT_NAME="+d.project, "KAAR_MCP_PORT="+strconv.Itoa(d.mcpPort),
		"KAAR_WEBHOOK_PORT="+strconv.Itoa(freePort(t)), "KAAR_CLUSTER_PORT="+strconv.Itoa(freePort(t)))
	// The same Docker the script uses: hack/docker.sh start installs and
	// starts what is missing, or fails loudly (never a skip).
	start := exec.Command(filepath.Join(d.root, "hack", "docker.sh"), "start")
	var stderr bytes.Buffer
	start.Stderr = &stderr
	out, err := start.Output()
	if err != nil {
		t.Fatalf("hack/docker.sh start: Docker is required and did not start: %v\n%s", err, stderr.String())
	}
	for _, f := range strings.Fields(strings.TrimPrefix(strings.TrimSpace(string(out)), "export ")) {
		if k, v, ok := strings.Cut(f, "="); ok && (k == "DOCKER_HOST" || k == "DOCKER_CONFIG") {
			d.env = append(d.env, k+"="+v)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("docker compose ps -a:\n%s", d.composeOut("ps", "-a"))
			t.Logf("docker compose logs:\n%s", tail(d.composeOut("logs", "--no-color", "--tail", "60"), 400))
		}
		down := exec.Command(filepath.Join(d.root, "hack", "compose.sh"), "down")
		down.Env = d.env
		if b, err := down.CombinedOutput(); err != nil {
			t.Errorf("hack/compose.sh down: %v\n%s", err, b)
		}
		// down stops the daemon hack/docker.sh started when nothing is
		// left on it; a daemon still running must hold none of ours.
		if !strings.Contains(d.dockerOut("info"), "Cannot connect to the Docker daemon") {
			if left := strings.TrimSpace(d.dockerOut("ps", "-aq", "--filter", "label=com.docker.compose.project="+d.project)); left != "" {
				t.Errorf("containers of %s left after down: %s", d.project, left)
			}
		}
	})
	began := time.Now()
	up := exec.Command(filepath.Join(d.root, "hack", "compose.sh"), "up")
	up.Env = d.env
	var progress testutil.Buffer
	up.Stderr = &progress
	banner, err := up.Output()
	if err != nil {
		t.Fatalf("hack/compose.sh up: %v\n%s", err, tail(progress.String(), 80))
	}
	var steps []string
	for _, l := range strings.Split(progress.String(), "\n") {
		if strings.HasPrefix(l, "== ") {
			steps = append(steps, l)
		}
	}
	t.Logf("hack/compose.sh up took %s:\n%s", time.Since(began).Round(time.Second), strings.Join(steps, "\n"))
	for _, want := range []string{fmt.Sprintf("http://127.0.0.1:%d/mcp", d.mcpPort), approverToken} {
		if !strings.Contains(string(banner), want) {
			t.Errorf("compose up does not print %q:\n%s", want, banner)
		}
	}
	return d
}

func (d *composeDemo) dockerOut(args ...string) string {
	cmd := exec.Command("docker", args...)
	cmd.Env = d.env
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("docker %v: %v\n%s", args, err, b)
	}
	return string(b)
}

func (d *composeDemo) composeOut(args ...string) string {
	return d.dockerOut(append([]string{"compose", "-f", filepath.Join(d.root, "docker-compose.yaml")}, args...)...)
}

// compose runs a docker compose command that must succeed.
func (d *composeDemo) compose(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("docker", append([]string{"compose", "-f", filepath.Join(d.root, "docker-compose.yaml")}, args...)...)
	cmd.Env = d.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker compose %v: %v\n%s", args, err, stderr.String())
	}
	return string(b)
}

// readiness is each long-running container's probe: the kaar services'
// /readyz (the gateway's on its HTTP port), the demo cluster's, and
// nats-server's JetStream health (nats-server has no /readyz).
var readiness = map[string]string{
	"nats":       ":8222/healthz?js-enabled-only=true",
	"cluster":    ":9090/readyz",
	"watcher":    ":9090/readyz",
	"planner":    ":9090/readyz",
	"executor":   ":9090/readyz",
	"mcpgateway": ":8000/readyz",
	"notifier":   ":9090/readyz",
}

// checkReady: every container is healthy by its compose healthcheck and
// answers its readiness probe from the host, on its own address; the
// provision job has completed.
func (d *composeDemo) checkReady(t *testing.T) {
	t.Helper()
	for svc, probe := range readiness {
		id := strings.TrimSpace(d.compose(t, "ps", "-q", svc))
		if id == "" {
			t.Errorf("%s: no running container", svc)
			continue
		}
		state := strings.Fields(d.dockerOut("inspect", "-f", "{{.State.Health.Status}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", id))
		if len(state) != 2 || state[0] != "healthy" {
			t.Errorf("%s: health and address %v, want healthy", svc, state)
			continue
		}
		url := "http://" + state[1] + probe
		resp, err := http.Get(url) //nolint:noctx // a probe with the client's default
		if err != nil {
			t.Errorf("%s: GET %s: %v", svc, url, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: GET %s: %s %s", svc, url, resp.Status, body)
		}
	}
	id := strings.TrimSpace(d.compose(t, "ps", "-aq", "provision"))
	if got := strings.TrimSpace(d.dockerOut("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id)); got != "exited 0" {
		t.Errorf("provision: %q, want exited 0", got)
	}
}

// curlFlow is the original README's curl examples against the gateway.
func (d *composeDemo) curlFlow(t *testing.T) {
	t.Helper()
	base := fmt.Sprintf("http://127.0.0.1:%d", d.mcpPort)
	status, body := httpDo(t, http.MethodGet, base+"/health", "", nil)
	var h struct{ Status, Cluster, Bus string }
	if status != http.StatusOK || json.Unmarshal(body, &h) != nil || h.Status != "ok" || h.Cluster != "compose" || h.Bus != "connected" {
		t.Errorf("GET /health: %d %s", status, body)
	}
	if status, body := httpDo(t, http.MethodGet, base+"/mcp/v1/tools", "", nil); status != http.StatusUnauthorized {
		t.Errorf("GET /mcp/v1/tools without a token: %d %s, want 401", status, body)
	}
	status, body = httpDo(t, http.MethodGet, base+"/mcp/v1/tools", readToken, nil)
	var tools struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &tools) != nil {
		t.Fatalf("GET /mcp/v1/tools: %d %s", status, body)
	}
	var names []string
	for _, tl := range tools.Tools {
		names = append(names, tl.Name)
	}
	for _, want := range []string{"analyze_cluster", "generate_remediation_plan", "approve_remediation_plan", "remediate_issue", "get_audit_trail"} {
		if !slices.Contains(names, want) {
			t.Errorf("GET /mcp/v1/tools lists %v, not %s", names, want)
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		status, body = httpDo(t, http.MethodPost, base+"/mcp/v1/invoke/analyze_cluster", readToken, map[string]any{"namespace": "shop"})
		var res struct {
			Result struct {
				Total int `json:"total"`
			} `json:"result"`
		}
		if status == http.StatusOK && json.Unmarshal(body, &res) == nil && res.Result.Total >= len(composeCaseStudy) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST /mcp/v1/invoke/analyze_cluster: %d %s, want the demo's incidents", status, body)
		}
		time.Sleep(2 * time.Second)
	}
}

func httpDo(t *testing.T, method, url, token string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// kube is the demo cluster's admin client, from the host through the
// published API server port (the kubeconfig compose up tells users to copy).
func (d *composeDemo) kube(t *testing.T) kubernetes.Interface {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	d.compose(t, "cp", "cluster:/kube/admin/kubeconfig-host", path)
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(rc)
}

// revision is the Deployment's rollout revision in the demo shop.
func revision(ctx context.Context, t *testing.T, kube kubernetes.Interface, name string) int {
	t.Helper()
	dep, err := kube.AppsV1().Deployments("shop").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get deployment %s: %v", name, err)
	}
	return revisionOf(t, dep)
}

func revisionOf(t *testing.T, dep *appsv1.Deployment) int {
	t.Helper()
	n, err := strconv.Atoi(dep.Annotations["deployment.kubernetes.io/revision"])
	if err != nil {
		t.Fatalf("deployment %s: revision annotation: %v", dep.Name, err)
	}
	return n
}

// bearer adds a token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// mcpSession connects the official MCP Go SDK client to the gateway over
// streamable HTTP with token. It has no elicitation handler: with the
// approver's token the person's role is what authorizes the decisions.
func (d *composeDemo) mcpSession(t *testing.T, token string) *sdk.ClientSession {
	t.Helper()
	cl := sdk.NewClient(&sdk.Implementation{Name: "kaar-compose-e2e", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := cl.Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint:   fmt.Sprintf("http://127.0.0.1:%d/mcp", d.mcpPort),
		HTTPClient: &http.Client{Transport: bearer{token: token, next: http.DefaultTransport}},
	}, nil)
	if err != nil {
		t.Fatalf("MCP connect: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// mcpCall calls a tool that must succeed, decodes its structured result
// into v and returns it raw.
func mcpCall(ctx context.Context, t *testing.T, cs *sdk.ClientSession, tool string, args map[string]any, v any) []byte {
	t.Helper()
	raw, toolErr := mcpTry(ctx, t, cs, tool, args)
	if toolErr != "" {
		t.Fatalf("%s(%v): %s", tool, args, toolErr)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: decode %s: %v", tool, raw, err)
	}
	return raw
}

// mcpTry calls a tool and returns its structured result or its error text.
func mcpTry(ctx context.Context, t *testing.T, cs *sdk.ClientSession, tool string, args map[string]any) ([]byte, string) {
	t.Helper()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("MCP tools/call %s: %v", tool, err)
	}
	if res.IsError {
		var texts []string
		for _, c := range res.Content {
			if tc, ok := c.(*sdk.TextContent); ok {
				texts = append(texts, tc.Text)
			}
		}
		return nil, strings.Join(texts, "\n")
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil || res.StructuredContent == nil {
		t.Fatalf("MCP tools/call %s: no structured content (%v)", tool, err)
	}
	return b, ""
}

// waitIncidents polls analyze_cluster on the demo shop until ok holds for
// its open incidents (owner name -> type).
func (d *composeDemo) waitIncidents(ctx context.Context, t *testing.T, cs *sdk.ClientSession, what string, ok func(map[string]string) bool) {
	t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
	var last map[string]string
	for {
		raw, toolErr := mcpTry(ctx, t, cs, "analyze_cluster", map[string]any{"namespace": "shop"})
		if toolErr == "" {
			var a struct {
				Incidents []struct {
					OwnerName string `json:"owner_name"`
					Type      string `json:"type"`
				} `json:"incidents"`
			}
			if err := json.Unmarshal(raw, &a); err != nil {
				t.Fatalf("analyze_cluster: decode %s: %v", raw, err)
			}
			last = map[string]string{}
			for _, in := range a.Incidents {
				last[in.OwnerName] = in.Type
			}
			if ok(last) {
				return
			}
		} else if !strings.Contains(toolErr, "unavailable") {
			t.Fatalf("analyze_cluster: %s", toolErr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("analyze_cluster: %s not seen within 4m; last incidents %v (%s)", what, last, toolErr)
		}
		time.Sleep(2 * time.Second)
	}
}

// checkOnce reads the plan's audit trail: approved once, claimed once,
// finished once, never refused, and each step started once. A plan whose
// executor was killed mid-plan (resumed) was resumed exactly once, by the
// restarted executor; a step its resume note lists as started but not
// recorded ("step N started") is started once more, in resume mode, and
// no other step is. Any other plan was never resumed.
func (d *composeDemo) checkOnce(ctx context.Context, t *testing.T, cs *sdk.ClientSession, name, planID string, steps int, resumed bool) {
	t.Helper()
	trail := auditTrail(ctx, t, cs, planID)
	count := map[string]int{}
	for _, r := range trail {
		count[r.Kind]++
	}
	want := map[string]int{"approved": 1, "claimed": 1, "step_started": steps, "execution_finished": 1, "refused": 0, "resumed": 0}
	if resumed {
		want["resumed"] = 1
		for _, r := range trail {
			if r.Kind == "resumed" {
				want["step_started"] += len(startedNotRecorded.FindAllString(strings.Join(r.Message, "\n"), -1))
				t.Logf("%s: plan %s: %s", name, planID, strings.Join(r.Message, " "))
			}
		}
	}
	for kind, n := range want {
		if count[kind] != n {
			t.Errorf("%s: plan %s: %d %q records, want %d (trail %v)", name, planID, count[kind], kind, n, count)
		}
	}
}

// startedNotRecorded is how the executor's resume note names a step that
// was started but whose result was not recorded when it was interrupted.
var startedNotRecorded = regexp.MustCompile(`step \d+ started`)

// auditRecord is one record of get_audit_trail, as a client reads it.
type auditRecord struct {
	Kind    string   `json:"kind"`
	Message []string `json:"quoted_message"`
}

func auditTrail(ctx context.Context, t *testing.T, cs *sdk.ClientSession, planID string) []auditRecord {
	t.Helper()
	var trail struct {
		Records []auditRecord `json:"records"`
	}
	mcpCall(ctx, t, cs, "get_audit_trail", map[string]any{"plan_id": planID}, &trail)
	return trail.Records
}

// approve approves plan p as the session's person.
func (d *composeDemo) approve(ctx context.Context, t *testing.T, cs *sdk.ClientSession, name string, p composePlan) {
	t.Helper()
	var dec struct {
		Decision string `json:"decision"`
		Digest   string `json:"digest"`
	}
	mcpCall(ctx, t, cs, "approve_remediation_plan", map[string]any{"plan_id": p.PlanID, "digest": p.Digest}, &dec)
	if dec.Decision != "approved" || dec.Digest != p.Digest {
		t.Fatalf("approve %s: %+v", name, dec)
	}
}

// containerID is the id of the service's container, running or not.
func (d *composeDemo) containerID(t *testing.T, svc string) string {
	t.Helper()
	id := strings.TrimSpace(d.compose(t, "ps", "-aq", svc))
	if id == "" {
		t.Fatalf("%s: no container", svc)
	}
	return id
}

// killMidPlan watches the plan's audit trail until the executor has
// claimed it and started a step, and kills the executor container
// (SIGKILL) before the plan finishes. The window is the step and the
// verification that waits for the rollout; if the plan finishes first,
// the test fails: it did not test what it says.
func (d *composeDemo) killMidPlan(ctx context.Context, t *testing.T, cs *sdk.ClientSession, name, planID string) {
	t.Helper()
	id := d.containerID(t, "executor")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		count := map[string]int{}
		for _, r := range auditTrail(ctx, t, cs, planID) {
			count[r.Kind]++
		}
		switch {
		case count["execution_finished"] > 0 || count["refused"] > 0:
			t.Fatalf("%s: plan %s finished before the executor could be killed mid-plan (trail %v): the window is too short", name, planID, count)
		case count["claimed"] > 0 && count["step_started"] > 0:
			kill := exec.Command("docker", "kill", "--signal", "KILL", id)
			kill.Env = d.env
			if b, err := kill.CombinedOutput(); err != nil {
				t.Fatalf("docker kill executor: %v\n%s", err, b)
			}
			t.Logf("%s: executor container killed (SIGKILL) mid-plan, the trail then %v", name, count)
			after := map[string]int{}
			for _, r := range auditTrail(ctx, t, cs, planID) {
				after[r.Kind]++
			}
			if after["execution_finished"] > 0 {
				t.Fatalf("%s: plan %s finished before the kill landed (trail %v): the window is too short", name, planID, after)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: plan %s: no step started within 2m of the approval (trail %v)", name, planID, count)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// composePlan is generate_remediation_plan's answer, as a client reads it.
type composePlan struct {
	PlanID         string `json:"plan_id"`
	Digest         string `json:"digest"`
	State          string `json:"state"`
	DiagnosticOnly bool   `json:"diagnostic_only"`
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
