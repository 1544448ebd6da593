package planner

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
)

// Defaults of the planner-only settings of Config.
const (
	DefaultLogTailLines   = 50
	DefaultLogLimitBytes  = 8 << 10
	DefaultMaxEvents      = 20
	DefaultAnalyzeTimeout = 5 * time.Second
	DefaultPlanTimeout    = time.Minute
	DefaultWorkers        = 4
)

// Values of Config.GitOpsManaged (policy.gitops_managed).
const (
	GitOpsFlag           = "flag"
	GitOpsDiagnosticOnly = "diagnostic_only"
)

// Strategy is one entry of remediation.strategies: a catalogue step name
// (config.StrategyNames) and its optional parameters.
type Strategy struct {
	Name   string
	Params map[string]string
}

// Config is what the planner needs from the configuration. Build it with
// ConfigFrom; the zero values of the planner-only fields take the defaults.
type Config struct {
	// JetStreamDomain is the JetStream domain of the bus
	// (nats.jetstream_domain): set when this service reaches a central
	// bus through a leaf node; empty for the server it connects to.
	JetStreamDomain string
	// Cluster is the cluster name on the bus (kubernetes.cluster_name).
	Cluster string
	// ApprovalWindow is how long a proposed plan can be approved: its TTL in
	// kaar_plans and ExpiresAt - CreatedAt (remediation.approval_window).
	ApprovalWindow time.Duration
	// Strategies are tried in order for each issue type
	// (remediation.strategies). A type without strategies gets a
	// diagnostic-only plan.
	Strategies map[events.IssueType][]Strategy
	// CustomStrategies are named sequences of catalogue steps
	// (remediation.custom_strategies); Strategies may name them.
	CustomStrategies map[string][]Strategy
	// MaxPods bounds how many pods one step may delete (remediation.max_pods).
	MaxPods int
	// MemoryFactor multiplies the memory limit of an OOMKilled container
	// (remediation.memory_factor).
	MemoryFactor float64
	// MaxMemoryLimit caps a raised memory limit, as a Kubernetes quantity
	// (remediation.max_memory_limit).
	MaxMemoryLimit string
	// ProtectedNamespaces only get diagnostic plans
	// (policy.protected_namespaces).
	ProtectedNamespaces []string
	// GitOpsManaged is GitOpsFlag (default: propose the fix, say it belongs
	// in Git or the chart) or GitOpsDiagnosticOnly (policy.gitops_managed).
	GitOpsManaged string

	// LogTailLines and LogLimitBytes bound the previous-container logs
	// quoted as evidence (defaults 50 lines, 8 KiB).
	LogTailLines  int64
	LogLimitBytes int64
	// MaxEvents bounds the Kubernetes events quoted as evidence (default 20).
	MaxEvents int
	// AnalyzeTimeout bounds a request to the watcher (default 5s).
	AnalyzeTimeout time.Duration
	// PlanTimeout bounds the planning of one incident (default 1m, well
	// under the consumer's ack wait).
	PlanTimeout time.Duration
	// Workers is how many incidents are planned concurrently (default 4).
	Workers int
}

// ConfigFrom takes the planner's settings out of the whole configuration
// (already validated by config.Load).
func ConfigFrom(c config.Config) Config {
	convert := func(list []config.Strategy) []Strategy {
		out := make([]Strategy, 0, len(list))
		for _, s := range list {
			out = append(out, Strategy{Name: s.Action, Params: maps.Clone(s.Params)})
		}
		return out
	}
	strategies := make(map[events.IssueType][]Strategy, len(c.Remediation.Strategies))
	for typ, list := range c.Remediation.Strategies {
		strategies[events.IssueType(typ)] = convert(list)
	}
	var custom map[string][]Strategy
	if len(c.Remediation.CustomStrategies) > 0 {
		custom = make(map[string][]Strategy, len(c.Remediation.CustomStrategies))
		for name, list := range c.Remediation.CustomStrategies {
			custom[name] = convert(list)
		}
	}
	return Config{
		Cluster:             c.Kubernetes.ClusterName,
		JetStreamDomain:     c.NATS.JetStreamDomain,
		ApprovalWindow:      c.Remediation.ApprovalWindow.Duration,
		Strategies:          strategies,
		CustomStrategies:    custom,
		MaxPods:             c.Remediation.MaxPods,
		MemoryFactor:        c.Remediation.MemoryFactor,
		MaxMemoryLimit:      c.Remediation.MaxMemoryLimit,
		ProtectedNamespaces: slices.Clone(c.Policy.ProtectedNamespaces),
		GitOpsManaged:       c.Policy.GitOpsManaged,
	}
}

// withDefaults fills zero values with the defaults: the planner-only
// settings with the Default* constants, and the settings that come from
// the configuration (for a Config built by hand, in tests) with
// config.Default()'s. It does not check those values again: ConfigFrom
// takes them from a configuration config.Load validated, where their
// bounds live. The cluster name is checked because subjects are built
// from it, with the bus's own rule.
func (c Config) withDefaults() (Config, error) {
	if c.LogTailLines <= 0 {
		c.LogTailLines = DefaultLogTailLines
	}
	if c.LogLimitBytes <= 0 {
		c.LogLimitBytes = DefaultLogLimitBytes
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = DefaultMaxEvents
	}
	if c.AnalyzeTimeout <= 0 {
		c.AnalyzeTimeout = DefaultAnalyzeTimeout
	}
	if c.PlanTimeout <= 0 {
		c.PlanTimeout = DefaultPlanTimeout
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	def := config.Default()
	if c.ApprovalWindow == 0 {
		c.ApprovalWindow = def.Remediation.ApprovalWindow.Duration
	}
	if c.MaxPods == 0 {
		c.MaxPods = def.Remediation.MaxPods
	}
	if c.MemoryFactor == 0 {
		c.MemoryFactor = def.Remediation.MemoryFactor
	}
	if c.MaxMemoryLimit == "" {
		c.MaxMemoryLimit = def.Remediation.MaxMemoryLimit
	}
	if c.GitOpsManaged == "" {
		c.GitOpsManaged = def.Policy.GitOpsManaged
	}
	if err := events.ValidateClusterName(c.Cluster); err != nil {
		return c, fmt.Errorf("planner config: kubernetes.cluster_name: %w: %w", err, ErrInvalidConfig)
	}
	return c, nil
}

// protected reports whether ns is a protected namespace.
func (c Config) protected(ns string) bool { return slices.Contains(c.ProtectedNamespaces, ns) }

// parseBytes parses a memory quantity ("4Gi", "1.5Gi") into bytes with
// the parser config.Validate uses, so remediation.max_memory_limit means
// the same to both.
func parseBytes(s string) (int64, error) { return config.ParseQuantityBytes(s) }
