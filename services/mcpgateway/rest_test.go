package mcpgateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

func TestRESTListsToolsInTheOriginalShape(t *testing.T) {
	e := newEnv(t)
	r := e.rest("GET", "/mcp/v1/tools", "")
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Raw)
	}
	var body struct {
		Tools []struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
			Annotations map[string]bool `json:"annotations"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(r.Raw, &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Tools) != len(wantHints) {
		t.Fatalf("%d tools, want %d", len(body.Tools), len(wantHints))
	}
	for _, tl := range body.Tools {
		var schema struct {
			Type       string                     `json:"type"`
			Properties map[string]json.RawMessage `json:"properties"`
			Required   []string                   `json:"required"`
		}
		if err := json.Unmarshal(tl.Parameters, &schema); err != nil || schema.Type != "object" {
			t.Errorf("%s: parameters %s (%v)", tl.Name, tl.Parameters, err)
		}
		if tl.Description == "" || len(tl.Annotations) != 4 {
			t.Errorf("%s: description %q annotations %v", tl.Name, tl.Description, tl.Annotations)
		}
		if tl.Name == "generate_remediation_plan" && strings.Join(schema.Required, ",") != "resource_type,namespace,resource_name" {
			t.Errorf("plan parameters required %v", schema.Required)
		}
	}
}

func TestRESTInvokesToolsAndMapsErrors(t *testing.T) {
	e := newEnv(t)
	out := restResult[AnalyzeOut](t, e.rest("POST", "/mcp/v1/invoke/analyze_cluster", `{"namespace":"web"}`))
	if out.Total != 1 || out.Incidents[0].OwnerName != "cache" {
		t.Errorf("analyze = %+v", out)
	}
	// No body means no arguments.
	out = restResult[AnalyzeOut](t, e.rest("POST", "/mcp/v1/invoke/analyze_cluster", ""))
	if out.Total != 3 {
		t.Errorf("analyze without body = %+v", out)
	}

	p := restResult[PlanOut](t, e.rest("POST", "/mcp/v1/invoke/generate_remediation_plan",
		`{"resource_type":"deployment","namespace":"shop","resource_name":"payments-api","issue_type":"CrashLoopBackOff"}`))
	// Without tokens on loopback, REST acts for a person (approver): the
	// original server's curl flow.
	d := restResult[DecisionOut](t, e.rest("POST", "/mcp/v1/invoke/approve_remediation_plan", `{"plan_id":"`+p.PlanID+`","digest":"`+p.Digest+`"}`))
	if d.Via != "rest" || d.DecidedBy != AnonymousRESTUser || d.DigestSource != digestGiven || d.Digest != p.Digest {
		t.Errorf("REST approval = %+v", d)
	}
	msgs := e.approvalMsgs(p.PlanID)
	if len(msgs) != 1 {
		t.Fatalf("%d approval messages", len(msgs))
	}
	env, _ := events.Decode(msgs[0].Data)
	if dec, err := events.DecodeData[events.Decision](env); err != nil || dec.Via != events.ViaREST {
		t.Errorf("decision = %+v (%v)", dec, err)
	}

	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{"unknown tool", "POST", "/mcp/v1/invoke/delete_cluster", `{}`, 404, "tool_name"},
		{"not JSON", "POST", "/mcp/v1/invoke/analyze_cluster", `{"namespace":`, 400, ""},
		{"not an object", "POST", "/mcp/v1/invoke/analyze_cluster", `["shop"]`, 400, ""},
		{"unknown plan", "POST", "/mcp/v1/invoke/get_remediation_plan", `{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f"}`, 404, ""},
		{"planner not found", "POST", "/mcp/v1/invoke/generate_remediation_plan", `{"resource_type":"Deployment","namespace":"shop","resource_name":"ghost"}`, 404, ""},
		{"planner invalid", "POST", "/mcp/v1/invoke/generate_remediation_plan", `{"resource_type":"Deployment","namespace":"shop","resource_name":"weird"}`, 400, "resource_name"},
		{"digest conflict", "POST", "/mcp/v1/invoke/approve_remediation_plan", `{"plan_id":"` + p.PlanID + `","digest":"sha256:` + strings.Repeat("0", 64) + `"}`, 409, ""},
		{"unknown REST path", "GET", "/mcp/v1/nothing", "", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.rest(tc.method, tc.path, tc.body)
			if r.Status != tc.status {
				t.Errorf("status %d, want %d: %s", r.Status, tc.status, r.Raw)
			}
			if msg, _ := r.Body["error"].(string); msg == "" {
				t.Errorf("no error message: %s", r.Raw)
			}
			if got, _ := r.Body["field"].(string); got != tc.field {
				t.Errorf("field %q, want %q: %s", got, tc.field, r.Raw)
			}
		})
	}

	// A service that does not answer is 503, through both transports.
	e.planner.stop(t)
	r := e.rest("POST", "/mcp/v1/invoke/generate_remediation_plan", `{"resource_type":"deployment","namespace":"shop","resource_name":"web"}`)
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body["error"].(string), "kaar-planner") {
		t.Errorf("planner down: %d %s", r.Status, r.Raw)
	}
	cs := e.sdkSession(nil)
	res := callTool(t, e.ctx, cs, "generate_remediation_plan", map[string]any{"resource_type": "deployment", "namespace": "shop", "resource_name": "web"})
	if !res.IsError || !strings.Contains(resultText(res), "kaar-planner") {
		t.Errorf("MCP planner down: %s", resultText(res))
	}
}

func TestHealthFollowsTheBus(t *testing.T) {
	e := newEnv(t)
	r := e.rest("GET", "/health", "")
	if r.Status != http.StatusOK || r.Body["status"] != "ok" || r.Body["cluster"] != testCluster {
		t.Errorf("health = %d %s", r.Status, r.Raw)
	}
	if r := e.rest("GET", "/healthz", ""); r.Status != http.StatusOK {
		t.Errorf("healthz = %d", r.Status)
	}
	e.gw.nc.Close()
	r = e.rest("GET", "/health", "")
	if r.Status != http.StatusServiceUnavailable || r.Body["status"] != "unavailable" {
		t.Errorf("health without bus = %d %s", r.Status, r.Raw)
	}
	if r := e.rest("GET", "/readyz", ""); r.Status != http.StatusServiceUnavailable {
		t.Errorf("readyz without bus = %d", r.Status)
	}
	// With the bus gone, tools answer unavailable.
	r = e.rest("POST", "/mcp/v1/invoke/get_remediation_plan", `{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f"}`)
	if r.Status != http.StatusServiceUnavailable {
		t.Errorf("tool without bus = %d %s", r.Status, r.Raw)
	}
	out := restResult[TestOut](t, e.rest("POST", "/mcp/v1/invoke/test", `{}`))
	if out.Status != "down" || out.Bus.Connected {
		t.Errorf("test without bus = %+v", out)
	}
}

func TestAuthenticatedUserIsTheApprover(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DefaultUser = "ops-laptop" })
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer alice-token" {
			r = r.WithContext(WithUser(r.Context(), "alice"))
		}
		e.gw.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(auth.Close)
	now := time.Now().UTC()
	p1 := e.storePlan(testPlan("shop", "Deployment", "one", events.IssueCrashLoopBackOff, now, time.Hour), time.Hour)
	p2 := e.storePlan(testPlan("shop", "Deployment", "two", events.IssueCrashLoopBackOff, now, time.Hour), time.Hour)

	approve := func(id, digest, token string) DecisionOut {
		req, _ := http.NewRequest("POST", auth.URL+"/mcp/v1/invoke/approve_remediation_plan", strings.NewReader(`{"plan_id":"`+id+`","digest":"`+digest+`"}`))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := auth.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Result DecisionOut `json:"result"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
			t.Fatalf("approve: %d %v", resp.StatusCode, err)
		}
		return body.Result
	}
	if d := approve(p1.ID, p1.Digest, "alice-token"); d.DecidedBy != "alice" {
		t.Errorf("decided_by %q, want alice", d.DecidedBy)
	}
	if d := approve(p2.ID, p2.Digest, ""); d.DecidedBy != "ops-laptop" {
		t.Errorf("decided_by %q, want the configured default", d.DecidedBy)
	}
}

func TestDNSRebindingIsRefused(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest("POST", e.srv.URL+"/mcp/v1/invoke/test", strings.NewReader(`{}`))
	req.Host = "evil.example.com"
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("status %d, want 403", resp.StatusCode)
	}
}
