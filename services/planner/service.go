package planner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
)

// Deps are the planner's connections and hooks.
type Deps struct {
	// NATS is the bus connection (required). The streams, the kaar_plans
	// bucket and the planner's durable consumer must exist (bus.Provision).
	NATS *nats.Conn
	// Kube reads the cluster and dry-runs steps (required). It needs get,
	// list on pods, pods/log, events, nodes, replicasets, deployments,
	// statefulsets, daemonsets, jobs, cronjobs, and patch/delete for the
	// dry runs (the API server authorizes a dry run like the real call).
	Kube kubernetes.Interface
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the planner's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock (plan times, expiry); default time.Now.
	Now func() time.Time
	// Signer signs every plan (required): executors act only on plans
	// signed by a key they trust (signing.trusted_planners).
	Signer *events.Signer
}

// Service is the planner. Build it with New, run it with Run.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	kube    kubernetes.Interface
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	reader  reader
	dry     dryRunner
	signer  *events.Signer

	store *bus.PlanStore
	locks keyedLocks
	seen  observations

	readyOnce sync.Once
	ready     chan struct{}
}

// New validates the configuration and the dependencies and registers the
// metrics. It does not touch the bus or the cluster: Run does.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if deps.NATS == nil {
		return nil, errors.New("planner: Deps.NATS is required")
	}
	if deps.Kube == nil {
		return nil, errors.New("planner: Deps.Kube is required")
	}
	if deps.Signer == nil {
		return nil, errors.New("planner: Deps.Signer is required: executors act only on signed plans")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	js, err := bus.NewJetStream(deps.NATS, cfg.JetStreamDomain)
	if err != nil {
		return nil, fmt.Errorf("planner: jetstream: %w", err)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("planner: %w", err)
	}
	return &Service{
		cfg: cfg, nc: deps.NATS, js: js, kube: deps.Kube,
		log:     deps.Logger,
		now:     deps.Now,
		metrics: m,
		reader:  reader{kube: deps.Kube, cfg: cfg},
		dry:     dryRunner{kube: deps.Kube, now: deps.Now},
		signer:  deps.Signer,
		ready:   make(chan struct{}),
	}, nil
}

// Ready is closed once Run consumes issues, serves the plan endpoint and
// watches for plan expiry.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// markWatching closes Ready: Run calls it once the expiry watch is primed
// (the consumer and the endpoint are set up before).
func (s *Service) markWatching() { s.readyOnce.Do(func() { close(s.ready) }) }

// Run binds the durable ISSUES consumer, serves
// kaar.<cluster>.svc.planner.plan and watches kaar_plans for expiries,
// until ctx is done. In-flight plans are finished before it returns nil.
func (s *Service) Run(ctx context.Context) error {
	store, err := bus.OpenPlanStore(ctx, s.js)
	if err != nil {
		return fmt.Errorf("planner: %w (run bus.Provision first)", err)
	}
	s.store = store
	name, err := events.PlannerConsumer(s.cfg.Cluster)
	if err != nil {
		return fmt.Errorf("planner: %w", err)
	}
	cons, err := s.js.Consumer(ctx, events.StreamIssues, name)
	if err != nil {
		return fmt.Errorf("planner: bind consumer %s/%s: %w (run bus.Provision first)", events.StreamIssues, name, err)
	}
	subject, err := events.ServiceSubject(s.cfg.Cluster, events.ServicePlanner, events.VerbPlan)
	if err != nil {
		return fmt.Errorf("planner: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	// Request handlers run on their own goroutines (a plan takes seconds)
	// and are waited for before Run returns; once stopping is set, late
	// requests are answered "unavailable" instead.
	var (
		handlers sync.WaitGroup
		mu       sync.Mutex
		stopping bool
	)
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        ServiceName,
		Version:     Version,
		Description: "kaar planner: remediation plans on demand (" + subject + ")",
		Metadata:    map[string]string{"cluster": s.cfg.Cluster},
	})
	if err != nil {
		return fmt.Errorf("planner: micro service: %w", err)
	}
	sem := make(chan struct{}, s.cfg.Workers)
	work := context.WithoutCancel(gctx)
	err = svc.AddEndpoint(events.VerbPlan, micro.HandlerFunc(func(req micro.Request) {
		mu.Lock()
		if stopping {
			mu.Unlock()
			m := replyMsg(req.Reply(), nil, &events.ErrorReply{Code: events.CodeUnavailable, Message: "the planner is shutting down; retry"})
			_ = req.Respond(m.Data, micro.WithHeaders(micro.Headers(m.Header)))
			return
		}
		handlers.Add(1)
		mu.Unlock()
		data, reply := req.Data(), req.Reply()
		sem <- struct{}{}
		go func() {
			defer handlers.Done()
			defer func() { <-sem }()
			hctx, cancel := context.WithTimeout(work, s.cfg.PlanTimeout)
			defer cancel()
			s.handlePlan(hctx, data, reply)
		}()
	}), micro.WithEndpointSubject(subject))
	if err != nil {
		_ = svc.Stop()
		return fmt.Errorf("planner: endpoint %s: %w", subject, err)
	}
	g.Go(func() error { return s.consume(gctx, cons) })
	g.Go(func() error { return s.watchExpiry(gctx) })
	s.log.Info("planner running", slog.String("consumer", name),
		slog.String("endpoint", subject), slog.Duration("approval_window", s.cfg.ApprovalWindow))
	err = g.Wait()
	if serr := svc.Stop(); serr != nil {
		s.log.Warn("stop micro service", slog.Any("error", serr))
	}
	mu.Lock()
	stopping = true
	mu.Unlock()
	handlers.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("planner: %w", err)
	}
	return nil
}
