package mcpgateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestStdioServesMCPToASpawningClient runs the stdio transport over
// in-process pipes, as `kaar mcp --stdio` would over its stdin and
// stdout, and drives it with the go-sdk client.
func TestStdioServesMCPToASpawningClient(t *testing.T) {
	e := newEnv(t)
	clientToServerR, clientToServerW := io.Pipe()
	serverToClientR, serverToClientW := io.Pipe()
	ctx, cancel := context.WithCancel(e.ctx)
	served := make(chan error, 1)
	go func() {
		served <- e.gw.ServeStdio(ctx, clientToServerR, serverToClientW)
		_ = serverToClientW.Close()
	}()

	cl := sdk.NewClient(&sdk.Implementation{Name: "stdio-test", Version: "1"}, nil)
	cs, err := cl.Connect(e.ctx, &sdk.IOTransport{Reader: serverToClientR, Writer: clientToServerW}, nil)
	if err != nil {
		t.Fatalf("connect over stdio: %v", err)
	}
	res, err := cs.ListTools(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tools) != len(wantHints) {
		t.Errorf("%d tools over stdio, want %d", len(res.Tools), len(wantHints))
	}
	out := structured[AnalyzeOut](t, callTool(t, e.ctx, cs, "analyze_cluster", map[string]any{"namespace": "shop"}))
	if out.Total != 2 {
		t.Errorf("analyze over stdio = %+v", out)
	}
	// stdio carries no token: it acts as mcp.stdio.user with
	// mcp.stdio.role, by default an assistant, which neither flips the
	// kill switch nor decides without its person.
	p := e.storePlan(testPlan("shop", "Deployment", "stdio", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
	ar := callTool(t, e.ctx, cs, "approve_remediation_plan", map[string]any{"plan_id": p.ID, "digest": p.Digest})
	if txt := resultText(ar); !ar.IsError || !strings.Contains(txt, `user "stdio" has role assistant`) {
		t.Errorf("stdio approval: %s", txt)
	}
	for _, tool := range []string{"pause_remediation", "resume_remediation"} {
		res := callTool(t, e.ctx, cs, tool, map[string]any{"reason": "from a laptop"})
		if txt := resultText(res); !res.IsError || !strings.Contains(txt, `needs role "admin"`) || !strings.Contains(txt, `"stdio"`) {
			t.Errorf("stdio %s: %s", tool, txt)
		}
	}
	if n := len(e.approvalMsgs(p.ID)); n != 0 {
		t.Errorf("stdio published %d decisions", n)
	}
	if ps, err := bus.GetPause(e.ctx, e.js, testCluster); err == nil && ps.Paused {
		t.Errorf("stdio paused remediation: %+v", ps)
	}

	_ = cs.Close()
	cancel()
	_ = clientToServerW.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeStdio: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeStdio did not return after its context was cancelled")
	}
}

// TestMCPGoClientOverHTTP drives the gateway with mcp-go's own client,
// which also shows that all four hints are present on the wire.
func TestMCPGoClientOverHTTP(t *testing.T) {
	e := newEnv(t)
	c, err := client.NewStreamableHttpClient(e.srv.URL + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Initialize(e.ctx, mcp.InitializeRequest{}); err != nil {
		t.Fatalf("initialize: %v", err)
	}
	lt, err := c.ListTools(e.ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range lt.Tools {
		a := tl.Annotations
		if a.ReadOnlyHint == nil || a.DestructiveHint == nil || a.IdempotentHint == nil || a.OpenWorldHint == nil {
			t.Errorf("%s: a hint is not set: %+v", tl.Name, a)
			continue
		}
		if got := (hints{*a.ReadOnlyHint, *a.DestructiveHint, *a.IdempotentHint, *a.OpenWorldHint}); got != wantHints[tl.Name] {
			t.Errorf("%s: hints %+v, want %+v", tl.Name, got, wantHints[tl.Name])
		}
	}
	req := mcp.CallToolRequest{}
	req.Params.Name = "get_remediation_plan"
	p := e.storePlan(testPlan("web", "StatefulSet", "cache", events.IssueOOMKilled, time.Now().UTC(), time.Hour), time.Hour)
	req.Params.Arguments = map[string]any{"plan_id": p.ID}
	res, err := c.CallTool(e.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := res.StructuredContent.(map[string]any)
	if res.IsError || !ok || sc["digest"] != p.Digest {
		t.Errorf("get_remediation_plan via mcp-go client: %+v", res)
	}
}

// TestRunServesAndShutsDownGracefully starts the real listener, follows a
// remediation and checks that shutdown ends the wait (not the execution)
// and returns nil.
func TestRunServesAndShutsDownGracefully(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Host, c.Port, c.ShutdownTimeout = "127.0.0.1", 0, 5*time.Second })
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- e.gw.Run(ctx) }()
	select {
	case <-e.gw.Ready():
	case err := <-ran:
		t.Fatalf("Run: %v", err)
	}
	base := fmt.Sprintf("http://%s", e.gw.Addr())
	resp, err := http.Get(base + "/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("health over Run: %v %v", resp, err)
	}
	resp.Body.Close()

	p := e.storePlan(testPlan("shop", "Deployment", "slow", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
	e.setPlanState(p.ID, events.PlanExecuting)
	waiting := make(chan string, 1)
	go func() {
		resp, err := http.Post(base+"/mcp/v1/invoke/remediate_issue", "application/json",
			strings.NewReader(`{"plan_id":"`+p.ID+`","timeout_seconds":120}`))
		if err != nil {
			waiting <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		waiting <- string(b)
	}()
	// Shut down once the wait is under way (the watch exists).
	deadline := time.Now().Add(10 * time.Second)
	for !watching(e) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	cancel()
	select {
	case body := <-waiting:
		if !strings.Contains(body, `"timed_out":true`) || !strings.Contains(body, "shutting down") {
			t.Errorf("remediate during shutdown: %s", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the remediate wait did not end on shutdown")
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %s", d)
	}
}

// watching reports whether some consumer watches the executions bucket:
// remediate_issue's KV watch.
func watching(e *testEnv) bool {
	st, err := e.js.Stream(e.ctx, "KV_"+events.BucketExecutions)
	if err != nil {
		return false
	}
	info, err := st.Info(e.ctx)
	return err == nil && info.State.Consumers > 0
}
