package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrInvalid is wrapped by every error Load returns for a bad file, key or
// value, so callers can tell configuration mistakes from I/O failures.
var ErrInvalid = errors.New("invalid configuration")

// Config is the whole configuration. The first three sections keep the shape
// of the original server's config.yaml; the rest are kaar's own.
type Config struct {
	Server      Server      `yaml:"server"`
	Kubernetes  Kubernetes  `yaml:"kubernetes"`
	Remediation Remediation `yaml:"remediation"`
	NATS        NATS        `yaml:"nats"`
	Policy      Policy      `yaml:"policy"`
	Watcher     Watcher     `yaml:"watcher"`
	MCP         MCP         `yaml:"mcp"`
	Notify      Notify      `yaml:"notify"`
	Signing     Signing     `yaml:"signing"`
}

// Duration is a time.Duration written as a Go duration string ("15m").
type Duration struct{ time.Duration }

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("want a duration such as 90s, 15m or 1h: %w", err)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Default returns the configuration used when no file is given.
func Default() Config {
	return Config{
		Server:     Server{Host: "127.0.0.1", Port: 8000, LogLevel: "info", LogFormat: "text", MemoryLimit: MemoryLimitAuto},
		Kubernetes: Kubernetes{ClusterName: "default"},
		Remediation: Remediation{
			AutoApproveMaxRisk:        "low",
			MaxConcurrent:             4,
			MaxConcurrentPerNamespace: 2,
			MaxPods:                   10,
			ApprovalWindow:            Duration{15 * time.Minute},
			VerifyTimeout:             Duration{3 * time.Minute},
			MaxMemoryLimit:            "4Gi",
			MemoryFactor:              2,
			Strategies: map[string][]Strategy{
				"CrashLoopBackOff": {{Action: "check_logs"}, {Action: "rollback"}, {Action: "restart_pod"}},
				"ImagePullBackOff": {{Action: "check_image"}, {Action: "rollback"}, {Action: "update_image"}},
				"OOMKilled":        {{Action: "increase_memory"}},
				"Pending":          {{Action: "set_node_selector"}, {Action: "lower_requests"}, {Action: "diagnostic"}},
				"Evicted":          {{Action: "delete_evicted_pods"}},
				// A Deployment past its progress deadline: explain, then
				// roll back to the last revision that ran.
				"RolloutStuck": {{Action: "diagnostic"}, {Action: "rollback"}},
				// A Service that routes to no ready pod: its selector or
				// targetPort corrected when exactly one answer fits.
				"ServiceUnavailable": {{Action: "set_service_selector"}, {Action: "set_service_target_port"}},
				// A container's memory projected to reach its limit (a
				// warning, planned only on request): raise the limit
				// before the OOM, sized from the forecast.
				"MemoryNearLimit": {{Action: "increase_memory"}},
			},
		},
		NATS:   NATS{AuditRetention: Duration{30 * 24 * time.Hour}, ExecutorAckWait: Duration{2 * time.Minute}, LeaseDuration: Duration{15 * time.Second}, Replicas: 1},
		Policy: Policy{ProtectedNamespaces: []string{"kube-system", "kube-public", "kube-node-lease"}, GitOpsManaged: "flag"},
		Watcher: Watcher{RestartThreshold: 1, PendingGrace: Duration{30 * time.Second}, RecoveredAfter: Duration{10 * time.Minute},
			NotReadyAfter: Duration{10 * time.Minute}, StuckTerminatingAfter: Duration{5 * time.Minute},
			NodeGrace: Duration{2 * time.Minute}, NodeCordonedAfter: Duration{time.Hour},
			HPAGrace: Duration{5 * time.Minute}, HPAAtMaxAfter: Duration{30 * time.Minute}, IngressGrace: Duration{15 * time.Minute},
			GroupInterval: Duration{30 * time.Second}, ResolveWait: Duration{10 * time.Second}, Warnings: DefaultWarnings()},
		MCP: MCP{Path: "/mcp", Approval: MCPApproval{WithoutElicitation: "refuse"}, Stdio: MCPStdio{User: "stdio", Role: "assistant"}},
		Notify: Notify{Listen: "127.0.0.1:8081", Slack: Slack{APIURL: "https://slack.com/api/", RepeatInterval: Duration{4 * time.Hour},
			QuietHours: QuietHours{Timezone: "UTC"}},
			WarningDigest: WarningDigest{Enabled: true, Every: Duration{24 * time.Hour}, At: "09:00", Timezone: "UTC", MaxLines: 20}},
	}
}

// LoadFile reads the file at path (if path is not empty) over the defaults,
// applies environment overrides from environ (os.Environ() in main), and
// validates the result.
func LoadFile(path string, environ []string) (Config, error) {
	var src []byte
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read config: %w", err)
		}
		src = b
	}
	cfg, err := Load(bytes.NewReader(src), environ)
	if err != nil {
		return cfg, err
	}
	if err := cfg.applyFilePermissions(path); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Load parses YAML from r over the defaults, applies environment overrides,
// writes server.log_level in lower case ("INFO" is "info") and validates,
// reporting every invalid value (see Validate). An empty reader yields the
// defaults.
func Load(r io.Reader, environ []string) (Config, error) {
	cfg := Default()
	b, err := io.ReadAll(r)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	if len(bytes.TrimSpace(b)) > 0 {
		var root yaml.Node
		if err := yaml.Unmarshal(b, &root); err != nil {
			return Config{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if err := checkKeys(&root, cfg); err != nil {
			return Config{}, err
		}
		// Strategies given in the file replace the default map entries
		// wholesale, so decode them into an empty map first.
		cfg.Remediation.Strategies = nil
		if err := root.Decode(&cfg); err != nil {
			return Config{}, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if cfg.Remediation.Strategies == nil {
			cfg.Remediation.Strategies = Default().Remediation.Strategies
		}
	}
	if err := applyEnv(&cfg, environ); err != nil {
		return Config{}, err
	}
	if l, ok := canonicalLogLevel(cfg.Server.LogLevel); ok {
		cfg.Server.LogLevel = l
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// FieldError names the configuration key at fault.
type FieldError struct {
	Key     string
	Problem string
	Allowed []string
}

func (e *FieldError) Error() string {
	s := fmt.Sprintf("config key %q: %s", e.Key, e.Problem)
	if len(e.Allowed) > 0 {
		s += " (allowed: " + strings.Join(e.Allowed, ", ") + ")"
	}
	return s
}

// Unwrap makes every FieldError an ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(key, problem string, allowed ...string) error {
	return &FieldError{Key: key, Problem: problem, Allowed: allowed}
}
