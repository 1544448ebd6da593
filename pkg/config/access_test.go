package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAccessDefaultsAreLeastPrivilege(t *testing.T) {
	d, err := Load(strings.NewReader(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.MCP.Approval.WithoutElicitation != "refuse" {
		t.Errorf("without_elicitation defaults to %q, want refuse", d.MCP.Approval.WithoutElicitation)
	}
	if d.MCP.Stdio != (MCPStdio{User: "stdio", Role: "assistant"}) {
		t.Errorf("stdio identity defaults to %+v", d.MCP.Stdio)
	}
	if d.Remediation.RequireDistinctApprover || d.Server.StrictFilePermissions {
		t.Errorf("opt-in keys on by default: %+v %+v", d.Remediation, d.Server)
	}
	ok := `
server: {strict_file_permissions: true}
remediation: {require_distinct_approver: true}
mcp:
  tokens:
    - {token: assistant-token-0123456789, user: claude, role: assistant}
  stdio: {user: laptop-alice, role: approver}
notify:
  inbound:
    senders:
      - {name: jenkins, secret: 0123456789abcdef}
      - {name: "pagerduty (ops)", secret: fedcba9876543210}
    secret: 00112233445566778899
`
	c, err := Load(strings.NewReader(ok), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Remediation.RequireDistinctApprover || !c.Server.StrictFilePermissions || c.MCP.Stdio.Role != "approver" || c.MCP.Tokens[0].Role != "assistant" {
		t.Errorf("loaded %+v %+v %+v", c.Remediation, c.Server, c.MCP)
	}
	senders := c.Notify.Inbound.InboundSenders()
	if len(senders) != 3 || senders[2] != (InboundSender{Name: DeprecatedInboundSender, Secret: "00112233445566778899"}) || !c.Notify.Enabled() {
		t.Errorf("senders = %+v", senders)
	}

	for _, tc := range []struct{ yaml, key, want string }{
		{"mcp: {tokens: [{token: assistant-token-0123456789, user: a, role: root}]}", "mcp.tokens[0].role", "read, assistant, approver, admin"},
		{"mcp: {stdio: {role: owner}}", "mcp.stdio.role", "read, assistant, approver, admin"},
		{"mcp: {stdio: {user: \"\"}}", "mcp.stdio.user", "must not be empty"},
		{"mcp: {stdio: {user: \"a\\nb\"}}", "mcp.stdio.user", "control character"},
		{"mcp: {approval: {without_elicitation: ask}}", "mcp.approval.without_elicitation", "accept, refuse"},
	} {
		_, err := Load(strings.NewReader(tc.yaml), nil)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"`+tc.key+`"`) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q with %q", tc.yaml, err, tc.key, tc.want)
		}
	}
}

// Credential files readable by others are reported (warn), or refused
// with server.strict_file_permissions.
func TestCredentialFilePermissions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tokens := write("tokens.yaml", "[]\n", 0o644)
	creds := write("kaar.creds", "creds\n", 0o640)
	kubeconfig := write("kubeconfig", "apiVersion: v1\n", 0o644)
	cfgBody := "mcp: {token_file: " + tokens + "}\nnats: {creds_file: " + creds + "}\nkubernetes: {kubeconfig: " + kubeconfig + "}\n"
	cfgFile := write("config.yaml", cfgBody, 0o640) // group-readable: the documented mode

	c, err := LoadFile(cfgFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]os.FileMode{}
	for _, f := range c.Server.FilePermissionWarnings() {
		got[f.Key] = f.Mode
	}
	if len(got) != 3 || got["mcp.token_file"] != 0o644 || got["nats.creds_file"] != 0o640 || got["kubernetes.kubeconfig"] != 0o644 {
		t.Errorf("warnings = %v, want mcp.token_file 0644, nats.creds_file 0640 and kubernetes.kubeconfig 0644 (not the 0640 config file)", c.Server.FilePermissionWarnings())
	}

	strict := write("strict.yaml", cfgBody+"server: {strict_file_permissions: true}\n", 0o604)
	_, err = LoadFile(strict, nil)
	for _, w := range []string{`"server.strict_file_permissions"`, tokens, "0644", creds, "0640", "config " + strict, "0604"} {
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), w) {
			t.Errorf("strict load: %v, want %q", err, w)
		}
	}

	for _, p := range []string{tokens, creds, kubeconfig, strict} {
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err = LoadFile(strict, nil)
	if err != nil || len(c.Server.FilePermissionWarnings()) != 0 {
		t.Errorf("private files: %v %v", err, c.Server.FilePermissionWarnings())
	}
}
