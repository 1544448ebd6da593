package mcpgateway

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	DefaultMCPPath             = "/mcp"
	DefaultVersion             = "dev"
	DefaultRequestTimeout      = 10 * time.Second
	DefaultPlanTimeout         = 60 * time.Second
	DefaultProbeTimeout        = 2 * time.Second
	DefaultRemediateTimeout    = 3 * time.Minute
	DefaultMaxRemediateTimeout = 30 * time.Minute
	DefaultShutdownTimeout     = 15 * time.Second
	// MaxBodyBytes bounds a REST request body and an MCP tool call's
	// arguments.
	MaxBodyBytes = 1 << 20
)

// Default user names recorded as a Decision's decided_by when the request
// carries no authenticated identity (see WithUser) and Config.DefaultUser is
// empty.
const (
	AnonymousMCPUser  = "mcp-client"
	AnonymousRESTUser = "rest-client"
)

// Config is the gateway's own configuration.
type Config struct {
	// JetStreamDomain is the JetStream domain of the bus
	// (nats.jetstream_domain): set when this service reaches a central
	// bus through a leaf node; empty for the server it connects to.
	JetStreamDomain string
	// Cluster is the cluster name on the bus (kubernetes.cluster_name).
	Cluster string
	// Host and Port are where Run listens (server.host, server.port). Port
	// 0 picks a free port (see Service.Addr).
	Host string
	Port int
	// TLSCertFile and TLSKeyFile (PEM), when both set, make Run serve
	// HTTPS (server.tls_cert_file, server.tls_key_file). New reads them.
	TLSCertFile string
	TLSKeyFile  string
	// MCPPath is the streamable HTTP endpoint (mcp.path); default "/mcp".
	MCPPath string
	// Version is reported by the test tool and in the MCP server info.
	Version string
	// RequestTimeout bounds a request to the watcher and the KV reads;
	// default 10s.
	RequestTimeout time.Duration
	// PlanTimeout bounds a request to the planner, which gathers evidence
	// and dry-runs every step; default 60s.
	PlanTimeout time.Duration
	// ProbeTimeout bounds the test tool's probe of each service; default 2s.
	ProbeTimeout time.Duration
	// RemediateTimeout is how long remediate_issue waits for an execution
	// to finish when the caller gives no timeout; default 3m.
	// MaxRemediateTimeout caps the caller's timeout; default 30m.
	RemediateTimeout    time.Duration
	MaxRemediateTimeout time.Duration
	// ShutdownTimeout bounds Run's graceful shutdown; default 15s.
	ShutdownTimeout time.Duration
	// DefaultUser is recorded as decided_by when a request carries no
	// authenticated identity; empty means "mcp-client" or "rest-client".
	DefaultUser string

	// Tokens are the accepted bearer tokens (mcp.tokens), TokenFile a YAML
	// file with more (mcp.token_file, read by New). With none, HTTP is
	// unauthenticated, which New allows only on a loopback Host.
	Tokens    []Token
	TokenFile string
	// Resource is the MCP endpoint's canonical URL in the RFC 9728
	// metadata (mcp.resource); empty derives it from each request.
	Resource string
	// AuthorizationServers are advertised in the metadata
	// (mcp.authorization_servers).
	AuthorizationServers []string
	// WithoutElicitation is what approve_remediation_plan and
	// reject_remediation_plan do for a caller with the assistant role
	// whose MCP client cannot ask its user to confirm
	// (mcp.approval.without_elicitation); default refuse.
	WithoutElicitation ElicitationFallback
	// StdioUser and StdioRole are who ServeStdio acts as
	// (mcp.stdio.user, mcp.stdio.role); default "stdio" and
	// RoleAssistant.
	StdioUser string
	StdioRole Role
	// RequireDistinctApprover refuses the approval of a plan by the
	// identity that requested it (remediation.require_distinct_approver);
	// the executor enforces it too.
	RequireDistinctApprover bool
}

// DefaultStdioUser is the default of Config.StdioUser.
const DefaultStdioUser = "stdio"

// ElicitationFallback is the policy for MCP approvals from clients without
// the elicitation capability.
type ElicitationFallback string

// Values of ElicitationFallback.
const (
	// FallbackAccept decides on the model's call alone (channel "mcp").
	FallbackAccept ElicitationFallback = "accept"
	// FallbackRefuse refuses and tells the model what its person can do:
	// decide in an elicitation-capable client, the CLI, Slack, or with an
	// approver token of their own. The default.
	FallbackRefuse ElicitationFallback = "refuse"
)

// ConfigFrom derives the gateway's configuration from the shared one.
func ConfigFrom(c config.Config) Config {
	var tokens []Token
	for _, t := range c.MCP.Tokens {
		tokens = append(tokens, Token{Token: t.Token, User: t.User, Role: Role(t.Role)})
	}
	return Config{
		Cluster:                 c.Kubernetes.ClusterName,
		JetStreamDomain:         c.NATS.JetStreamDomain,
		Host:                    c.Server.Host,
		Port:                    c.Server.Port,
		TLSCertFile:             c.Server.TLSCertFile,
		TLSKeyFile:              c.Server.TLSKeyFile,
		MCPPath:                 c.MCP.Path,
		RequestTimeout:          DefaultRequestTimeout,
		PlanTimeout:             DefaultPlanTimeout,
		ProbeTimeout:            DefaultProbeTimeout,
		RemediateTimeout:        remediateTimeout(c.Remediation.VerifyTimeout.Duration),
		MaxRemediateTimeout:     DefaultMaxRemediateTimeout,
		ShutdownTimeout:         DefaultShutdownTimeout,
		Tokens:                  tokens,
		TokenFile:               c.MCP.TokenFile,
		Resource:                c.MCP.Resource,
		AuthorizationServers:    c.MCP.AuthorizationServers,
		WithoutElicitation:      ElicitationFallback(c.MCP.Approval.WithoutElicitation),
		StdioUser:               c.MCP.Stdio.User,
		StdioRole:               Role(c.MCP.Stdio.Role),
		RequireDistinctApprover: c.Remediation.RequireDistinctApprover,
	}
}

// remediateTimeout is the default wait of remediate_issue: long enough for
// the executor's verification (remediation.verify_timeout) plus a minute
// for claiming and the steps, within the maximum.
func remediateTimeout(verify time.Duration) time.Duration {
	if verify <= 0 {
		return DefaultRemediateTimeout
	}
	return min(max(verify+time.Minute, DefaultRemediateTimeout), DefaultMaxRemediateTimeout)
}

// withDefaults fills zero values with the defaults. The settings that come
// from the configuration are not checked again: ConfigFrom takes them from
// a configuration config.Load validated, where their bounds live. What is
// checked: the cluster name, because subjects are built from it (the
// bus's rule, as config.Load applies it); the tokens, which New checks
// again with mcp.token_file's (config.MinTokenLength, the same roles); and
// the remediate timeouts, which no configuration key sets.
func (c Config) withDefaults() (Config, error) {
	if err := events.ValidateClusterName(c.Cluster); err != nil {
		return c, fmt.Errorf("mcpgateway config: %w", err)
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.MCPPath == "" {
		c.MCPPath = DefaultMCPPath
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RequestTimeout, DefaultRequestTimeout)
	def(&c.PlanTimeout, DefaultPlanTimeout)
	def(&c.ProbeTimeout, DefaultProbeTimeout)
	def(&c.RemediateTimeout, DefaultRemediateTimeout)
	def(&c.MaxRemediateTimeout, DefaultMaxRemediateTimeout)
	def(&c.ShutdownTimeout, DefaultShutdownTimeout)
	if c.WithoutElicitation == "" {
		c.WithoutElicitation = FallbackRefuse
	}
	if c.StdioUser == "" {
		c.StdioUser = DefaultStdioUser
	}
	if c.StdioRole == "" {
		c.StdioRole = RoleAssistant
	}
	if err := validateTokens("mcp.tokens", c.Tokens); err != nil {
		return c, fmt.Errorf("mcpgateway config: %w", err)
	}
	if c.RemediateTimeout > c.MaxRemediateTimeout {
		return c, fmt.Errorf("mcpgateway config: field \"remediate_timeout\": %s is above max_remediate_timeout %s: %w", c.RemediateTimeout, c.MaxRemediateTimeout, events.ErrInvalid)
	}
	return c, nil
}

// Deps are the gateway's collaborators.
type Deps struct {
	// NATS is the bus connection (required). The gateway never closes it.
	NATS *nats.Conn
	// Logger receives the gateway's logs; nil uses slog.Default(). In stdio
	// mode it must not write to stdout, which carries the protocol.
	Logger *slog.Logger
	// Registerer receives the gateway's metrics; nil uses a private
	// registry.
	Registerer prometheus.Registerer
	// Gatherer, when set, is served on GET /metrics by Handler.
	Gatherer prometheus.Gatherer
	// Now is the clock used for plan expiry and decision times; default
	// time.Now.
	Now func() time.Time
	// TokenVerifier, when set, checks bearer tokens that are not in
	// Config.Tokens (OAuth access tokens, for example). Setting it enables
	// authentication like a configured token does.
	TokenVerifier TokenVerifier
	// Signer signs every decision the gateway publishes (required): the
	// executor trusts its key for via mcp, mcp-elicitation and rest only
	// (signing.trusted_channels.mcp).
	Signer *events.Signer
}
