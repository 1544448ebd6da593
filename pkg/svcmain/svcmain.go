// Package svcmain is kaar's one composition root: every binary builds its
// services here, through Instances, with the same flags, defaults and
// multi-cluster behaviour. `kaar serve` builds all of them over its
// embedded bus; `kaar <service>` and the `kaar-<service>` images run one
// through Run, which is the same function under both names.
//
// A service describes itself with a Spec (services/<name>.Spec()): its
// name (also its bus role), whether it talks to the cluster, its own
// flags, and how it is built from an Env. svcmain itself links no
// Kubernetes client: the services that need one make it from
// Env.Config.Kubernetes (pkg/kubeclient), so the gateway's binary holds
// no cluster code at all.
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
	"slices"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
)

// DefaultNATSURL is where a service run alone looks for the bus when
// neither --nats-url nor nats.url says: the address kaar serve listens on.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// Service is a built kaar service: it runs until its context ends, and
// its Ready channel closes once it serves (caches synced, bus bound).
type Service interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// Spec describes one service to the composition root.
type Spec struct {
	// Name is the service's name, its command (kaar <name>, kaar-<name>)
	// and its bus role (bus.RoleOfService("kaar-"+Name)).
	Name string
	// Summary is one line for --help.
	Summary string
	// Kube marks a service that talks to the cluster: it is built once per
	// cluster of the configuration (kubernetes.additional_clusters) and
	// takes --kubeconfig and --context. The others serve the first cluster.
	Kube bool
	// Flags registers the service's own flags, if any.
	Flags func(fs *flag.FlagSet)
	// BusConfig is the declaration the service must find on the bus
	// before it starts (default: BusConfig).
	BusConfig func(cfg config.Config) (bus.Config, error)
	// Build constructs the service; nothing runs until Service.Run.
	Build func(ctx context.Context, env Env) (Service, error)
	// Singleton marks a service of which one replica per cluster may be
	// active (the watcher, the notifier): each replica campaigns for the
	// lease events.LeaseKey(Name, cluster) and runs only while it holds
	// it (see Leased).
	Singleton bool
}

// Env is what a service is built from.
type Env struct {
	// Config is the configuration of the cluster this instance serves
	// (one of config.Config.Clusters()).
	Config config.Config
	Logger *slog.Logger // carries the service and cluster attributes
	NATS   *nats.Conn   // the service's own connection, as its bus role
	// Registerer takes the service's metrics (with a cluster label when
	// the configuration has several clusters); Gatherer reads them all.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
}

// Connector opens a named NATS connection ("kaar-<service>") for one
// service, as that service's role.
type Connector func(ctx context.Context, name string, logger *slog.Logger) (*nats.Conn, error)

// ConnectURL connects to the NATS server at cfg.NATS.URL.
func ConnectURL(cfg config.Config) Connector {
	return func(ctx context.Context, name string, logger *slog.Logger) (*nats.Conn, error) {
		return bus.Connect(ctx, cfg.NATS.URL, ConnectOptions(cfg, name, logger))
	}
}

// Instance is one service of one cluster.
type Instance struct {
	Name, Cluster string
	Service       Service
	NATS          *nats.Conn
}

// Instances builds specs for every cluster of cfg: a Kube service once
// per cluster, the others for the first cluster only; each instance with
// its own NATS connection, bound to the bus the provisioner declared.
// It creates no signing key but the services' own (Signer); kaar serve
// creates the installation's keys first (EnsureKeys), a split
// deployment with "kaar keys init" or its mounted keys. The returned
// close function closes the connections.
//
// holder is this process's identity in the singleton services' leases
// (see Leased); empty means DefaultHolder().
func Instances(ctx context.Context, specs []Spec, cfg config.Config, connect Connector, holder string, logger *slog.Logger, reg *prometheus.Registry) ([]Instance, func(), error) {
	if holder == "" {
		holder = DefaultHolder()
	}
	var out []Instance
	closeAll := func() {
		for _, in := range slices.Backward(out) {
			in.NATS.Close()
		}
	}
	clusters := cfg.Clusters()
	for i, cc := range clusters {
		var creg prometheus.Registerer = reg
		if len(clusters) > 1 {
			creg = prometheus.WrapRegistererWith(prometheus.Labels{"cluster": cc.Kubernetes.ClusterName}, reg)
		}
		for _, spec := range specs {
			if i > 0 && !spec.Kube {
				continue
			}
			in, err := build(ctx, spec, cc, connect, holder, logger, creg, reg)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("%s of cluster %s: %w", spec.Name, cc.Kubernetes.ClusterName, err)
			}
			out = append(out, in)
		}
	}
	return out, closeAll, nil
}

// build connects one service to the bus, checks its bindings and
// constructs it.
func build(ctx context.Context, spec Spec, cfg config.Config, connect Connector, holder string, logger *slog.Logger, reg prometheus.Registerer, gather prometheus.Gatherer) (Instance, error) {
	// The one place a service's log lines get their service and cluster:
	// the services do not tag themselves (slog would repeat the keys).
	logger = logger.With(slog.String("service", spec.Name), slog.String("cluster", cfg.Kubernetes.ClusterName))
	nc, err := connect(ctx, "kaar-"+spec.Name, logger)
	if err != nil {
		return Instance{}, err
	}
	if err := checkBound(ctx, nc, spec, cfg); err != nil {
		nc.Close()
		return Instance{}, err
	}
	svc, err := spec.Build(ctx, Env{Config: cfg, Logger: logger, NATS: nc, Registerer: reg, Gatherer: gather})
	if err == nil && spec.Singleton {
		svc, err = Leased(ctx, svc, nc, cfg, events.LeaseKey(spec.Name, cfg.Kubernetes.ClusterName), holder, logger)
	}
	if err != nil {
		nc.Close()
		return Instance{}, err
	}
	return Instance{Name: spec.Name, Cluster: cfg.Kubernetes.ClusterName, Service: svc, NATS: nc}, nil
}

// checkBound fails with an error naming "kaar bus provision" when what the
// service's role needs is not declared: services never declare the bus.
func checkBound(ctx context.Context, nc *nats.Conn, spec Spec, cfg config.Config) error {
	role, ok := bus.RoleOfService("kaar-" + spec.Name)
	if !ok {
		return fmt.Errorf("service %q has no bus role", spec.Name)
	}
	bc := BusConfig(cfg)
	if spec.BusConfig != nil {
		var err error
		if bc, err = spec.BusConfig(cfg); err != nil {
			return err
		}
	}
	return CheckBound(ctx, nc, cfg, role, bc)
}

// CheckBound checks, over nc, that what role binds to in the declaration
// bc exists on the bus (in nats.jetstream_domain); its error names
// "kaar bus provision" when something is missing.
func CheckBound(ctx context.Context, nc *nats.Conn, cfg config.Config, role bus.Role, bc bus.Config) error {
	js, err := bus.NewJetStream(nc, cfg.NATS.JetStreamDomain)
	if err != nil {
		return err
	}
	return bus.CheckBound(ctx, js, role, bc)
}

// RunAll runs the instances until ctx ends or one fails (then the others
// stop too).
func RunAll(ctx context.Context, insts []Instance) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, in := range insts {
		g.Go(func() error {
			if err := in.Service.Run(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s of cluster %s: %w", in.Name, in.Cluster, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// Readiness reports why the instances are not ready yet (a connection
// that is not connected, a service still starting), or nil.
func Readiness(insts []Instance) func() error {
	return func() error {
		for _, in := range insts {
			if !in.NATS.IsConnected() {
				return fmt.Errorf("%s: NATS %s", in.Name, in.NATS.Status())
			}
			select {
			case <-in.Service.Ready():
			default:
				return fmt.Errorf("%s of cluster %s is starting (informers syncing, bus bindings)", in.Name, in.Cluster)
			}
		}
		return nil
	}
}

// Main runs spec as the kaar-<name> command with the process's arguments
// and exits.
func Main(spec Spec) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	prog := "kaar-" + spec.Name
	err := Run(ctx, prog, spec, os.Args[1:], os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		os.Exit(1)
	}
}

// Flags are the flags of a service run alone (see Spec.Kube for the
// Kubernetes ones).
type Flags struct {
	Config, NATSURL, Creds, Kubeconfig, Context string
}

// Register adds the flags to fs; kube adds --kubeconfig and --context.
func (f *Flags) Register(fs *flag.FlagSet, kube bool) {
	fs.StringVar(&f.Config, "config", "", "kaar config file (YAML; the original config.yaml shape is accepted); empty uses the defaults")
	fs.StringVar(&f.NATSURL, "nats-url", "", "NATS server URL (overrides nats.url; default "+DefaultNATSURL+")")
	fs.StringVar(&f.Creds, "creds", "", "NATS credential file: an nkey seed (overrides nats.nkey_file) or a .creds file (overrides nats.creds_file); default: this role's seed in the kaar serve state directory (~/.local/state/kaar/credentials)")
	if kube {
		fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "kubeconfig file (overrides kubernetes.kubeconfig; default $KUBECONFIG, ~/.kube/config, in-cluster)")
		fs.StringVar(&f.Context, "context", "", "kubeconfig context (overrides kubernetes.context)")
	}
}

// Load reads the configuration (file, then KAAR_<SECTION>_<KEY>
// variables) and applies the flags over it; flags win. The result is
// validated.
func (f *Flags) Load() (config.Config, error) {
	cfg, err := config.LoadFile(f.Config, os.Environ())
	if err != nil {
		return cfg, err
	}
	changed := false
	set := func(dst *string, v string) {
		if v != "" {
			*dst, changed = v, true
		}
	}
	set(&cfg.NATS.URL, f.NATSURL)
	set(&cfg.Kubernetes.Kubeconfig, f.Kubeconfig)
	set(&cfg.Kubernetes.Context, f.Context)
	if f.Creds != "" {
		if err := cfg.NATS.SetCredential(f.Creds); err != nil {
			return cfg, err
		}
		changed = true
	}
	if changed {
		err = cfg.Validate()
	}
	return cfg, err
}

// Run parses args, builds spec for every cluster of the configuration and
// runs it until ctx ends: "kaar <name>" and "kaar-<name>" (prog names it
// in --help and errors). It connects to an external NATS server (nats.url,
// default DefaultNATSURL) as the service's role and does not declare the
// bus ("kaar bus provision" does). With server.metrics_addr set, /metrics,
// /healthz and /readyz are served there.
func Run(ctx context.Context, prog string, spec Spec, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f Flags
	f.Register(fs, spec.Kube)
	if spec.Flags != nil {
		spec.Flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s %s\n\nUsage: %s [flags]\n\n%s\n\nFlags:\n", prog, spec.Summary, prog, runHelp(spec))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := f.Load()
	if err != nil {
		return err
	}
	if cfg.NATS.URL == "" {
		cfg.NATS.URL = DefaultNATSURL
	}
	logger, closeLog, err := NewLogger(cfg.Server, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = closeLog() }()
	ApplyMemoryLimit(cfg.Server, logger)
	reg := NewRegistry()
	insts, closeAll, err := Instances(ctx, []Spec{spec}, cfg, ConnectURL(cfg), DefaultHolder(), logger, reg)
	if err != nil {
		return err
	}
	defer closeAll()
	defer ServeOps(cfg.Server.MetricsAddr, OpsHandler(reg, Readiness(insts)), logger)()
	logger.Info("service running", slog.String("service", spec.Name), slog.String("nats", cfg.NATS.URL), slog.Int("instances", len(insts)))
	return RunAll(ctx, insts)
}

func runHelp(spec Spec) string {
	s := `Runs this kaar service alone against a NATS server (--nats-url or nats.url), as in a split
deployment, as its own NATS user (--creds, nats.nkey_file or nats.user; default: its role's
seed in ~/.local/state/kaar/credentials). It does not declare the bus: run
"kaar bus provision" first. Configuration: --config, overridden by KAAR_<SECTION>_<KEY>
variables (KAAR_NATS_URL...), overridden by the flags. With server.metrics_addr set,
/metrics, /healthz and /readyz are served there.`
	if spec.Kube {
		s += `
It talks to the cluster (--kubeconfig, --context); with kubernetes.additional_clusters it
serves every cluster of the configuration, one instance each.`
	} else {
		s += `
It holds no Kubernetes credentials and serves the configuration's first cluster.`
	}
	return s
}

// NewRegistry is a metrics registry with the Go runtime and process
// collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
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
		ExecutorAckWait: cfg.NATS.ExecutorAckWait.Duration, Replicas: cfg.NATS.Replicas, Leaves: cfg.NATS.LeafClusters,
		UsageRetention: cfg.Watcher.Warnings.UsageRetention.Duration}
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
// /readyz (503 with the reason while ready returns an error).
func OpsHandler(reg prometheus.Gatherer, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}
