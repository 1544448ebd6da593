package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
)

// Actor is how the executor signs its audit records, and its field
// manager on the API server.
const Actor = "kaar-executor"

// Defaults of Config fields that config.Config does not carry. The
// fields it carries default to config.Default()'s values.
const (
	DefaultWorkers            = 4
	DefaultVerifyInterval     = 2 * time.Second
	DefaultVerifyStable       = 5 * time.Second
	DefaultVerifyFailAfter    = 60 * time.Second
	DefaultStepTimeout        = 30 * time.Second
	DefaultInProgressInterval = 30 * time.Second
	DefaultReplanTimeout      = 10 * time.Second
	DefaultDrainTimeout       = 60 * time.Second
	DefaultFetchWait          = 5 * time.Second
)

// Config is the executor's own configuration. Zero durations and counts
// take the Default* values.
type Config struct {
	// JetStreamDomain is the JetStream domain of the bus
	// (nats.jetstream_domain): set when this service reaches a central
	// bus through a leaf node; empty for the server it connects to.
	JetStreamDomain string
	// Cluster is the cluster name on the bus (kubernetes.cluster_name):
	// the executor consumes kaar.<cluster>.approval.> and serves
	// kaar.<cluster>.svc.executor.status.
	Cluster string
	// Paused refuses every approval with reason paused
	// (remediation.paused).
	Paused bool
	// ProtectedNamespaces never get a mutating step executed, whatever
	// the plan says (policy.protected_namespaces).
	ProtectedNamespaces []string
	// MaxPods is how many pods one plan may delete, whatever the plan
	// says (remediation.max_pods).
	MaxPods int
	// VerifyTimeout bounds the wait for the workload to become healthy
	// after the steps ran (remediation.verify_timeout).
	VerifyTimeout time.Duration
	// VerifyInterval is how often verification re-reads the workload
	// between watch events.
	VerifyInterval time.Duration
	// VerifyStable is how long the workload must stay healthy before it
	// is declared healthy (a crash-looping pod is Running for a moment).
	VerifyStable time.Duration
	// VerifyFailAfter ends verification early, as failed, when pods of
	// the new revision have been failing (CrashLoopBackOff,
	// ImagePullBackOff, OOMKilled...) for this long without a break: the
	// change did not help, and waiting out VerifyTimeout only delays the
	// report (and the undo).
	VerifyFailAfter time.Duration
	// StepTimeout bounds the retries of one step on transient API errors.
	StepTimeout time.Duration
	// Workers is how many decisions are processed at once.
	Workers int
	// InProgressInterval is how often a decision being executed is marked
	// in progress, so JetStream does not redeliver it mid-execution. It
	// is lowered at Run to a quarter of the consumer's ack wait when it is
	// longer (bus.Config.ExecutorAckWait).
	InProgressInterval time.Duration
	// ReplanTimeout bounds the request for a new plan after a stale one.
	ReplanTimeout time.Duration
	// CrashAt is a failpoint for crash tests: the process kills itself
	// (SIGKILL) when it reaches this point of an execution: "claimed",
	// "step-started:N", "step-applied:N" or "step-recorded:N". The
	// executor commands set it from $KAAR_EXECUTOR_CRASH_AT; it is not a
	// config.yaml key.
	CrashAt string
	// DrainTimeout is how long Run waits for in-flight executions after
	// its context is done before cancelling them.
	DrainTimeout time.Duration
	// FetchWait is how long one pull request waits for a decision.
	FetchWait time.Duration
	// AutoApprove approves, on the operator's standing policy, proposed
	// plans whose every step is at or below AutoApproveMaxRisk, outside
	// protected namespaces and not managed by GitOps or Helm
	// (remediation.auto_approve, remediation.auto_approve_max_risk).
	AutoApprove        bool
	AutoApproveMaxRisk events.RiskLevel
	// RequireDistinctApprover refuses an approval decided by the identity
	// that requested the plan (Plan.RequestedBy, sealed by the planner;
	// remediation.require_distinct_approver). Plans nobody requested are
	// not restricted.
	RequireDistinctApprover bool
	// MaxPerNamespace is how many plans of one namespace may execute at
	// once in this executor (remediation.max_concurrent_per_namespace);
	// Workers bounds them all (remediation.max_concurrent).
	MaxPerNamespace int
	// UndoOnFailure applies, newest first, the undo patch of every step
	// that changed the cluster when verification fails
	// (remediation.undo_on_failure).
	UndoOnFailure bool
}

// ConfigFrom takes the executor's settings from the whole configuration.
func ConfigFrom(c config.Config) Config {
	return Config{
		Cluster:                 c.Kubernetes.ClusterName,
		JetStreamDomain:         c.NATS.JetStreamDomain,
		Paused:                  c.Remediation.Paused,
		ProtectedNamespaces:     slices.Clone(c.Policy.ProtectedNamespaces),
		MaxPods:                 c.Remediation.MaxPods,
		VerifyTimeout:           c.Remediation.VerifyTimeout.Duration,
		AutoApprove:             c.Remediation.AutoApprove,
		AutoApproveMaxRisk:      events.RiskLevel(c.Remediation.AutoApproveMaxRisk),
		RequireDistinctApprover: c.Remediation.RequireDistinctApprover,
		UndoOnFailure:           c.Remediation.UndoOnFailure,
		Workers:                 c.Remediation.MaxConcurrent,
		MaxPerNamespace:         c.Remediation.MaxConcurrentPerNamespace,
	}.withDefaults()
}

// withDefaults fills zero values: the executor-only settings with the
// Default* constants, the settings of the configuration (for a Config
// built by hand, in tests) with config.Default()'s. It checks none of
// them: ConfigFrom's come from a configuration config.Load validated.
func (c Config) withDefaults() Config {
	conf := config.Default()
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.VerifyTimeout, conf.Remediation.VerifyTimeout.Duration)
	def(&c.VerifyInterval, DefaultVerifyInterval)
	def(&c.VerifyStable, DefaultVerifyStable)
	def(&c.VerifyFailAfter, DefaultVerifyFailAfter)
	def(&c.StepTimeout, DefaultStepTimeout)
	def(&c.InProgressInterval, DefaultInProgressInterval)
	def(&c.ReplanTimeout, DefaultReplanTimeout)
	def(&c.DrainTimeout, DefaultDrainTimeout)
	def(&c.FetchWait, DefaultFetchWait)
	if c.VerifyStable >= c.VerifyTimeout {
		c.VerifyStable = c.VerifyTimeout / 4
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.MaxPerNamespace <= 0 || c.MaxPerNamespace > c.Workers {
		c.MaxPerNamespace = c.Workers
	}
	if c.AutoApproveMaxRisk == "" {
		c.AutoApproveMaxRisk = events.RiskLevel(conf.Remediation.AutoApproveMaxRisk)
	}
	if c.MaxPods <= 0 {
		c.MaxPods = conf.Remediation.MaxPods
	}
	return c
}

// Validate checks the cluster name (subjects are built from it) and the
// auto-approval risk with pkg/events' rules, the ones config.Load applies,
// and the CrashAt failpoint, which no configuration file sets; errors name
// the field.
func (c Config) Validate() error {
	if err := events.ValidateClusterName(c.Cluster); err != nil {
		return fmt.Errorf("executor config: Cluster (kubernetes.cluster_name): %w", err)
	}
	if c.AutoApprove {
		if err := c.AutoApproveMaxRisk.Validate(); err != nil {
			return fmt.Errorf("executor config: AutoApproveMaxRisk (remediation.auto_approve_max_risk): %w", err)
		}
	}
	if c.CrashAt != "" && !validCrashAt(c.CrashAt) {
		return fmt.Errorf("executor config: CrashAt ($%s) %q: allowed: claimed, step-started:N, step-applied:N, step-recorded:N: %w", EnvCrashAt, c.CrashAt, events.ErrInvalid)
	}
	return nil
}

// Deps are the executor's connections and hooks.
type Deps struct {
	// NATS is the bus connection (required).
	NATS *nats.Conn
	// Kube is the client the executor writes with (required). It
	// needs get/list/watch on the workloads, their ReplicaSets,
	// ControllerRevisions and pods, patch on the workloads and delete on
	// pods: nothing more.
	Kube kubernetes.Interface
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the executor's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Now is the clock that decides expiry; default time.Now.
	Now func() time.Time
	// Trust is whom the executor believes (required, with at least one
	// planner key): it acts only on plans a trusted planner key signed and
	// decisions a key trusted for their channel signed.
	Trust events.Trust
	// Signer signs the executor's own auto-approvals (required with
	// AutoApprove); its key is trusted for via auto only then.
	Signer *events.Signer
}

// Service consumes approval decisions and executes, verifies and records
// the approved plans. It is the only kaar component that writes to the
// cluster.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	kube    kubernetes.Interface
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	trust   events.Trust
	signer  *events.Signer

	js         jetstream.JetStream
	plans      *bus.PlanStore
	executions jetstream.KeyValue

	ready chan struct{}
	once  sync.Once

	// pause is the kill switch of kaar_control as last seen (nil: never
	// set).
	pause atomic.Pointer[events.Pause]
	// slots bounds the executions per namespace.
	slots *slots
	// inflight holds the plans this process is executing (see track).
	inflightMu sync.Mutex
	inflight   map[string]chan struct{}
}

// New builds the executor and registers its metrics. It does not touch
// the bus or the cluster: Run does.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.NATS == nil {
		return nil, fmt.Errorf("executor: Deps.NATS is required: %w", events.ErrInvalid)
	}
	if deps.Kube == nil {
		return nil, fmt.Errorf("executor: Deps.Kube is required: %w", events.ErrInvalid)
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	trust, err := trustFor(cfg, deps.Trust, deps.Signer)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("executor: register metrics: %w", err)
	}
	js, err := bus.NewJetStream(deps.NATS, cfg.JetStreamDomain)
	if err != nil {
		return nil, fmt.Errorf("executor: jetstream: %w", err)
	}
	return &Service{
		cfg:      cfg,
		nc:       deps.NATS,
		kube:     deps.Kube,
		log:      deps.Logger,
		now:      deps.Now,
		metrics:  m,
		trust:    trust,
		signer:   deps.Signer,
		js:       js,
		ready:    make(chan struct{}),
		inflight: map[string]chan struct{}{},
		slots:    newSlots(cfg.MaxPerNamespace),
	}, nil
}

// Ready is closed once Run has bound to the bus and serves: its consumer
// is pulling and its status endpoint answers.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run binds to the APPROVALS consumer, the plans and executions buckets
// (declared by bus.Provision) and the status endpoint, then executes
// decisions until ctx is done. In-flight executions are drained (for at
// most Config.DrainTimeout) before it returns; a clean shutdown returns
// nil.
func (s *Service) Run(ctx context.Context) error {
	plans, err := bus.OpenPlanStore(ctx, s.js)
	if err != nil {
		return fmt.Errorf("executor: %w (run bus.Provision first)", err)
	}
	s.plans = plans
	if s.executions, err = s.js.KeyValue(ctx, events.BucketExecutions); err != nil {
		return fmt.Errorf("executor: open %s: %w (run bus.Provision first)", events.BucketExecutions, err)
	}
	stopWatch, err := s.watchPause(ctx)
	if err != nil {
		return fmt.Errorf("executor: %w (run bus.Provision first)", err)
	}
	defer stopWatch()
	name, err := events.ExecutorConsumer(s.cfg.Cluster)
	if err != nil {
		return fmt.Errorf("executor: %w", err)
	}
	cons, err := s.js.Consumer(ctx, events.StreamApprovals, name)
	if err != nil {
		return fmt.Errorf("executor: consumer %s/%s: %w (run bus.Provision first)", events.StreamApprovals, name, err)
	}
	// The in-progress signal must come well within the consumer's ack
	// wait, or a live execution's decision is redelivered and resumed.
	if ackWait := cons.CachedInfo().Config.AckWait; ackWait > 0 && s.cfg.InProgressInterval > ackWait/4 {
		s.cfg.InProgressInterval = max(ackWait/4, 50*time.Millisecond)
		s.log.Info("in-progress interval follows the consumer's ack wait", slog.Duration("ack_wait", ackWait),
			slog.Duration("in_progress_interval", s.cfg.InProgressInterval))
	}
	svc, err := s.serveStatus(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err := svc.Stop(); err != nil {
			s.log.Warn("stop status endpoint", slog.Any("error", err))
		}
	}()

	// Executions run on a context that outlives ctx by DrainTimeout: a
	// half-applied plan is worse than a slow shutdown.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.NewTimer(s.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			s.log.Warn("drain timeout: cancelling in-flight executions", slog.Duration("drain_timeout", s.cfg.DrainTimeout))
			cancelWork()
		case <-work.Done():
		}
	})
	defer stopDrain()

	if s.cfg.AutoApprove {
		stopAuto, err := s.startAutoApprove(ctx)
		if err != nil {
			return fmt.Errorf("executor: %w (run bus.Provision first)", err)
		}
		defer stopAuto()
	}
	s.log.Info("executor running", slog.String("consumer", name), slog.Int("workers", s.cfg.Workers), slog.Bool("paused", s.cfg.Paused))
	s.once.Do(func() { close(s.ready) })

	g := new(errgroup.Group)
	sem := make(chan struct{}, s.cfg.Workers)
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		msg, err := s.fetch(ctx, cons)
		if err != nil || msg == nil {
			<-sem
			if err != nil {
				s.log.Warn("fetch decision", slog.Any("error", err))
				sleep(ctx, time.Second)
			}
			continue
		}
		g.Go(func() error {
			defer func() { <-sem }()
			s.handle(work, msg)
			return nil
		})
	}
	_ = g.Wait()
	s.log.Info("executor stopped")
	return nil
}

// fetch pulls one decision; (nil, nil) when none arrived in FetchWait or
// ctx is done.
func (s *Service) fetch(ctx context.Context, cons jetstream.Consumer) (jetstream.Msg, error) {
	fctx, cancel := context.WithTimeout(ctx, s.cfg.FetchWait)
	defer cancel()
	msg, err := cons.Next(jetstream.FetchContext(fctx))
	switch {
	case err == nil:
		return msg, nil
	case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrNoMessages):
		return nil, nil
	}
	return nil, err
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
