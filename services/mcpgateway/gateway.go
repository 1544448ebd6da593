package mcpgateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/mark3labs/mcp-go/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Service is the gateway: an MCP server and the REST API over one tool
// registry, talking only to the bus.
type Service struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	now     func() time.Time
	metrics *metrics
	gather  prometheus.Gatherer

	tools  []*tool
	byName map[string]*tool

	auth *authenticator
	// tls is the HTTPS configuration; nil serves plain HTTP.
	tls *tls.Config
	// signer signs the decisions the gateway publishes.
	signer *events.Signer
	// stateKey signs the request state of an approval's confirmation
	// round trip (MCP elicitation).
	stateKey []byte

	mcp        *server.MCPServer
	streamable *server.StreamableHTTPServer
	handler    http.Handler

	storeMu sync.Mutex
	plans   *bus.PlanStore
	execs   jetstream.KeyValue

	// draining is closed when Run starts shutting down: waits end early.
	draining  chan struct{}
	drainOnce sync.Once

	addrMu    sync.Mutex
	addr      net.Addr
	ready     chan struct{}
	readyOnce sync.Once
}

// New builds the gateway. It does not touch the bus: the plans and
// executions buckets are bound on first use, so the gateway can start
// before the bus is fully provisioned.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if deps.NATS == nil {
		return nil, errors.New("mcpgateway: Deps.NATS is required")
	}
	if deps.Signer == nil {
		return nil, errors.New("mcpgateway: Deps.Signer is required: the executor takes only signed decisions")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	tokens := slices.Clone(cfg.Tokens)
	if cfg.TokenFile != "" {
		more, err := loadTokenFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("mcpgateway config: %w", err)
		}
		if err := validateTokens("mcp.token_file", more); err != nil {
			return nil, fmt.Errorf("mcpgateway config: %w", err)
		}
		tokens = append(tokens, more...)
		if err := validateTokens("mcp.tokens + mcp.token_file", tokens); err != nil {
			return nil, fmt.Errorf("mcpgateway config: %w", err)
		}
	}
	if len(tokens) == 0 && deps.TokenVerifier == nil && !isLoopback(cfg.Host) {
		return nil, fmt.Errorf("mcpgateway config: field \"mcp.tokens\": required when server.host is %q, not a loopback address: set mcp.tokens or mcp.token_file (or listen on 127.0.0.1): %w",
			cfg.Host, events.ErrInvalid)
	}
	tlsConfig, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	stateKey := make([]byte, 32)
	if _, err := rand.Read(stateKey); err != nil {
		return nil, fmt.Errorf("mcpgateway: %w", err)
	}
	js, err := bus.NewJetStream(deps.NATS, cfg.JetStreamDomain)
	if err != nil {
		return nil, fmt.Errorf("mcpgateway: jetstream: %w", err)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("mcpgateway: %w", err)
	}
	s := &Service{
		cfg: cfg, log: deps.Logger,
		nc: deps.NATS, js: js, now: deps.Now, metrics: m, gather: deps.Gatherer,
		byName: map[string]*tool{}, draining: make(chan struct{}), ready: make(chan struct{}),
		auth: newAuthenticator(tokens, deps.TokenVerifier), stateKey: stateKey, tls: tlsConfig,
		signer: deps.Signer,
	}
	if s.tools, err = s.registry(); err != nil {
		return nil, fmt.Errorf("mcpgateway: %w", err)
	}
	for _, t := range s.tools {
		s.byName[t.name] = t
	}
	s.mcp = s.newMCPServer()
	s.streamable = server.NewStreamableHTTPServer(s.mcp,
		server.WithStreamableHTTPLogger(s.log.With(slog.String("transport", "streamable-http"))),
		// The identity requireAuth put on the request reaches the tools.
		server.WithHTTPContextFunc(func(ctx context.Context, r *http.Request) context.Context {
			if id, ok := IdentityFromContext(r.Context()); ok {
				return WithIdentity(ctx, id)
			}
			if u, ok := r.Context().Value(userKey{}).(string); ok {
				return WithUser(ctx, u)
			}
			return ctx
		}))
	s.handler = s.newHandler()
	return s, nil
}

// MCPServer exposes the mcp-go server, for in-process clients and other
// transports.
func (s *Service) MCPServer() *server.MCPServer { return s.mcp }

// ToolNames lists the registered tools in listing order.
func (s *Service) ToolNames() []string {
	out := make([]string, len(s.tools))
	for i, t := range s.tools {
		out[i] = t.name
	}
	return out
}

// invoke runs one tool call: argument checks, the tool, metrics and logs.
// Both transports come through here.
func (s *Service) invoke(ctx context.Context, t *tool, c *call, raw json.RawMessage) (res any, text string, err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("tool panicked", slog.String("tool", t.name), slog.Any("panic", r))
			res, text, err = nil, "", fmt.Errorf("tool %s failed unexpectedly: %v", t.name, r)
		}
		outcome, _ := classify(err)
		s.metrics.toolCalls.WithLabelValues(t.name, outcome).Inc()
		s.metrics.toolDuration.WithLabelValues(t.name).Observe(time.Since(start).Seconds())
		attrs := []any{"tool", t.name, "via", c.via, "user", c.user, "outcome", outcome, "duration", time.Since(start)}
		switch outcome {
		case outcomeOK, outcomeInputRequired:
			s.log.Debug("tool call", attrs...)
		case outcomeInternal:
			s.log.Error("tool call failed", append(attrs, "error", err)...)
		case outcomeUnavailable:
			s.log.Warn("tool call failed: a dependency did not answer", append(attrs, "error", err)...)
		default:
			s.log.Info("tool call refused", append(attrs, "error", err)...)
		}
	}()
	id := s.identity(ctx, c.via)
	c.user, c.role = id.User, id.Role
	if err := authorize(id, t); err != nil {
		return nil, "", err
	}
	checked, err := checkArgs(t.specs, raw)
	if err != nil {
		return nil, "", err
	}
	c.args = checked
	return t.run(ctx, c)
}

// tlsConfig loads the HTTPS certificate; nil without one.
func (c Config) tlsConfig() (*tls.Config, error) {
	switch {
	case c.TLSCertFile == "" && c.TLSKeyFile == "":
		return nil, nil
	case c.TLSKeyFile == "":
		return nil, fmt.Errorf("mcpgateway config: field \"server.tls_key_file\": must be set with server.tls_cert_file: %w", events.ErrInvalid)
	case c.TLSCertFile == "":
		return nil, fmt.Errorf("mcpgateway config: field \"server.tls_cert_file\": must be set with server.tls_key_file: %w", events.ErrInvalid)
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("mcpgateway config: field \"server.tls_cert_file\": %s with key %s: %v: %w", c.TLSCertFile, c.TLSKeyFile, err, events.ErrInvalid)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// Scheme is "https" when Run serves TLS, else "http".
func (s *Service) Scheme() string {
	if s.tls != nil {
		return "https"
	}
	return "http"
}

// Addr is the address Run listens on, once it does (nil before).
func (s *Service) Addr() net.Addr {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.addr
}

// Ready is closed once Run listens.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run serves Handler over HTTP, or HTTPS with Config.TLSCertFile and
// TLSKeyFile, on Config.Host:Port until ctx is done, then
// shuts down gracefully: it stops accepting, ends remediate_issue waits
// (their executions go on), closes MCP listening streams and waits up to
// ShutdownTimeout for in-flight requests. It returns nil on a clean
// shutdown.
func (s *Service) Run(ctx context.Context) error {
	addr := net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("mcpgateway: listen on %s: %w", addr, err)
	}
	s.addrMu.Lock()
	s.addr = ln.Addr()
	s.addrMu.Unlock()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(slogWriter{s.log}, "", 0),
		// ServeTLS clones it and adds HTTP/2.
		TLSConfig: s.tls,
	}
	srv.RegisterOnShutdown(func() {
		s.drain()
		s.streamable.CloseSessions(context.Background())
	})
	s.log.Info("mcp gateway listening", slog.String("addr", ln.Addr().String()), slog.String("scheme", s.Scheme()), slog.String("mcp_path", s.cfg.MCPPath))
	s.readyOnce.Do(func() { close(s.ready) })
	errc := make(chan error, 1)
	go func() {
		if s.tls != nil {
			errc <- srv.ServeTLS(ln, "", "") // the certificate is in TLSConfig
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		s.drain()
		return fmt.Errorf("mcpgateway: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close()
		err = fmt.Errorf("mcpgateway: shutdown: %w", err)
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("mcpgateway: serve: %w", serr)
	}
	s.log.Info("mcp gateway stopped")
	return err
}

func (s *Service) drain() { s.drainOnce.Do(func() { close(s.draining) }) }

// ServeStdio serves MCP over in and out (newline-delimited JSON-RPC) until
// ctx is done or in reaches EOF. Nothing but protocol messages is written
// to out: the gateway logs through Deps.Logger, which must not write to
// stdout when out is stdout. mcp-go keeps one stdio session per process, so
// run at most one ServeStdio at a time.
func (s *Service) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	ss := server.NewStdioServer(s.mcp)
	// stdio carries no token: it acts as the configured identity
	// (mcp.stdio.user, mcp.stdio.role).
	stdio := Identity{User: s.cfg.StdioUser, Role: s.cfg.StdioRole}
	ss.SetContextFunc(func(ctx context.Context) context.Context { return WithIdentity(ctx, stdio) })
	ss.SetErrorLogger(log.New(slogWriter{s.log.With(slog.String("transport", "stdio"))}, "", 0))
	err := ss.Listen(ctx, in, out)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("mcpgateway: stdio: %w", err)
	}
	return nil
}

// slogWriter adapts a *log.Logger's output to slog (errors).
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	for len(msg) > 0 && msg[len(msg)-1] == '\n' {
		msg = msg[:len(msg)-1]
	}
	w.l.Warn(msg)
	return len(p), nil
}
