package mcpgateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
)

// browserPost sends what a web page can send: a POST with the page's
// Origin and a content type of its choice.
func (e *testEnv) browserPost(path, origin, contentType, token, body string) (int, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, "POST", e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		e.t.Fatalf("POST %s: not JSON (%v): %s", path, err, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("POST %s: Content-Type %q", path, ct)
	}
	return resp.StatusCode, out
}

// A web page cannot drive the gateway on 127.0.0.1: cross-origin
// requests are refused with 403, and bodies a page can send without a
// CORS preflight (text/plain, forms) with 415. The same requests from a
// client that is not a browser of another origin work.
func TestBrowsersCannotDriveTheGateway(t *testing.T) {
	e := newEnv(t, withTokens)
	p := e.storePlan(testPlan("shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
	approve := `{"plan_id":"` + p.ID + `","digest":"` + p.Digest + `"}`
	const evil = "https://evil.example"

	for _, tc := range []struct {
		name, path, origin, ct, body string
		status                       int
		field                        string
	}{
		{"cross-origin pause", "/mcp/v1/invoke/pause_remediation", evil, "application/json", `{"reason":"x"}`, 403, "Origin"},
		{"cross-origin resume", "/mcp/v1/invoke/resume_remediation", evil, "application/json", `{}`, 403, "Origin"},
		{"cross-origin approve", "/mcp/v1/invoke/approve_remediation_plan", evil, "application/json", approve, 403, "Origin"},
		{"cross-origin MCP", "/mcp", evil, "application/json", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 403, "Origin"},
		{"opaque origin", "/mcp/v1/invoke/reject_remediation_plan", "null", "application/json", approve, 403, "Origin"},
		{"same host, other port", "/mcp/v1/invoke/reject_remediation_plan", "http://127.0.0.1:1", "application/json", approve, 403, "Origin"},
		{"text/plain pause", "/mcp/v1/invoke/pause_remediation", "", "text/plain", `{"reason":"x"}`, 415, "Content-Type"},
		{"text/plain approve", "/mcp/v1/invoke/approve_remediation_plan", "", "text/plain;charset=UTF-8", approve, 415, "Content-Type"},
		{"form approve", "/mcp/v1/invoke/approve_remediation_plan", "", "application/x-www-form-urlencoded", approve, 415, "Content-Type"},
		{"no content type", "/mcp/v1/invoke/reject_remediation_plan", "", "", approve, 415, "Content-Type"},
		{"text/plain MCP", "/mcp", "", "text/plain", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 415, "Content-Type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.browserPost(tc.path, tc.origin, tc.ct, adminToken, tc.body)
			msg, _ := body["error"].(string)
			if status != tc.status || body["field"] != tc.field || !strings.Contains(msg, tc.field) {
				t.Errorf("status %d %v, want %d naming %s", status, body, tc.status, tc.field)
			}
		})
	}
	if n := len(e.approvalMsgs(p.ID)); n != 0 {
		t.Fatalf("browser requests published %d decisions", n)
	}
	if ps, err := bus.GetPause(e.ctx, e.js, testCluster); err == nil && ps.Paused {
		t.Fatalf("a browser request paused remediation: %+v", ps)
	}
	// A GET from another origin is refused too (it would read plans).
	req, _ := http.NewRequestWithContext(e.ctx, "GET", e.srv.URL+"/mcp/v1/tools", nil)
	req.Header.Set("Origin", evil)
	req.Header.Set("Authorization", "Bearer "+readToken)
	if resp, err := e.srv.Client().Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin GET: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// The same requests with the gateway's own origin and JSON work
	// (charset parameters allowed).
	own := e.srv.URL
	if status, body := e.browserPost("/mcp/v1/invoke/pause_remediation", own, "application/json; charset=utf-8", adminToken, `{"reason":"x"}`); status != 200 {
		t.Errorf("same-origin pause: %d %v", status, body)
	}
	if status, body := e.browserPost("/mcp/v1/invoke/resume_remediation", "", "application/json", adminToken, `{}`); status != 200 {
		t.Errorf("resume: %d %v", status, body)
	}
	if status, body := e.browserPost("/mcp/v1/invoke/approve_remediation_plan", own, "Application/JSON", approverToken, approve); status != 200 {
		t.Errorf("same-origin approve: %d %v", status, body)
	}
	if n := len(e.approvalMsgs(p.ID)); n != 1 {
		t.Errorf("%d decisions, want 1", n)
	}
}

// Without tokens (loopback), a page that knows a plan id cannot approve
// it either: REST acts for a person, so the browser checks are what
// keep pages out.
func TestBrowsersCannotApproveOnLoopbackWithoutTokens(t *testing.T) {
	e := newEnv(t)
	p := e.storePlan(testPlan("shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
	approve := `{"plan_id":"` + p.ID + `","digest":"` + p.Digest + `"}`
	if status, body := e.browserPost("/mcp/v1/invoke/approve_remediation_plan", "https://evil.example", "text/plain", "", approve); status != http.StatusForbidden {
		t.Errorf("page approval: %d %v", status, body)
	}
	if status, body := e.browserPost("/mcp/v1/invoke/approve_remediation_plan", "", "text/plain", "", approve); status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain approval: %d %v", status, body)
	}
	if n := len(e.approvalMsgs(p.ID)); n != 0 {
		t.Fatalf("page requests published %d decisions", n)
	}
	if status, body := e.browserPost("/mcp/v1/invoke/approve_remediation_plan", "", "application/json", "", approve); status != http.StatusOK {
		t.Errorf("curl approval: %d %v", status, body)
	}
}

func TestSameOriginNormalisesPorts(t *testing.T) {
	s := &Service{cfg: Config{Resource: "https://kaar.example.com/mcp"}}
	for _, tc := range []struct {
		origin, host string
		want         bool
	}{
		{"http://127.0.0.1:8080", "127.0.0.1:8080", true},
		{"http://LOCALHOST:8080", "localhost:8080", true},
		{"http://localhost", "localhost:80", true},
		{"https://kaar.example.com", "10.0.0.5:8080", true}, // behind a proxy: the resource's origin
		{"https://kaar.example.com:443", "kaar.example.com", true},
		{"http://kaar.example.com", "10.0.0.5:8080", false},
		{"http://127.0.0.1:8081", "127.0.0.1:8080", false},
		{"null", "127.0.0.1:8080", false},
		{"file://", "127.0.0.1:8080", false},
	} {
		r, _ := http.NewRequest("GET", "http://"+tc.host+"/", nil)
		if got := s.sameOrigin(tc.origin, r); got != tc.want {
			t.Errorf("origin %s, host %s: %t, want %t", tc.origin, tc.host, got, tc.want)
		}
	}
}
