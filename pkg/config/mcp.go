package config

import (
	"fmt"
	"strings"
)

// MCP configures the gateway's MCP and REST endpoints.
type MCP struct {
	// Path of the streamable HTTP endpoint.
	Path string `yaml:"path"`
	// Tokens are accepted bearer tokens; empty disables authentication,
	// which is only allowed on a loopback host.
	Tokens []Token `yaml:"tokens"`
	// TokenFile is a YAML file holding more tokens, a list in the shape of
	// Tokens (for a mounted Secret); read when the gateway starts.
	TokenFile string `yaml:"token_file"`
	// Resource is this server's canonical URL for RFC 9728 protected
	// resource metadata (https://kaar.example.com/mcp); empty derives it
	// from each request.
	Resource string `yaml:"resource"`
	// AuthorizationServers are advertised in the protected resource
	// metadata so OAuth-capable clients can find where to get a token.
	AuthorizationServers []string `yaml:"authorization_servers"`
	// Approval configures how MCP approvals are confirmed by a person.
	Approval MCPApproval `yaml:"approval"`
	// Stdio is who `kaar mcp --stdio` acts as: stdio carries no token.
	Stdio MCPStdio `yaml:"stdio"`
}

// Roles are the roles of mcp.tokens[].role and mcp.stdio.role, least
// privileged first; each includes the ones before it. read analyzes and
// reads; assistant may also ask for plans and follow executions, and
// approve or reject only with a person's confirmation (MCP elicitation);
// approver decides directly; admin may also pause and resume remediation.
var Roles = []string{"read", "assistant", "approver", "admin"}

// MCPApproval configures approve_remediation_plan and
// reject_remediation_plan for callers with the assistant role.
type MCPApproval struct {
	// WithoutElicitation is what happens when an assistant's MCP client
	// cannot ask its user to confirm (no elicitation capability):
	// "refuse" (the default) refuses and tells the person how to decide
	// themselves; "accept" decides on the model's call alone.
	WithoutElicitation string `yaml:"without_elicitation"`
}

// MCPStdio is the identity of the stdio transport: recorded as
// decided_by, and its role bounds what the local client may do.
type MCPStdio struct {
	// User is recorded as decided_by (default "stdio").
	User string `yaml:"user"`
	// Role is one of Roles (default "assistant": approvals need the
	// person's confirmation through the client).
	Role string `yaml:"role"`
}

// Token is one bearer token and who it stands for.
type Token struct {
	Token string `yaml:"token"`
	User  string `yaml:"user"`
	Role  string `yaml:"role"`
}

func (m MCP) validate() error {
	var p problems
	if !strings.HasPrefix(m.Path, "/") || strings.HasPrefix(m.Path, "/mcp/v1") {
		p.addf("mcp.path", "%q must start with / and must not collide with the REST API under /mcp/v1", m.Path)
	}
	seen := map[string]string{}
	for i, t := range m.Tokens {
		key := fmt.Sprintf("mcp.tokens[%d]", i)
		if prev, dup := seen[t.Token]; dup {
			p.addf(key+".token", "the same token as %s: a token names one user", prev)
		}
		seen[t.Token] = key
		if len(t.Token) < MinTokenLength {
			p.addf(key+".token", "must be at least %d characters", MinTokenLength)
		}
		if t.User == "" {
			p.add(fieldErr(key+".user", "must not be empty"))
		}
		p.add(oneOf(key+".role", t.Role, Roles...))
	}
	for i, u := range m.AuthorizationServers {
		if !httpURL(u) {
			p.addf(fmt.Sprintf("mcp.authorization_servers[%d]", i), "%q must be an http(s) URL", u)
		}
	}
	if r := m.Resource; r != "" && !httpURL(r) {
		p.addf("mcp.resource", "%q must be an http(s) URL", r)
	}
	p.add(oneOf("mcp.approval.without_elicitation", m.Approval.WithoutElicitation, "accept", "refuse"))
	p.add(validateIdentity("mcp.stdio.user", m.Stdio.User))
	p.add(oneOf("mcp.stdio.role", m.Stdio.Role, Roles...))
	return p.join()
}

func httpURL(u string) bool {
	return strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://")
}
