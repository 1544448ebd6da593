package watcher

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
)

// ErrInvalidConfig is wrapped by every configuration error New returns.
var ErrInvalidConfig = errors.New("watcher: invalid configuration")

// ErrAlreadyRun is returned by a second call to Run.
var ErrAlreadyRun = errors.New("watcher: Run called twice")

// Defaults of Config.
const (
	DefaultDebounce       = 500 * time.Millisecond
	DefaultWorkers        = 4
	DefaultResyncPeriod   = 10 * time.Minute
	DefaultStateRetention = 24 * time.Hour
	DefaultPublishTimeout = 10 * time.Second
	// DefaultGroupWait is zero: a new incident is announced as soon as
	// its first pod fails (see Timing).
	DefaultGroupWait     = time.Duration(0)
	DefaultGroupInterval = 30 * time.Second
	DefaultResolveWait   = 10 * time.Second
)

// Config is the watcher's configuration. Zero durations and counts take
// the defaults above.
type Config struct {
	// JetStreamDomain is the JetStream domain of the bus
	// (nats.jetstream_domain): set when this service reaches a central
	// bus through a leaf node; empty for the server it connects to.
	JetStreamDomain string
	// Cluster names the cluster on the bus (kubernetes.cluster_name).
	Cluster string
	// Namespace scopes the informers to one namespace; empty watches all
	// (kubernetes.namespace).
	Namespace string
	// IncludeNamespaces, when set, limits detection to these namespaces;
	// ExcludeNamespaces are never analysed (policy.*).
	IncludeNamespaces []string
	ExcludeNamespaces []string
	// ProtectedNamespaces are analysed and their incidents flagged
	// Protected: plans for them stay diagnostic (policy.protected_namespaces).
	ProtectedNamespaces []string
	// Classify tunes the classifier; the zero value means
	// DefaultClassifyOptions().
	Classify ClassifyOptions
	// Nodes tunes node detection (watcher.node_grace,
	// watcher.node_cordoned_after); zero durations take their defaults.
	// Nodes are watched only when Namespace is empty.
	Nodes NodeOptions
	// HPAs tunes HorizontalPodAutoscaler detection (watcher.hpa_grace,
	// watcher.hpa_at_max_after); zero durations take their defaults.
	HPAs HPAOptions
	// Ingresses tunes Ingress detection (watcher.ingress_grace); a zero
	// duration takes its default.
	Ingresses IngressOptions
	// Warnings tunes the warning class (watcher.warnings); off in the
	// zero Config, on by default in kaar's configuration.
	Warnings WarningOptions
	// Timing of announcements (group wait, group interval, resolve wait);
	// zero GroupInterval and ResolveWait take their defaults, a zero
	// GroupWait announces a new incident at once.
	Timing Timing
	// Debounce is how long the events of one owner are collected before
	// it is evaluated: a storm of pod updates becomes one evaluation.
	Debounce time.Duration
	// Workers evaluate owners in parallel (one owner is never evaluated
	// twice at once).
	Workers int
	// ResyncPeriod is the informers' resync: every owner with a failing
	// pod is re-evaluated at least that often.
	ResyncPeriod time.Duration
	// StateRetention is how long the record of a resolved incident stays
	// in the kaar_incidents bucket (it must outlive the ISSUES duplicate
	// window, so that a recurrence gets a new observation number).
	StateRetention time.Duration
	// PublishTimeout bounds one publication and its state update.
	PublishTimeout time.Duration

	// serviceGrace replaces ServiceGrace in this package's sandbox tests.
	serviceGrace time.Duration
	// rolloutStall replaces RolloutStallAfter in this package's tests.
	rolloutStall time.Duration
	// cronGrace replaces CronJobGrace in this package's tests.
	cronGrace time.Duration
	// certDiscovery replaces certDiscoveryInterval in this package's
	// tests.
	certDiscovery time.Duration
}

// ConfigFrom derives the watcher's configuration from kaar's.
func ConfigFrom(c config.Config) Config {
	return Config{
		Cluster:             c.Kubernetes.ClusterName,
		JetStreamDomain:     c.NATS.JetStreamDomain,
		Namespace:           c.Kubernetes.Namespace,
		IncludeNamespaces:   slices.Clone(c.Policy.IncludeNamespaces),
		ExcludeNamespaces:   slices.Clone(c.Policy.ExcludeNamespaces),
		ProtectedNamespaces: slices.Clone(c.Policy.ProtectedNamespaces),
		Classify: ClassifyOptions{
			RestartThreshold:      int32(min(max(c.Watcher.RestartThreshold, 0), math.MaxInt32)),
			PendingGrace:          c.Watcher.PendingGrace.Duration,
			RecoveredAfter:        c.Watcher.RecoveredAfter.Duration,
			NotReadyAfter:         c.Watcher.NotReadyAfter.Duration,
			StuckTerminatingAfter: c.Watcher.StuckTerminatingAfter.Duration,
		},
		Nodes:     NodeOptions{Grace: c.Watcher.NodeGrace.Duration, CordonedAfter: c.Watcher.NodeCordonedAfter.Duration},
		HPAs:      HPAOptions{Grace: c.Watcher.HPAGrace.Duration, AtMaxAfter: c.Watcher.HPAAtMaxAfter.Duration},
		Ingresses: IngressOptions{AddressGrace: c.Watcher.IngressGrace.Duration},
		Warnings: WarningOptions{Enabled: c.Watcher.Warnings.Enabled == nil || *c.Watcher.Warnings.Enabled,
			Config: c.Watcher.Warnings},
		Timing: Timing{
			GroupWait:     c.Watcher.GroupWait.Duration,
			GroupInterval: c.Watcher.GroupInterval.Duration,
			ResolveWait:   c.Watcher.ResolveWait.Duration,
		},
	}
}

// withDefaults fills zero values with the defaults above and checks the
// watcher's own settings, naming the field at fault. The settings that
// come from the configuration (namespaces, classification and timing)
// are not checked again: ConfigFrom takes them from a configuration
// config.Load validated, where their bounds live. The cluster name is
// checked because subjects are built from it, with the bus's own rule.
func (c Config) withDefaults() (Config, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Classify == (ClassifyOptions{}) {
		c.Classify = DefaultClassifyOptions()
	}
	def(&c.Timing.GroupInterval, DefaultGroupInterval)
	def(&c.Timing.ResolveWait, DefaultResolveWait)
	def(&c.Debounce, DefaultDebounce)
	def(&c.ResyncPeriod, DefaultResyncPeriod)
	def(&c.StateRetention, DefaultStateRetention)
	def(&c.PublishTimeout, DefaultPublishTimeout)
	def(&c.serviceGrace, ServiceGrace)
	c.Nodes, c.HPAs = c.Nodes.withDefaults(), c.HPAs.withDefaults()
	c.Ingresses = c.Ingresses.withDefaults()
	c.Warnings = c.Warnings.withDefaults()
	def(&c.rolloutStall, RolloutStallAfter)
	def(&c.cronGrace, CronJobGrace)
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}

	bad := func(field, problem string) error {
		return fmt.Errorf("%w: field %q: %s", ErrInvalidConfig, field, problem)
	}
	if err := events.ValidateClusterName(c.Cluster); err != nil {
		return c, fmt.Errorf("%w: field \"cluster\": %w", ErrInvalidConfig, err)
	}
	for _, d := range []struct {
		field string
		d     time.Duration
	}{
		{"debounce", c.Debounce}, {"resync_period", c.ResyncPeriod}, {"publish_timeout", c.PublishTimeout},
	} {
		if d.d < 0 {
			return c, bad(d.field, fmt.Sprintf("%s must not be negative", d.d))
		}
	}
	if c.Workers < 1 || c.Workers > 64 {
		return c, bad("workers", fmt.Sprintf("%d is not between 1 and 64", c.Workers))
	}
	if c.StateRetention < 10*time.Minute {
		return c, bad("state_retention", fmt.Sprintf("%s must be at least 10m (longer than the ISSUES duplicate window)", c.StateRetention))
	}
	return c, nil
}

// nsFilter applies the namespace scope and policy.
type nsFilter struct {
	scope     string
	include   map[string]bool
	exclude   map[string]bool
	protected map[string]bool
}

func newNSFilter(c Config) nsFilter {
	set := func(l []string) map[string]bool {
		m := make(map[string]bool, len(l))
		for _, s := range l {
			m[s] = true
		}
		return m
	}
	return nsFilter{scope: c.Namespace, include: set(c.IncludeNamespaces), exclude: set(c.ExcludeNamespaces), protected: set(c.ProtectedNamespaces)}
}

// watched reports whether incidents in ns are detected.
func (f nsFilter) watched(ns string) bool {
	if f.scope != "" && ns != f.scope {
		return false
	}
	if len(f.include) > 0 && !f.include[ns] {
		return false
	}
	return !f.exclude[ns]
}

func (f nsFilter) isProtected(ns string) bool { return f.protected[ns] }
