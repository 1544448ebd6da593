// Package svcmain is the main of kaar's standalone service commands
// (kaar-watcher, kaar-planner, kaar-executor, kaar-mcpgateway): flags,
// configuration, logging, the NATS connection and the bus declarations,
// the Kubernetes client, and the operations endpoints (/metrics, /healthz,
// /readyz on server.metrics_addr). Each command's main only builds its
// service; `kaar serve` and `kaar <service>` use the same pieces.
package svcmain

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
)

// DefaultNATSURL is where a standalone service looks for the bus when
// neither --nats-url nor nats.url says.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// Env is what a service is built from.
type Env struct {
	Config   config.Config
	Logger   *slog.Logger
	NATS     *nats.Conn
	Kube     kubernetes.Interface // nil unless Command.Kube
	Registry *prometheus.Registry
}

// Service is a built service: Run until ctx ends; Ready once it serves.
type Service struct {
	Run   func(ctx context.Context) error
	Ready func() bool
}

// ReadyChan adapts a service's ready channel to Service.Ready.
func ReadyChan(ch <-chan struct{}) func() bool {
	return func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
}

// Command describes one service command.
type Command struct {
	Name    string // "kaar-executor"
	Summary string // one line for --help
	Kube    bool   // needs a Kubernetes client
	// Flags registers the command's own flags, if any.
	Flags func(fs *flag.FlagSet)
	Build func(ctx context.Context, env Env) (Service, error)
}

// Main runs the command with the process's arguments and exits.
func Main(c Command) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, c, os.Args[1:], os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", c.Name, err)
		os.Exit(1)
	}
}

// Run parses args, connects, builds and runs the service until ctx ends.
func Run(ctx context.Context, c Command, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "kaar config file (YAML; the original config.yaml shape is accepted); empty uses the defaults")
	natsURL := fs.String("nats-url", "", "NATS server URL (default: nats.url from the config, else "+DefaultNATSURL+")")
	creds := fs.String("creds", "", "NATS credential file: an nkey seed (overrides nats.nkey_file) or a .creds file (overrides nats.creds_file); default: this service's seed in the kaar serve state directory (~/.local/state/kaar/credentials)")
	var kubeconfig *string
	if c.Kube {
		kubeconfig = fs.String("kubeconfig", "", "kubeconfig file (default: kubernetes.kubeconfig, $KUBECONFIG, ~/.kube/config, in-cluster)")
	}
	if c.Flags != nil {
		c.Flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s %s\n\nUsage: %s [flags]\n\nConfiguration: --config, overridden by KAAR_<SECTION>_<KEY> variables (KAAR_NATS_URL...).\n"+
			"With server.metrics_addr set, /metrics, /healthz and /readyz are served there.\n\nFlags:\n", c.Name, c.Summary, c.Name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadFile(*cfgPath, os.Environ())
	if err != nil {
		return err
	}
	if *natsURL != "" {
		cfg.NATS.URL = *natsURL
	}
	if *creds != "" {
		if err := cfg.NATS.SetCredential(*creds); err != nil {
			return err
		}
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	if cfg.NATS.URL == "" {
		cfg.NATS.URL = DefaultNATSURL
	}
	if kubeconfig != nil && *kubeconfig != "" {
		cfg.Kubernetes.Kubeconfig = *kubeconfig
	}
	logger, closeLog, err := NewLogger(cfg.Server, stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	env := Env{Config: cfg, Logger: logger, Registry: prometheus.NewRegistry()}
	if c.Kube {
		rc, err := RestConfig(cfg.Kubernetes)
		if err != nil {
			return err
		}
		if env.Kube, err = kubernetes.NewForConfig(rc); err != nil {
			return fmt.Errorf("kubernetes client: %w", err)
		}
	}
	if env.NATS, err = bus.Connect(ctx, cfg.NATS.URL, ConnectOptions(cfg, c.Name, logger)); err != nil {
		return err
	}
	defer env.NATS.Close()
	// Services do not declare the bus ("kaar bus provision" does, as the
	// provisioner): they bind to what exists, and say so when it does not.
	if role, ok := bus.RoleOfService(c.Name); ok {
		js, err := bus.NewJetStream(env.NATS, cfg.NATS.JetStreamDomain)
		if err != nil {
			return err
		}
		if err := bus.CheckBound(ctx, js, role, BusConfig(cfg)); err != nil {
			return err
		}
	}
	svc, err := c.Build(ctx, env)
	if err != nil {
		return err
	}
	defer ServeOps(cfg.Server.MetricsAddr, OpsHandler(env.Registry, env.NATS, svc.Ready), logger)()
	logger.Info("service running", slog.String("service", c.Name), slog.String("nats", cfg.NATS.URL))
	return svc.Run(ctx)
}

// ConnectOptions are the NATS connection options of a service. name
// ("kaar-executor", "kaar-cli") says the role: its inbox prefix, and,
// when the configuration names no credential (nats.nkey_file,
// nats.creds_file, nats.user), the role's seed in the state directory
// of a local "kaar serve" (bus.DefaultSeedFile), if there is one.
func ConnectOptions(cfg config.Config, name string, logger *slog.Logger) bus.ConnectOptions {
	t := cfg.NATS.TLS
	o := bus.ConnectOptions{Name: name, Logger: logger, CredsFile: cfg.NATS.CredsFile, NkeyFile: cfg.NATS.NkeyFile, User: cfg.NATS.User, Password: cfg.NATS.Password,
		TLS: bus.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}}
	if role, ok := bus.RoleOfService(name); ok {
		o.InboxPrefix = role.InboxPrefix()
		if o.CredsFile == "" && o.NkeyFile == "" && o.User == "" {
			if f, ok := bus.DefaultSeedFile(role); ok {
				o.NkeyFile = f
			}
		}
	}
	return o
}

// BusConfig is the bus declaration the configuration asks for. Every
// process that provisions must use it, or they undo each other's
// settings (ack wait, retention).
func BusConfig(cfg config.Config) bus.Config {
	var clusters []string
	for _, c := range cfg.Clusters() {
		clusters = append(clusters, c.Kubernetes.ClusterName)
	}
	return bus.Config{Clusters: clusters, AuditRetention: cfg.NATS.AuditRetention.Duration,
		ExecutorAckWait: cfg.NATS.ExecutorAckWait.Duration, Replicas: cfg.NATS.Replicas}
}

// ServeOps serves h on addr (server.metrics_addr) in the background until
// the returned stop is called; an empty addr serves nothing.
func ServeOps(addr string, h http.Handler, logger *slog.Logger) (stop func()) {
	if addr == "" {
		return func() {}
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			logger.Error("operations server (server.metrics_addr)", slog.String("addr", addr), slog.Any("error", err))
		}
	}()
	return func() { _ = srv.Close() }
}

// OpsHandler serves /metrics from reg, /healthz (the process runs) and
// /readyz (the service is ready and the bus connected; 503 otherwise).
func OpsHandler(reg prometheus.Gatherer, nc *nats.Conn, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case nc != nil && !nc.IsConnected():
			http.Error(w, "not ready: NATS "+nc.Status().String(), http.StatusServiceUnavailable)
		case ready != nil && !ready():
			http.Error(w, "not ready: the service is starting (informers syncing, bus bindings)", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ready")
		}
	})
	return mux
}
