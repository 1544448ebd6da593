package mcpgateway

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const (
	readToken      = "read-token-0123456789"
	assistantToken = "assistant-token-0123456789"
	approverToken  = "approver-token-0123456789"
	adminToken     = "admin-token-0123456789"
)

func withTokens(c *Config) {
	c.Tokens = []Token{
		{Token: readToken, User: "rita", Role: RoleRead},
		{Token: assistantToken, User: "claude", Role: RoleAssistant},
		{Token: approverToken, User: "alice", Role: RoleApprover},
		{Token: adminToken, User: "root", Role: RoleAdmin},
	}
}

// acceptWithoutElicitation is mcp.approval.without_elicitation: accept,
// for tests of what a published decision looks like: an assistant's MCP
// client that cannot ask its user then decides on the model's call.
func acceptWithoutElicitation(c *Config) { c.WithoutElicitation = FallbackAccept }

// publishedDecisions decodes the decisions on a plan's approval subject.
func (e *testEnv) publishedDecisions(planID string) []events.Decision {
	e.t.Helper()
	var out []events.Decision
	for _, m := range e.approvalMsgs(planID) {
		env, err := events.Decode(m.Data)
		if err != nil {
			e.t.Fatal(err)
		}
		d, err := events.DecodeData[events.Decision](env)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func TestRESTNeedsATokenWithTheRightRole(t *testing.T) {
	e := newEnv(t, withTokens, func(c *Config) { c.AuthorizationServers = []string{"https://auth.example.com"} })
	p := e.storePlan(testPlan("shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
	approve := `{"plan_id":"` + p.ID + `","digest":"` + p.Digest + `"}`

	// No token: 401 with the way to the metadata.
	for _, path := range []string{"/mcp/v1/tools", "/mcp/v1/invoke/analyze_cluster"} {
		method := "POST"
		if strings.HasSuffix(path, "tools") {
			method = "GET"
		}
		r := e.restAs("", method, path, `{}`)
		wantMeta := `resource_metadata="` + e.srv.URL + `/.well-known/oauth-protected-resource/mcp"`
		if r.Status != http.StatusUnauthorized || r.Body["code"] != "unauthenticated" || !strings.Contains(r.Header.Get("WWW-Authenticate"), wantMeta) {
			t.Errorf("%s without a token: %d %s, WWW-Authenticate %q", path, r.Status, r.Raw, r.Header.Get("WWW-Authenticate"))
		}
	}
	// A wrong token, or a prefix of a right one.
	for _, tok := range []string{"not-a-token-at-all-00", approverToken[:len(approverToken)-1], approverToken + "x"} {
		r := e.restAs(tok, "POST", "/mcp/v1/invoke/approve_remediation_plan", approve)
		if r.Status != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("token %q: %d %s", tok, r.Status, r.Raw)
		}
	}
	if got := testutil.ToFloat64(e.gw.metrics.authFailures); got != 3 {
		t.Errorf("auth failures metric = %v, want 3", got)
	}

	// Read-only: analyze yes, approve no (403 naming the role), nothing sent.
	if r := e.restAs(readToken, "POST", "/mcp/v1/invoke/analyze_cluster", `{}`); r.Status != http.StatusOK {
		t.Errorf("read token analyze: %d %s", r.Status, r.Raw)
	}
	r := e.restAs(readToken, "POST", "/mcp/v1/invoke/approve_remediation_plan", approve)
	if r.Status != http.StatusForbidden || r.Body["code"] != "forbidden" || r.Body["required_role"] != "assistant" ||
		!strings.Contains(r.Body["error"].(string), `needs role "assistant"`) || !strings.Contains(r.Body["error"].(string), `"rita"`) ||
		!strings.Contains(r.Body["error"].(string), "read < assistant < approver < admin") {
		t.Errorf("read token approve: %d %s", r.Status, r.Raw)
	}
	if n := len(e.approvalMsgs(p.ID)); n != 0 {
		t.Fatalf("a forbidden approval published %d messages", n)
	}

	// Approver: the approver recorded is the token's user.
	d := restResult[DecisionOut](t, e.restAs(approverToken, "POST", "/mcp/v1/invoke/approve_remediation_plan", approve))
	if d.DecidedBy != "alice" || d.Via != "rest" {
		t.Errorf("decision = %+v", d)
	}
	if pub := e.publishedDecisions(p.ID); len(pub) != 1 || pub[0].DecidedBy != "alice" || pub[0].Via != events.ViaREST {
		t.Errorf("published %+v", pub)
	}
	// The model cannot name the approver: unknown arguments are refused.
	r = e.restAs(adminToken, "POST", "/mcp/v1/invoke/reject_remediation_plan", `{"plan_id":"`+p.ID+`","decided_by":"mallory"}`)
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Raw), "decided_by") {
		t.Errorf("decided_by argument: %d %s", r.Status, r.Raw)
	}

	// Health stays open; the metadata names the resource and the
	// authorization server, at the root and under the resource's path.
	if r := e.rest("GET", "/health", ""); r.Status != http.StatusOK {
		t.Errorf("/health: %d", r.Status)
	}
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		r := e.rest("GET", path, "")
		servers, _ := r.Body["authorization_servers"].([]any)
		if r.Status != http.StatusOK || r.Body["resource"] != e.srv.URL+"/mcp" || len(servers) != 1 || servers[0] != "https://auth.example.com" {
			t.Errorf("%s: %d %s", path, r.Status, r.Raw)
		}
	}
}

func TestMCPNeedsATokenAndChecksRolesPerTool(t *testing.T) {
	e := newEnv(t, withTokens)
	if _, err := e.sdkConnect(nil, "", ""); err == nil {
		t.Fatal("connected without a token")
	}
	if _, err := e.sdkConnect(nil, "wrong-token-0123456789", ""); err == nil {
		t.Fatal("connected with a wrong token")
	}
	p := e.storePlan(testPlan("shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)

	reader, err := e.sdkConnect(nil, readToken, "")
	if err != nil {
		t.Fatal(err)
	}
	structured[AnalyzeOut](t, callTool(t, e.ctx, reader, "analyze_cluster", nil))
	structured[PlanOut](t, callTool(t, e.ctx, reader, "get_remediation_plan", map[string]any{"plan_id": p.ID}))
	for _, name := range []string{"approve_remediation_plan", "reject_remediation_plan", "remediate_issue", "generate_remediation_plan"} {
		args := map[string]any{"plan_id": p.ID}
		if name == "approve_remediation_plan" {
			args["digest"] = p.Digest
		}
		if name == "generate_remediation_plan" {
			args = map[string]any{"resource_type": "Deployment", "namespace": "shop", "resource_name": "payments-api"}
		}
		res := callTool(t, e.ctx, reader, name, args)
		if !res.IsError || !strings.Contains(resultText(res), `needs role "assistant"`) {
			t.Errorf("read token %s: %s", name, resultText(res))
		}
	}
	if n := len(e.approvalMsgs(p.ID)); n != 0 {
		t.Fatalf("read token published %d decisions", n)
	}

	approver, err := e.sdkConnect(nil, approverToken, "")
	if err != nil {
		t.Fatal(err)
	}
	d := structured[DecisionOut](t, callTool(t, e.ctx, approver, "approve_remediation_plan", map[string]any{"plan_id": p.ID, "digest": p.Digest}))
	if d.DecidedBy != "alice" {
		t.Errorf("decided_by = %q, want the token's user", d.DecidedBy)
	}
}

func TestTokensAreRequiredOffLoopback(t *testing.T) {
	e := newEnv(t)
	mk := func(c Config, d Deps) error {
		c.Cluster = testCluster
		d.NATS, d.Signer = e.nc, testGatewayKey
		_, err := New(c, d)
		return err
	}
	for _, host := range []string{"0.0.0.0", "10.1.2.3", "::", "kaar.example.com"} {
		err := mk(Config{Host: host}, Deps{})
		if err == nil || !strings.Contains(err.Error(), `"mcp.tokens"`) || !strings.Contains(err.Error(), host) || !errors.Is(err, events.ErrInvalid) {
			t.Errorf("host %s without tokens: %v", host, err)
		}
	}
	for _, host := range []string{"127.0.0.1", "localhost", "::1", ""} {
		if err := mk(Config{Host: host}, Deps{}); err != nil {
			t.Errorf("host %q without tokens: %v", host, err)
		}
	}
	var c Config
	withTokens(&c)
	c.Host = "0.0.0.0"
	if err := mk(c, Deps{}); err != nil {
		t.Errorf("tokens off loopback: %v", err)
	}
	verifier := func(context.Context, string) (Identity, error) { return Identity{}, errors.New("no") }
	if err := mk(Config{Host: "0.0.0.0"}, Deps{TokenVerifier: verifier}); err != nil {
		t.Errorf("a verifier off loopback: %v", err)
	}

	for _, tc := range []struct {
		tokens []Token
		want   []string
	}{
		{[]Token{{Token: "short", User: "a", Role: RoleRead}}, []string{`"mcp.tokens[0].token"`, "16"}},
		{[]Token{{Token: readToken, Role: RoleRead}}, []string{`"mcp.tokens[0].user"`}},
		{[]Token{{Token: readToken, User: "a", Role: "root"}}, []string{`"mcp.tokens[0].role"`, "read, assistant, approver, admin"}},
		{[]Token{{Token: readToken, User: "a", Role: RoleRead}, {Token: readToken, User: "b", Role: RoleAdmin}}, []string{`"mcp.tokens[1].token"`, "mcp.tokens[0]"}},
	} {
		err := mk(Config{Tokens: tc.tokens}, Deps{})
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("tokens %+v: %v, want %q", tc.tokens, err, w)
			}
		}
	}
	// The other mcp keys are config.Load's to check: the gateway takes
	// them validated.
	for _, tc := range []struct{ src, key, allowed string }{
		{`mcp: {stdio: {user: "a\nb"}}`, "mcp.stdio.user", ""},
		{"mcp: {stdio: {role: root}}", "mcp.stdio.role", "read, assistant, approver, admin"},
		{"mcp: {approval: {without_elicitation: maybe}}", "mcp.approval.without_elicitation", "accept, refuse"},
		{"mcp: {authorization_servers: [auth.example.com]}", "mcp.authorization_servers[0]", ""},
	} {
		_, err := config.Load(strings.NewReader(tc.src), nil)
		if err == nil || !strings.Contains(err.Error(), `"`+tc.key+`"`) || !strings.Contains(err.Error(), tc.allowed) {
			t.Errorf("%s: %v, want an error naming %s", tc.src, err, tc.key)
		}
	}
}

func TestTokenFileAndVerifier(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(file, []byte("- token: file-token-0123456789\n  user: fiona\n  role: approver\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	verify := func(_ context.Context, tok string) (Identity, error) {
		if tok == "oauth-access-token" {
			return Identity{User: "oscar@example.com", Role: RoleRead}, nil
		}
		return Identity{}, errors.New("unknown token")
	}
	e := newEnvDeps(t, func(d *Deps) { d.TokenVerifier = verify }, func(c *Config) { c.TokenFile = file })
	p := e.storePlan(testPlan("shop", "Deployment", "payments-api", events.IssueCrashLoopBackOff, time.Now().UTC(), time.Hour), time.Hour)
	d := restResult[DecisionOut](t, e.restAs("file-token-0123456789", "POST", "/mcp/v1/invoke/reject_remediation_plan", `{"plan_id":"`+p.ID+`"}`))
	if d.DecidedBy != "fiona" {
		t.Errorf("decided_by = %q", d.DecidedBy)
	}
	if r := e.restAs("oauth-access-token", "POST", "/mcp/v1/invoke/analyze_cluster", `{}`); r.Status != http.StatusOK {
		t.Errorf("verified token: %d %s", r.Status, r.Raw)
	}
	if r := e.restAs("oauth-access-token", "POST", "/mcp/v1/invoke/reject_remediation_plan", `{"plan_id":"`+p.ID+`"}`); r.Status != http.StatusForbidden {
		t.Errorf("verified read token rejecting: %d %s", r.Status, r.Raw)
	}
	if r := e.restAs("oauth-other-token", "POST", "/mcp/v1/invoke/analyze_cluster", `{}`); r.Status != http.StatusUnauthorized {
		t.Errorf("refused by the verifier: %d %s", r.Status, r.Raw)
	}

	// A broken file names the key.
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("- token: x\n  user: y\n  role: read\n  extra: 1\n"), 0o600)
	for _, path := range []string{bad, filepath.Join(dir, "missing.yaml")} {
		_, err := New(Config{Cluster: testCluster, TokenFile: path}, Deps{NATS: e.nc, Signer: testGatewayKey})
		if err == nil || !strings.Contains(err.Error(), "mcp.token_file") {
			t.Errorf("token file %s: %v", path, err)
		}
	}
}

func TestConfigFromCarriesTheMCPKeys(t *testing.T) {
	cfg, err := config.Load(strings.NewReader(`
mcp:
  tokens:
    - {token: approver-token-0123456789, user: alice, role: approver}
  token_file: /run/secrets/kaar-tokens.yaml
  resource: https://kaar.example.com/mcp
  authorization_servers: [https://auth.example.com]
  approval: {without_elicitation: accept}
  stdio: {user: laptop-alice, role: approver}
remediation: {require_distinct_approver: true}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := ConfigFrom(cfg)
	if len(c.Tokens) != 1 || c.Tokens[0] != (Token{Token: approverToken, User: "alice", Role: RoleApprover}) ||
		c.TokenFile != "/run/secrets/kaar-tokens.yaml" || c.Resource != "https://kaar.example.com/mcp" ||
		len(c.AuthorizationServers) != 1 || c.WithoutElicitation != FallbackAccept ||
		c.StdioUser != "laptop-alice" || c.StdioRole != RoleApprover || !c.RequireDistinctApprover {
		t.Errorf("ConfigFrom = %+v", c)
	}
	if def := ConfigFrom(config.Default()); def.WithoutElicitation != FallbackRefuse || def.StdioUser != "stdio" || def.StdioRole != RoleAssistant || def.RequireDistinctApprover {
		t.Errorf("defaults = %+v", def)
	}
	if def, err := (Config{Cluster: testCluster}).withDefaults(); err != nil || def.WithoutElicitation != FallbackRefuse || def.StdioUser != "stdio" || def.StdioRole != RoleAssistant {
		t.Errorf("library defaults = %+v (%v)", def, err)
	}
	_, err = config.Load(strings.NewReader("mcp: {approval: {without_elicitation: never}}"), nil)
	if err == nil || !strings.Contains(err.Error(), "mcp.approval.without_elicitation") {
		t.Errorf("bad policy in the file: %v", err)
	}
	// config.Load checks mcp.tokens[].role and mcp.stdio.role against
	// config.Roles; they must be the gateway's roles, in its order.
	if !slices.Equal(config.Roles, roleNames()) {
		t.Errorf("config.Roles %v, the gateway's roles %v", config.Roles, roleNames())
	}
}
