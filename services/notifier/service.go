package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
)

// Source is the CloudEvents source of the decisions the notifier
// publishes.
const Source = "/kaar/notifier"

// Deps are the notifier's connections.
type Deps struct {
	// NATS is the bus connection (required).
	NATS *nats.Conn
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil uses a private registry.
	Registerer prometheus.Registerer
	// HTTPClient sends Slack API calls and webhook deliveries; default a
	// client without a timeout (each attempt is bounded by
	// Config.DeliveryTimeout).
	HTTPClient *http.Client
	// Slack replaces the Web API client built from the configuration.
	Slack SlackAPI
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Signer signs the decisions taken in Slack and through the inbound
	// webhook (required): the executor trusts its key for via slack and
	// webhook only (signing.trusted_channels.slack, .webhook).
	Signer *events.Signer
}

// Service is the notifier.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	hc      *http.Client
	slack   SlackAPI
	socket  *slackClient // apps.connections.open with the app token
	now     func() time.Time
	signer  *events.Signer
	metrics *metrics

	// mu serialises changes to Slack threads (events, clicks, reminders).
	mu sync.Mutex
	// warnMu serialises changes to the set of open warnings (digest.go).
	warnMu sync.Mutex
	state  jetstream.KeyValue
	plans  *bus.PlanStore

	readyOnce sync.Once
	ready     chan struct{}
	addr      string
}

// New builds the notifier; Run declares its stream, consumers and bucket.
func New(cfg Config, d Deps) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if d.NATS == nil {
		return nil, errors.New("notifier: a NATS connection is required")
	}
	if d.Signer == nil {
		return nil, errors.New("notifier: Deps.Signer is required: the executor takes only signed decisions")
	}
	js, err := bus.NewJetStream(d.NATS, cfg.JetStreamDomain)
	if err != nil {
		return nil, fmt.Errorf("notifier: jetstream: %w", err)
	}
	s := &Service{cfg: cfg, nc: d.NATS, js: js, log: d.Logger, hc: d.HTTPClient, slack: d.Slack, now: d.Now, signer: d.Signer, ready: make(chan struct{})}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.hc == nil {
		s.hc = &http.Client{}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.slack == nil && cfg.Slack.Enabled() {
		s.slack = newSlackClient(cfg.Slack.APIURL, cfg.Slack.Token, s.hc)
	}
	if cfg.Slack.SocketMode() {
		s.socket = newSlackClient(cfg.Slack.APIURL, cfg.Slack.AppToken, s.hc)
	}
	reg := d.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if s.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	return s, nil
}

// Ready is closed once Run has declared everything and serves.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Addr is the HTTP listen address once Ready (empty when not serving).
func (s *Service) Addr() string { <-s.ready; return s.addr }

// Run runs both parts of the notifier until ctx ends: RunLeader (the
// deliveries) and RunEveryReplica (the HTTP endpoints). Ready closes
// when both serve.
func (s *Service) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	leaderUp, endpointsUp := make(chan struct{}), make(chan struct{})
	g.Go(func() error { return s.runLeader(gctx, leaderUp) })
	g.Go(func() error { return s.runEndpoints(gctx, endpointsUp) })
	g.Go(func() error {
		for _, up := range []chan struct{}{leaderUp, endpointsUp} {
			select {
			case <-up:
			case <-gctx.Done():
				return nil
			}
		}
		s.readyOnce.Do(func() { close(s.ready) })
		return nil
	})
	return g.Wait()
}

// RunLeader is the part of the notifier one replica runs (the lease
// holder, svcmain.Singleton): it declares the notification stream, the
// consumers and the state bucket, then runs the Slack notifier, one
// delivery loop per webhook receiver, the reminder loop and the Socket
// Mode connection until ctx ends.
func (s *Service) RunLeader(ctx context.Context) error { return s.runLeader(ctx, nil) }

// RunEveryReplica is the part every replica runs: the HTTP endpoints
// (Slack interactivity, the inbound approval webhook), which only verify
// a request and publish its decision, so any replica may answer.
func (s *Service) RunEveryReplica(ctx context.Context) error {
	up := make(chan struct{})
	go func() {
		select {
		case <-up:
			s.readyOnce.Do(func() { close(s.ready) })
		case <-ctx.Done():
		}
	}()
	return s.runEndpoints(ctx, up)
}

func (s *Service) runLeader(ctx context.Context, up chan struct{}) error {
	if err := s.declare(ctx); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	if s.cfg.Slack.Enabled() {
		c, err := orderedConsumer(ctx, s.js, s.cfg.Cluster, SlackConsumer(s.cfg.Cluster), "kaar Slack notifier",
			DefaultSubjects(s.cfg.Cluster), slackAckWait)
		if err != nil {
			return err
		}
		g.Go(func() error { return consume(gctx, c, s.handleSlackMsg) })
		g.Go(func() error { return s.tickLoop(gctx) })
	}
	if s.cfg.Slack.SocketMode() {
		g.Go(func() error { return s.runSocket(gctx) })
	}
	if s.cfg.Digest.Enabled && (s.cfg.Slack.Enabled() || len(s.cfg.Webhooks) > 0) {
		g.Go(func() error { return s.digestLoop(gctx) })
	}
	for _, w := range s.cfg.Webhooks {
		subjects := w.Subjects
		if len(subjects) == 0 {
			subjects = DefaultSubjects(s.cfg.Cluster)
		}
		c, err := orderedConsumer(ctx, s.js, s.cfg.Cluster, WebhookConsumer(s.cfg.Cluster, w.Name), "kaar webhook "+w.Name+" "+w.URL,
			subjects, s.cfg.DeliveryTimeout+20*time.Second)
		if err != nil {
			return err
		}
		r := &receiver{cfg: w, s: s}
		g.Go(func() error { return consume(gctx, c, r.handle) })
	}
	if up != nil {
		close(up)
	}
	if err := g.Wait(); err != nil {
		return err
	}
	<-ctx.Done() // nothing to deliver: hold the lease until the end
	return nil
}

// runEndpoints serves the HTTP endpoints, if any are configured, until
// ctx ends; up closes once they listen (at once without endpoints).
func (s *Service) runEndpoints(ctx context.Context, up chan struct{}) error {
	if s.cfg.Listen == "" || !(s.cfg.Slack.HTTP() || len(s.cfg.inboundSenders()) > 0) {
		close(up)
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("notifier: listen on %s: %w", s.cfg.Listen, err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("notifier http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	s.log.Info("notifier endpoints listening", slog.String("addr", s.addr))
	close(up)
	return g.Wait()
}

func (s *Service) declare(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ensureStream(ctx, s.js, s.cfg.Cluster, s.cfg.StreamMaxAge); err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	kv, err := ensureStateBucket(ctx, s.js, s.cfg.StateMaxAge)
	if err != nil {
		return fmt.Errorf("notifier: %w", err)
	}
	s.state = kv
	if s.plans, err = bus.OpenPlanStore(ctx, s.js); err != nil {
		return fmt.Errorf("notifier: %w (is the bus provisioned?)", err)
	}
	return nil
}

// Handler serves POST /slack/interactions (when Slack is configured with a
// signing secret) and POST /webhooks/approval (when the inbound secret is
// set).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.cfg.Slack.HTTP() {
		mux.HandleFunc("POST /slack/interactions", s.handleInteraction)
	}
	if len(s.cfg.inboundSenders()) > 0 {
		mux.HandleFunc("POST /webhooks/approval", s.handleInbound)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}
