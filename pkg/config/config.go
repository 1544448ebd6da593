package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
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

// Server is where the gateway listens and how every service logs.
type Server struct {
	Host      string `yaml:"host"`
	Port      int    `yaml:"port"`
	LogLevel  string `yaml:"log_level"`
	LogFile   string `yaml:"log_file"`
	LogFormat string `yaml:"log_format"`
	// MetricsAddr is the listen address of the Prometheus /metrics and the
	// /healthz, /readyz endpoints of services that do not serve HTTP
	// otherwise. Empty disables it.
	MetricsAddr string `yaml:"metrics_addr"`
	// TLSCertFile and TLSKeyFile (PEM) make the gateway serve HTTPS; both
	// or neither. Read at start: restart after renewing them.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// StrictFilePermissions refuses to start when a credential file kaar
	// reads (kubeconfigs, mcp.token_file, nats.creds_file, nats.nkey_file,
	// signing.key_file, the TLS keys) is readable by its group or others,
	// or the configuration file (which may hold tokens and secrets) by
	// others; false only warns (slog, naming the file and its mode).
	StrictFilePermissions bool `yaml:"strict_file_permissions"`

	// permWarnings are the files LoadFile found too open (warn only); a
	// pointer keeps Server comparable.
	permWarnings *[]FilePermission
}

// Kubernetes selects the cluster and the scope kaar watches.
type Kubernetes struct {
	// Kubeconfig is the kubeconfig file; empty means $KUBECONFIG, then
	// ~/.kube/config, then in-cluster configuration.
	Kubeconfig string `yaml:"kubeconfig"`
	Context    string `yaml:"context"`
	// Namespace limits watching to one namespace; empty watches all.
	Namespace string `yaml:"namespace"`
	// ClusterName names the cluster on the bus and in every event. It must
	// be a NATS subject token: lower-case letters, digits, '-' and '_'.
	ClusterName string `yaml:"cluster_name"`
	// AdditionalClusters are more clusters this process watches, plans for
	// and remediates, each with its own kubeconfig/context, namespace and
	// cluster_name (kaar serve, kaar watcher|planner|executor). The MCP
	// gateway and the notifier of the process serve the cluster above;
	// reach the others with `kaar mcp --stdio --cluster-name NAME`.
	AdditionalClusters []Cluster `yaml:"additional_clusters"`
}

// Cluster is one additional cluster of Kubernetes.AdditionalClusters.
type Cluster struct {
	Kubeconfig  string `yaml:"kubeconfig"`
	Context     string `yaml:"context"`
	Namespace   string `yaml:"namespace"`
	ClusterName string `yaml:"cluster_name"`
}

// Clusters returns one configuration per watched cluster: c itself, then
// c with the kubernetes section of each additional cluster.
func (c Config) Clusters() []Config {
	out := []Config{c}
	for _, a := range c.Kubernetes.AdditionalClusters {
		cc := c
		cc.Kubernetes = Kubernetes{Kubeconfig: a.Kubeconfig, Context: a.Context, Namespace: a.Namespace, ClusterName: a.ClusterName}
		out = append(out, cc)
	}
	return out
}

// Remediation is how plans are made and executed.
type Remediation struct {
	AutoApprove bool `yaml:"auto_approve"`
	// AutoApproveMaxRisk is the highest step risk auto_approve may approve.
	AutoApproveMaxRisk string `yaml:"auto_approve_max_risk"`
	// MaxPods is how many pods one plan may touch.
	MaxPods int `yaml:"max_pods"`
	// Strategies maps an issue type to the remediation steps tried, in order.
	// An entry names a catalogue step (StrategyNames) or a custom strategy.
	Strategies map[string][]Strategy `yaml:"strategies"`
	// CustomStrategies are named sequences of catalogue steps with their
	// parameters, usable in Strategies like a catalogue step: a plan gets
	// all of a custom strategy's steps, or none of them.
	CustomStrategies map[string][]Strategy `yaml:"custom_strategies"`
	// ApprovalWindow is how long a proposed plan can be approved and started.
	ApprovalWindow Duration `yaml:"approval_window"`
	// VerifyTimeout bounds the wait for the workload to become healthy.
	VerifyTimeout Duration `yaml:"verify_timeout"`
	// MaxMemoryLimit caps what a raise-memory step may set.
	MaxMemoryLimit string `yaml:"max_memory_limit"`
	// MemoryFactor is how much a raise-memory step multiplies the limit by.
	MemoryFactor float64 `yaml:"memory_factor"`
	// Paused is the global kill switch: no plan is executed while it is set.
	Paused bool `yaml:"paused"`
	// UndoOnFailure applies the undo patches of an executed plan, newest
	// step first, when its verification fails.
	UndoOnFailure bool `yaml:"undo_on_failure"`
	// MaxConcurrent is how many plans one executor runs at once;
	// MaxConcurrentPerNamespace how many of them may be in one namespace.
	MaxConcurrent             int `yaml:"max_concurrent"`
	MaxConcurrentPerNamespace int `yaml:"max_concurrent_per_namespace"`
	// RequireDistinctApprover refuses the approval of a plan by the
	// identity that asked for it (Plan.RequestedBy; plans made from
	// incidents on the planner's own initiative have none): separation
	// of duties, enforced by the executor and checked early by the
	// gateway.
	RequireDistinctApprover bool `yaml:"require_distinct_approver"`
}

// Strategy is one entry of a strategy list: a catalogue step name, written
// either as a plain string ("check_logs") or as a mapping with parameters
// ({action: increase_memory, params: {factor: "2"}}).
type Strategy struct {
	Action string            `yaml:"action"`
	Params map[string]string `yaml:"params,omitempty"`
}

// UnmarshalYAML accepts both the string and the mapping form.
func (s *Strategy) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		s.Action = n.Value
		return nil
	}
	type plain Strategy
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = Strategy(p)
	return nil
}

// NATS is the bus: an external server by URL, or the embedded one.
type NATS struct {
	// URL of an external NATS server; empty runs an embedded server.
	URL string `yaml:"url"`
	// StoreDir is the embedded server's JetStream file storage.
	StoreDir string `yaml:"store_dir"`
	// Listen is the embedded server's client address ("" = in-process
	// only, "127.0.0.1:4222" to let split services connect).
	Listen string `yaml:"listen"`
	// CredsFile, NkeyFile, User, Password authenticate to an external
	// server, or to a running kaar serve's embedded one. NkeyFile is an
	// nkey seed file such as the ones kaar serve writes per role in its
	// state directory (credentials/<role>.nk).
	CredsFile string `yaml:"creds_file"`
	NkeyFile  string `yaml:"nkey_file"`
	User      string `yaml:"user"`
	Password  string `yaml:"password"`
	// AuditRetention is how long the audit stream keeps records.
	AuditRetention Duration `yaml:"audit_retention"`
	// ExecutorAckWait is how long an executor may go without signalling
	// progress on an execution before another executor resumes it (the
	// take-over time after an executor crash).
	ExecutorAckWait Duration `yaml:"executor_ack_wait"`
	// TLS secures the connections to NATS, and the embedded server's
	// client port (kaar serve with nats.listen, kaar nats).
	TLS NATSTLS `yaml:"tls"`
	// Replicas of every stream and bucket: 1, or 3 on a NATS cluster of
	// at least three JetStream servers. Every process that provisions the
	// bus must use the same value.
	Replicas int `yaml:"replicas"`
	// JetStreamDomain is the JetStream domain of a central bus that this
	// process reaches through a local leaf node (one watcher/executor
	// pair per cluster, reporting centrally); empty uses the JetStream of
	// the server nats.url names.
	JetStreamDomain string `yaml:"jetstream_domain"`
}

// NATSTLS is TLS for NATS. As a client, kaar verifies the server with
// CAFile (the system roots when empty) and presents CertFile/KeyFile to a
// server that verifies clients. The embedded server listens with TLS
// using CertFile/KeyFile when they are set.
type NATSTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// VerifyClients makes the embedded server refuse clients without a
	// certificate signed by a CA of CAFile (mutual TLS). In-process
	// clients are exempt.
	VerifyClients bool `yaml:"verify_clients"`
}

// Policy says where kaar may act.
type Policy struct {
	// ProtectedNamespaces are still analysed but only get diagnostic plans.
	ProtectedNamespaces []string `yaml:"protected_namespaces"`
	// IncludeNamespaces, when set, limits detection to these namespaces.
	IncludeNamespaces []string `yaml:"include_namespaces"`
	// ExcludeNamespaces are never analysed.
	ExcludeNamespaces []string `yaml:"exclude_namespaces"`
	// GitOpsManaged is what plans do for a workload managed by Argo CD,
	// Flux or Helm: "flag" proposes the fix and says it belongs in Git or
	// the chart; "diagnostic_only" proposes no change in the cluster.
	GitOpsManaged string `yaml:"gitops_managed"`
}

// GitOpsModes are the allowed values of policy.gitops_managed.
var GitOpsModes = []string{"flag", "diagnostic_only"}

// Watcher tunes detection: when a failing pod becomes an incident.
type Watcher struct {
	// RestartThreshold: a crash or OOM kill is reported once the
	// container has restarted more than this many times (1: a single
	// restart that recovered is not an incident).
	RestartThreshold int `yaml:"restart_threshold"`
	// PendingGrace is how long a pod may be unschedulable before it is
	// reported (a scale-up may be on its way).
	PendingGrace Duration `yaml:"pending_grace"`
	// RecoveredAfter is how long a restarted container must run again to
	// count as recovered.
	RecoveredAfter Duration `yaml:"recovered_after"`
	// NotReadyAfter reports a running pod not ready for that long; 0
	// disables the check.
	NotReadyAfter Duration `yaml:"not_ready_after"`
	// StuckTerminatingAfter reports a pod still there that long after its
	// deletion deadline; 0 disables the check.
	StuckTerminatingAfter Duration `yaml:"stuck_terminating_after"`
	// GroupWait holds a new incident that long before announcing it, so
	// that the pods of a workload failing together are one announcement;
	// 0 (the default) announces the first failing pod at once.
	GroupWait Duration `yaml:"group_wait"`
	// GroupInterval is the shortest time between two announcements of one
	// incident (pods joining it, a new cause): changes are coalesced.
	GroupInterval Duration `yaml:"group_interval"`
	// ResolveWait is how long an incident must be gone before it is
	// announced as resolved (a flapping pod is not resolved and detected
	// again).
	ResolveWait Duration `yaml:"resolve_wait"`
}

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

// Notify configures the notifier: Slack, outbound webhooks and the
// inbound approval webhook. Each part is off until configured.
type Notify struct {
	// Listen is the HTTP address of the Slack interactivity endpoint
	// (/slack/interactions) and the inbound approval webhook
	// (/webhooks/approval); served only when one of them is configured.
	Listen   string         `yaml:"listen"`
	Slack    Slack          `yaml:"slack"`
	Webhooks []Webhook      `yaml:"webhooks"`
	Inbound  InboundWebhook `yaml:"inbound"`
}

// Slack configures the Slack notifier (Block Kit messages updated in
// place, Approve/Reject buttons). It is on when BotToken is set.
type Slack struct {
	// BotToken is the bot's xoxb- token (chat:write).
	BotToken string `yaml:"bot_token"`
	// SigningSecret verifies interaction requests (the app's signing
	// secret); required with a bot token unless AppToken is set.
	SigningSecret string `yaml:"signing_secret"`
	// AppToken is the app-level xapp- token (connections:write). When set,
	// button clicks also arrive over Socket Mode, for clusters without
	// inbound HTTP; the signing secret is then needed only to serve
	// /slack/interactions as well.
	AppToken string `yaml:"app_token"`
	// Channel is the channel id (C0123...) messages go to.
	Channel string `yaml:"channel"`
	// APIURL is the Slack Web API base URL (tests point it elsewhere).
	APIURL string `yaml:"api_url"`
	// AllowedUsers are the Slack user ids (U0123ABCD, or W... on
	// Enterprise Grid) that may approve or reject; empty means nobody can
	// (buttons answer with a refusal). Names are refused: a display name
	// can be changed by its owner.
	AllowedUsers []string `yaml:"allowed_users"`
	// AllowedTeams are the Slack workspace (team) ids (T0123ABCD) clicks
	// are accepted from; required with AllowedUsers. A click from another
	// workspace (a shared channel, say) is refused.
	AllowedTeams []string `yaml:"allowed_teams"`
	// AllowedChannels are the channel ids clicks are accepted from;
	// empty means Channel only.
	AllowedChannels []string `yaml:"allowed_channels"`
	// RepeatInterval re-notifies (a thread reply) about an incident that
	// is still open and unchanged for that long; 0 never repeats.
	RepeatInterval Duration `yaml:"repeat_interval"`
	// QuietHours hold back new posts and reminders (messages already
	// posted are still updated in place); held posts go out when they end.
	QuietHours QuietHours `yaml:"quiet_hours"`
}

// QuietHours is a daily window, "22:00" to "07:00" in Timezone; it may
// cross midnight. Both empty disables it.
type QuietHours struct {
	Start    string `yaml:"start"`
	End      string `yaml:"end"`
	Timezone string `yaml:"timezone"`
}

// Webhook is one outbound webhook receiver.
type Webhook struct {
	// Name identifies the receiver (its durable consumer); lower-case
	// letters, digits, '-' and '_'.
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Secret signs every delivery (HMAC-SHA256, Kaar-Signature header).
	Secret string `yaml:"secret"`
	// Subjects are NATS subject filters ("kaar.*.audit.>"); empty means
	// every incident, plan and audit event.
	Subjects []string `yaml:"subjects"`
}

// InboundWebhook lets other tools approve or reject plans by POSTing a
// signed decision to /webhooks/approval. It is on when a sender is
// configured.
type InboundWebhook struct {
	// Senders are who may call the webhook, each with its own secret;
	// the decision records the name of the sender whose secret signed
	// the request as decided_by.
	Senders []InboundSender `yaml:"senders"`
	// Secret is deprecated: one sender named "webhook". Use Senders.
	Secret string `yaml:"secret"`
}

// InboundSender is one caller of the inbound webhook.
type InboundSender struct {
	// Name is recorded as decided_by (printable, at most 64 characters).
	Name string `yaml:"name"`
	// Secret signs its requests (HMAC-SHA256), at least 16 characters.
	Secret string `yaml:"secret"`
}

// DeprecatedInboundSender is the sender name of notify.inbound.secret.
const DeprecatedInboundSender = "webhook"

// InboundSenders are the configured senders, with notify.inbound.secret
// as a sender named "webhook".
func (w InboundWebhook) InboundSenders() []InboundSender {
	out := append([]InboundSender(nil), w.Senders...)
	if w.Secret != "" {
		out = append(out, InboundSender{Name: DeprecatedInboundSender, Secret: w.Secret})
	}
	return out
}

// Token is one bearer token and who it stands for.
type Token struct {
	Token string `yaml:"token"`
	User  string `yaml:"user"`
	Role  string `yaml:"role"`
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

// Known issue types, the keys of remediation.strategies.
var IssueTypes = []string{
	"CrashLoopBackOff", "ImagePullBackOff", "OOMKilled", "Pending", "Evicted",
	"CreateContainerConfigError", "InitContainerFailing", "NotReady", "StuckTerminating",
}

// StrategyNames are the catalogue steps a strategy may name. The first four
// are the original server's names and keep their meaning.
var StrategyNames = []string{
	"check_logs", "restart_pod", "check_image", "update_image",
	"rollback", "set_image", "increase_memory", "rollout_restart", "delete_pod",
	"delete_evicted_pods", "add_toleration", "set_node_selector", "lower_requests", "diagnostic",
	// The action names of plans, accepted as aliases so every step an
	// approver sees in a plan can be named in the configuration.
	"set_memory_limit", "set_resource_requests",
}

// RiskLevels are the allowed values of remediation.auto_approve_max_risk.
var RiskLevels = []string{"none", "low", "medium", "high"}

// Default returns the configuration used when no file is given.
func Default() Config {
	return Config{
		Server:     Server{Host: "127.0.0.1", Port: 8080, LogLevel: "info", LogFormat: "text"},
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
			},
		},
		NATS:   NATS{AuditRetention: Duration{30 * 24 * time.Hour}, ExecutorAckWait: Duration{2 * time.Minute}, Replicas: 1},
		Policy: Policy{ProtectedNamespaces: []string{"kube-system", "kube-public", "kube-node-lease"}, GitOpsManaged: "flag"},
		Watcher: Watcher{RestartThreshold: 1, PendingGrace: Duration{30 * time.Second}, RecoveredAfter: Duration{10 * time.Minute},
			NotReadyAfter: Duration{10 * time.Minute}, StuckTerminatingAfter: Duration{5 * time.Minute},
			GroupInterval: Duration{30 * time.Second}, ResolveWait: Duration{10 * time.Second}},
		MCP: MCP{Path: "/mcp", Approval: MCPApproval{WithoutElicitation: "refuse"}, Stdio: MCPStdio{User: "stdio", Role: "assistant"}},
		Notify: Notify{Listen: "127.0.0.1:8081", Slack: Slack{APIURL: "https://slack.com/api/", RepeatInterval: Duration{4 * time.Hour},
			QuietHours: QuietHours{Timezone: "UTC"}}},
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

// Load parses YAML from r over the defaults, applies environment overrides
// and validates. An empty reader yields the defaults.
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

// Validate checks every value and returns the first problem, naming its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.Server.Host == "" {
		add(fieldErr("server.host", "must not be empty"))
	}
	if c.Server.Port < 1 || c.Server.Port > 65535 {
		add(fieldErr("server.port", fmt.Sprintf("%d is out of range 1-65535", c.Server.Port)))
	}
	add(oneOf("server.log_level", c.Server.LogLevel, "debug", "info", "warn", "error"))
	add(oneOf("server.log_format", c.Server.LogFormat, "text", "json"))
	add(checkKeyPair("server.tls_cert_file", c.Server.TLSCertFile, "server.tls_key_file", c.Server.TLSKeyFile))
	seen := map[string]string{c.Kubernetes.ClusterName: "kubernetes.cluster_name"}
	for i, a := range c.Kubernetes.AdditionalClusters {
		key := fmt.Sprintf("kubernetes.additional_clusters[%d]", i)
		switch {
		case !validToken(a.ClusterName):
			add(fieldErr(key+".cluster_name", fmt.Sprintf("%q is not a valid cluster name: use 1-63 lower-case letters, digits, '-' or '_'", a.ClusterName)))
		case seen[a.ClusterName] != "":
			add(fieldErr(key+".cluster_name", fmt.Sprintf("%q is already the name of %s: every cluster needs its own", a.ClusterName, seen[a.ClusterName])))
		default:
			seen[a.ClusterName] = key + ".cluster_name"
		}
		if a.Namespace != "" && !validDNSLabel(a.Namespace) {
			add(fieldErr(key+".namespace", fmt.Sprintf("%q is not a valid namespace name", a.Namespace)))
		}
	}
	if !validToken(c.Kubernetes.ClusterName) {
		add(fieldErr("kubernetes.cluster_name", fmt.Sprintf("%q is not a valid cluster name: use 1-63 lower-case letters, digits, '-' or '_', starting and ending with a letter or digit", c.Kubernetes.ClusterName)))
	}
	if ns := c.Kubernetes.Namespace; ns != "" && !validDNSLabel(ns) {
		add(fieldErr("kubernetes.namespace", fmt.Sprintf("%q is not a valid namespace name", ns)))
	}
	add(oneOf("remediation.auto_approve_max_risk", c.Remediation.AutoApproveMaxRisk, RiskLevels...))
	if c.Remediation.MaxPods < 1 {
		add(fieldErr("remediation.max_pods", fmt.Sprintf("%d must be at least 1", c.Remediation.MaxPods)))
	}
	w := c.Remediation.ApprovalWindow.Duration
	if w < time.Second || w > 24*time.Hour || w%time.Second != 0 {
		add(fieldErr("remediation.approval_window", fmt.Sprintf("%s must be whole seconds between 1s and 24h", w)))
	}
	if v := c.Remediation.VerifyTimeout.Duration; v < time.Second || v > time.Hour {
		add(fieldErr("remediation.verify_timeout", fmt.Sprintf("%s must be between 1s and 1h", v)))
	}
	if f := c.Remediation.MemoryFactor; f <= 1 || f > 8 {
		add(fieldErr("remediation.memory_factor", fmt.Sprintf("%g must be greater than 1 and at most 8", f)))
	}
	if _, err := ParseQuantityBytes(c.Remediation.MaxMemoryLimit); err != nil {
		add(fieldErr("remediation.max_memory_limit", err.Error()))
	}
	customNames := make([]string, 0, len(c.Remediation.CustomStrategies))
	for k := range c.Remediation.CustomStrategies {
		customNames = append(customNames, k)
	}
	sort.Strings(customNames)
	keys := make([]string, 0, len(c.Remediation.Strategies))
	for k := range c.Remediation.Strategies {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, typ := range keys {
		key := "remediation.strategies." + typ
		if !contains(IssueTypes, typ) {
			add(fieldErr(key, "unknown issue type", IssueTypes...))
			continue
		}
		allowed := append(append([]string{}, StrategyNames...), customNames...)
		for i, s := range c.Remediation.Strategies[typ] {
			if !contains(allowed, s.Action) {
				add(fieldErr(fmt.Sprintf("%s[%d]", key, i), fmt.Sprintf("unknown strategy %q", s.Action), allowed...))
			}
		}
	}
	for _, name := range customNames {
		key := "remediation.custom_strategies." + name
		steps := c.Remediation.CustomStrategies[name]
		switch {
		case contains(StrategyNames, name):
			add(fieldErr(key, fmt.Sprintf("%q is a catalogue step: give the custom strategy another name", name)))
		case !validToken(name):
			add(fieldErr(key, fmt.Sprintf("%q is not a valid name: use lower-case letters, digits, '-' or '_'", name)))
		case len(steps) == 0:
			add(fieldErr(key, "must list at least one catalogue step"))
		}
		for i, s := range steps {
			if !contains(StrategyNames, s.Action) {
				add(fieldErr(fmt.Sprintf("%s[%d]", key, i), fmt.Sprintf("unknown catalogue step %q (a custom strategy cannot name another)", s.Action), StrategyNames...))
			}
		}
	}
	if d := c.NATS.AuditRetention.Duration; d < time.Hour {
		add(fieldErr("nats.audit_retention", fmt.Sprintf("%s must be at least 1h", d)))
	}
	if n := c.Remediation.MaxConcurrent; n < 1 || n > 64 {
		add(fieldErr("remediation.max_concurrent", fmt.Sprintf("%d must be between 1 and 64", n)))
	}
	if n := c.Remediation.MaxConcurrentPerNamespace; n < 1 || n > c.Remediation.MaxConcurrent {
		add(fieldErr("remediation.max_concurrent_per_namespace", fmt.Sprintf("%d must be between 1 and remediation.max_concurrent (%d)", n, c.Remediation.MaxConcurrent)))
	}
	if d := c.NATS.ExecutorAckWait.Duration; d < time.Second || d > time.Hour {
		add(fieldErr("nats.executor_ack_wait", fmt.Sprintf("%s must be between 1s and 1h", d)))
	}
	if d := c.NATS.JetStreamDomain; d != "" && !validToken(d) {
		add(fieldErr("nats.jetstream_domain", fmt.Sprintf("%q must be lower-case letters, digits, '-' and '_'", d)))
	}
	if r := c.NATS.Replicas; r != 1 && r != 3 {
		add(fieldErr("nats.replicas", fmt.Sprintf("%d is not allowed", r), "1", "3"))
	}
	if f := c.NATS.TLS.CAFile; f != "" {
		add(checkCAFile("nats.tls.ca_file", f))
	}
	add(checkKeyPair("nats.tls.cert_file", c.NATS.TLS.CertFile, "nats.tls.key_file", c.NATS.TLS.KeyFile))
	if c.NATS.TLS.VerifyClients && (c.NATS.TLS.CAFile == "" || c.NATS.TLS.CertFile == "") {
		add(fieldErr("nats.tls.verify_clients", "needs nats.tls.ca_file (the CA of client certificates) and nats.tls.cert_file, nats.tls.key_file (the server's certificate)"))
	}
	for _, err := range c.NATS.validateAccess() {
		add(err)
	}
	for i, ns := range c.Policy.ProtectedNamespaces {
		if !validDNSLabel(ns) {
			add(fieldErr(fmt.Sprintf("policy.protected_namespaces[%d]", i), fmt.Sprintf("%q is not a valid namespace name", ns)))
		}
	}
	for i, ns := range c.Policy.IncludeNamespaces {
		if !validDNSLabel(ns) {
			add(fieldErr(fmt.Sprintf("policy.include_namespaces[%d]", i), fmt.Sprintf("%q is not a valid namespace name", ns)))
		}
	}
	for i, ns := range c.Policy.ExcludeNamespaces {
		if !validDNSLabel(ns) {
			add(fieldErr(fmt.Sprintf("policy.exclude_namespaces[%d]", i), fmt.Sprintf("%q is not a valid namespace name", ns)))
		}
	}
	add(oneOf("policy.gitops_managed", c.Policy.GitOpsManaged, GitOpsModes...))
	if n := c.Watcher.RestartThreshold; n < 0 || n > 1000 {
		add(fieldErr("watcher.restart_threshold", fmt.Sprintf("%d is not between 0 and 1000", n)))
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{
		{"watcher.pending_grace", c.Watcher.PendingGrace.Duration}, {"watcher.recovered_after", c.Watcher.RecoveredAfter.Duration},
		{"watcher.not_ready_after", c.Watcher.NotReadyAfter.Duration}, {"watcher.stuck_terminating_after", c.Watcher.StuckTerminatingAfter.Duration},
		{"watcher.group_wait", c.Watcher.GroupWait.Duration},
	} {
		if d.d < 0 || d.d > 24*time.Hour {
			add(fieldErr(d.key, fmt.Sprintf("%s is not between 0s and 24h", d.d)))
		}
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"watcher.group_interval", c.Watcher.GroupInterval.Duration}, {"watcher.resolve_wait", c.Watcher.ResolveWait.Duration}} {
		if d.d < time.Second || d.d > 24*time.Hour {
			add(fieldErr(d.key, fmt.Sprintf("%s is not between 1s and 24h", d.d)))
		}
	}
	if !strings.HasPrefix(c.MCP.Path, "/") || strings.HasPrefix(c.MCP.Path, "/mcp/v1") {
		add(fieldErr("mcp.path", fmt.Sprintf("%q must start with / and must not collide with the REST API under /mcp/v1", c.MCP.Path)))
	}
	for i, t := range c.MCP.Tokens {
		key := fmt.Sprintf("mcp.tokens[%d]", i)
		if len(t.Token) < 16 {
			add(fieldErr(key+".token", "must be at least 16 characters"))
		}
		if t.User == "" {
			add(fieldErr(key+".user", "must not be empty"))
		}
		add(oneOf(key+".role", t.Role, Roles...))
	}
	for i, u := range c.MCP.AuthorizationServers {
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			add(fieldErr(fmt.Sprintf("mcp.authorization_servers[%d]", i), fmt.Sprintf("%q must be an http(s) URL", u)))
		}
	}
	if r := c.MCP.Resource; r != "" && !strings.HasPrefix(r, "https://") && !strings.HasPrefix(r, "http://") {
		add(fieldErr("mcp.resource", fmt.Sprintf("%q must be an http(s) URL", r)))
	}
	add(oneOf("mcp.approval.without_elicitation", c.MCP.Approval.WithoutElicitation, "accept", "refuse"))
	add(validateIdentity("mcp.stdio.user", c.MCP.Stdio.User))
	add(oneOf("mcp.stdio.role", c.MCP.Stdio.Role, Roles...))
	c.Notify.validate(add)
	add(c.Signing.validate())
	return errors.Join(errs...)
}

// checkKeyPair checks a certificate and its key: both or neither, readable,
// and matching.
func checkKeyPair(certKey, certFile, keyKey, keyFile string) error {
	switch {
	case certFile == "" && keyFile == "":
		return nil
	case keyFile == "":
		return fieldErr(keyKey, "must be set with "+certKey)
	case certFile == "":
		return fieldErr(certKey, "must be set with "+keyKey)
	}
	if _, err := os.ReadFile(certFile); err != nil {
		return fieldErr(certKey, err.Error())
	}
	if _, err := os.ReadFile(keyFile); err != nil {
		return fieldErr(keyKey, err.Error())
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return fieldErr(certKey, fmt.Sprintf("%s with %s: %v", certFile, keyKey+" "+keyFile, err))
	}
	return nil
}

// checkCAFile checks that path holds at least one PEM certificate.
func checkCAFile(key, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fieldErr(key, err.Error())
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return fieldErr(key, fmt.Sprintf("%s holds no PEM certificate", path))
	}
	return nil
}

func oneOf(key, v string, allowed ...string) error {
	if contains(allowed, v) {
		return nil
	}
	return fieldErr(key, fmt.Sprintf("%q is not allowed", v), allowed...)
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

func validToken(s string) bool {
	if len(s) < 1 || len(s) > 63 {
		return false
	}
	for i, r := range s {
		alnum := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')
		if !alnum && (i == 0 || i == len(s)-1 || (r != '-' && r != '_')) {
			return false
		}
	}
	return true
}

func validDNSLabel(s string) bool {
	return validToken(s) && !strings.Contains(s, "_")
}

// validateIdentity checks a name recorded as decided_by: not empty,
// printable, at most 64 characters.
func validateIdentity(key, v string) error {
	if v == "" {
		return fieldErr(key, "must not be empty")
	}
	if len(v) > 64 {
		return fieldErr(key, fmt.Sprintf("%q is longer than 64 characters", v))
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fieldErr(key, fmt.Sprintf("%q contains a control character", v))
		}
	}
	return nil
}
