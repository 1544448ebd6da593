package mcpgateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/kaar-dev/kaar/pkg/events"
)

// badArgs has, for every tool, arguments that must be refused and the
// argument the refusal must name. Each is refused by MCP (isError) and by
// REST (400 with the field), and none reaches the bus as a mutation.
var badArgs = []struct {
	tool  string
	args  string
	field string
}{
	{"analyze_cluster", `{"namespace":"Shop"}`, "namespace"},
	{"analyze_cluster", `{"namespace":"a_b"}`, "namespace"},
	{"analyze_cluster", `{"issue_type":"Crashing"}`, "issue_type"},
	{"analyze_cluster", `{"limit":0}`, "limit"},
	{"analyze_cluster", `{"limit":1001}`, "limit"},
	{"analyze_cluster", `{"limit":"ten"}`, "limit"},
	{"analyze_cluster", `{"owner":"not a name"}`, "owner"},
	{"analyze_cluster", `{"class":"info"}`, "class"},
	{"analyze_cluster", `{"class":"warning","issue_type":"OOMKilled"}`, "class"},
	{"analyze_cluster", `{"nmespace":"shop"}`, "nmespace"},
	{"generate_remediation_plan", `{"namespace":"shop","resource_name":"web"}`, "resource_type"},
	{"generate_remediation_plan", `{"resource_type":"ConfigMap","namespace":"shop","resource_name":"web"}`, "resource_type"},
	{"generate_remediation_plan", `{"resource_type":"deployment","resource_name":"web"}`, "namespace"},
	{"generate_remediation_plan", `{"resource_type":"deployment","namespace":"shop"}`, "resource_name"},
	{"generate_remediation_plan", `{"resource_type":"deployment","namespace":"shop","resource_name":"Web_1"}`, "resource_name"},
	{"generate_remediation_plan", `{"resource_type":"deployment","namespace":"shop","resource_name":"web","issue_type":"Broken"}`, "issue_type"},
	{"approve_remediation_plan", `{}`, "plan_id"},
	{"approve_remediation_plan", `{"plan_id":"plan-1"}`, "plan_id"},
	{"approve_remediation_plan", `{"plan_id":"01936F8E-7C1A-7B2E-9F3D-4A5B6C7D8E9F"}`, "plan_id"},
	{"approve_remediation_plan", `{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f","digest":"abc"}`, "digest"},
	{"approve_remediation_plan", `{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f","digest":"sha256:` + strings.Repeat("0", 64) + `","reason":"x"}`, "reason"},
	{"approve_remediation_plan", `{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f"}`, "digest"},
	{"remediate_issue", `{}`, "resource_type"},
	{"remediate_issue", `{"plan_id":"nope"}`, "plan_id"},
	{"remediate_issue", `{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f","namespace":"shop"}`, "plan_id"},
	{"remediate_issue", `{"resource_type":"deployment","namespace":"shop"}`, "resource_name"},
	{"remediate_issue", `{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f","timeout_seconds":0}`, "timeout_seconds"},
	{"remediate_issue", `{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f","timeout_seconds":2.5}`, "timeout_seconds"},
	{"test", `{"verbose":true}`, "verbose"},
	{"list_remediation_plans", `{"state":"done"}`, "state"},
	{"list_remediation_plans", `{"namespace":""}`, "namespace"},
	{"get_remediation_plan", `{}`, "plan_id"},
	{"get_remediation_plan", `{"plan_id":42}`, "plan_id"},
	{"reject_remediation_plan", `{"plan_id":"x"}`, "plan_id"},
	{"reject_remediation_plan", `{"plan_id":"01936f8e-7c1a-7b2e-9f3d-4a5b6c7d8e9f","reason":"` + strings.Repeat("r", 1001) + `"}`, "reason"},
	{"get_execution_status", `{"plan_id":null}`, "plan_id"},
	{"get_audit_trail", `{}`, "plan_id"},
	{"get_audit_trail", `{"plan_id":"not-a-uuid"}`, "plan_id"},
	{"pause_remediation", `{}`, "reason"},
	{"pause_remediation", `{"reason":"` + strings.Repeat("r", 1001) + `"}`, "reason"},
	{"resume_remediation", `{"reason":5}`, "reason"},
	{"get_incident", `{}`, "incident_id"},
	{"get_incident", `{"incident_id":"B1CEAF2196B71374"}`, "incident_id"},
	{"get_incident", `{"incident_id":"b1ceaf2196b7137"}`, "incident_id"},
	{"analyze_cluster", `{"cursor":"not-a-cursor"}`, "cursor"},
}

func TestEveryToolRefusesBadArgumentsNamingThem(t *testing.T) {
	// An admin may call every tool, so every refusal is the argument's.
	e := newEnv(t, withTokens)
	cs, err := e.sdkConnect(nil, adminToken, "")
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, tc := range badArgs {
		covered[tc.tool] = true
		t.Run(tc.tool+"/"+tc.field, func(t *testing.T) {
			var args map[string]any
			if err := json.Unmarshal([]byte(tc.args), &args); err != nil {
				t.Fatal(err)
			}
			res := callTool(t, e.ctx, cs, tc.tool, args)
			txt := resultText(res)
			if !res.IsError || !strings.Contains(txt, `argument "`+tc.field+`"`) {
				t.Errorf("MCP: isError=%t, want the argument %q named: %s", res.IsError, tc.field, txt)
			}

			r := e.restAs(adminToken, "POST", "/mcp/v1/invoke/"+tc.tool, tc.args)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("REST status %d, want 400: %s", r.Status, r.Raw)
			}
			if r.Body["field"] != tc.field || r.Body["code"] != outcomeInvalid || !strings.Contains(r.Body["error"].(string), tc.field) {
				t.Errorf("REST body %s, want field %q", r.Raw, tc.field)
			}
		})
	}
	for name := range wantHints {
		if !covered[name] {
			t.Errorf("tool %s has no bad-argument case", name)
		}
	}
	// Nothing reached the planner or the approvals stream.
	st, err := e.js.Stream(e.ctx, events.StreamApprovals)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("%d decisions published by bad requests", info.State.Msgs)
	}
	if plans, err := e.plans.List(e.ctx); err != nil || len(plans) != 0 {
		t.Errorf("bad requests produced plans: %d (%v)", len(plans), err)
	}
	_, n := e.watcher.lastRequest()
	if n != 0 {
		t.Errorf("bad requests reached the watcher %d times", n)
	}
}

func TestEnumErrorsListTheAllowedValues(t *testing.T) {
	e := newEnv(t)
	r := e.rest("POST", "/mcp/v1/invoke/analyze_cluster", `{"issue_type":"Crashing"}`)
	allowed, _ := r.Body["allowed"].([]any)
	if len(allowed) != len(events.IssueTypes()) || !strings.Contains(r.Body["error"].(string), "CrashLoopBackOff") {
		t.Errorf("enum error %s", r.Raw)
	}
	cs := e.sdkSession(nil)
	res := callTool(t, e.ctx, cs, "generate_remediation_plan", map[string]any{"resource_type": "svc", "namespace": "shop", "resource_name": "x"})
	if txt := resultText(res); !res.IsError || !strings.Contains(txt, `argument "resource_type": unknown value "svc" (allowed: `) || !strings.Contains(txt, "StatefulSet") {
		t.Errorf("MCP enum error %s", txt)
	}
}
