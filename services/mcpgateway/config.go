package mcpgateway

import (
	"fmt"
	"log/slog"
	"strings"
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
	// Cluster is the cluster name on the bus (kubernetes.cluster_name).
	Cluster string
	// Host and Port are where Run listens (server.host, server.port). Port
	// 0 picks a free port (see Service.Addr).
	Host string
	Port int
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
}

// ConfigFrom derives the gateway's configuration from the shared one.
func ConfigFrom(c config.Config) Config {
	return Config{
		Cluster:             c.Kubernetes.ClusterName,
		Host:                c.Server.Host,
		Port:                c.Server.Port,
		MCPPath:             c.MCP.Path,
		RequestTimeout:      DefaultRequestTimeout,
		PlanTimeout:         DefaultPlanTimeout,
		ProbeTimeout:        DefaultProbeTimeout,
		RemediateTimeout:    remediateTimeout(c.Remediation.VerifyTimeout.Duration),
		MaxRemediateTimeout: DefaultMaxRemediateTimeout,
		ShutdownTimeout:     DefaultShutdownTimeout,
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

// withDefaults fills zero values and validates, naming the field at fault.
func (c Config) withDefaults() (Config, error) {
	if err := events.ValidateClusterName(c.Cluster); err != nil {
		return c, fmt.Errorf("mcpgateway config: %w", err)
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Port < 0 || c.Port > 65535 {
		return c, fmt.Errorf("mcpgateway config: field \"port\": %d is out of range 0-65535: %w", c.Port, events.ErrInvalid)
	}
	if c.MCPPath == "" {
		c.MCPPath = DefaultMCPPath
	}
	if !strings.HasPrefix(c.MCPPath, "/") || strings.HasPrefix(c.MCPPath, "/mcp/v1") {
		return c, fmt.Errorf("mcpgateway config: field \"mcp_path\": %q must start with / and must not be under /mcp/v1 (the REST API): %w", c.MCPPath, events.ErrInvalid)
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
}
