package cli

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/sync/errgroup"
	"io"
	"log/slog"
	"os"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/executor"
	"github.com/kaar-dev/kaar/services/mcpgateway"
	"github.com/kaar-dev/kaar/services/notifier"
	"github.com/kaar-dev/kaar/services/planner"
	"github.com/kaar-dev/kaar/services/watcher"
)

// serviceNames are the pipeline's services, in start order.
var serviceNames = []string{"watcher", "planner", "executor", "mcpgateway"}

// runner is what every service is to the command: something that runs
// until its context ends.
type runner interface {
	Run(ctx context.Context) error
}

// buildService connects one service to the bus (its own connection, named
// for it, as when it runs alone) and constructs it. The returned close
// function closes that connection.
func buildService(ctx context.Context, name string, cfg config.Config, connect connector, rc *rest.Config, logger *slog.Logger, reg prometheus.Registerer, gather prometheus.Gatherer) (runner, func(), error) {
	logger = logger.With(slog.String("service", name), slog.String("cluster", cfg.Kubernetes.ClusterName))
	nc, err := connect(ctx, "kaar-"+name, logger)
	if err != nil {
		return nil, nil, err
	}
	closeFn := func() { nc.Close() }
	if err := checkBound(ctx, nc, name, cfg); err != nil {
		closeFn()
		return nil, nil, err
	}
	svc, err := newService(name, cfg, nc, rc, logger, reg, gather)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return svc, closeFn, nil
}

func newService(name string, cfg config.Config, nc *nats.Conn, rc *rest.Config, logger *slog.Logger, reg prometheus.Registerer, gather prometheus.Gatherer) (runner, error) {
	var kube kubernetes.Interface
	if needsKube(name) {
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client: %w", err)
		}
		kube = cs
	}
	var signer *events.Signer
	if role := signingRole(name, cfg); role != "" {
		var err error
		if signer, err = svcmain.Signer(cfg, role, logger); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	switch name {
	case "watcher":
		return watcher.New(watcher.ConfigFrom(cfg), watcher.Deps{NATS: nc, Kube: kube, Logger: logger, Registerer: reg})
	case "planner":
		return planner.New(planner.ConfigFrom(cfg), planner.Deps{NATS: nc, Kube: kube, Logger: logger, Registerer: reg, Signer: signer})
	case "executor":
		ecfg := executor.ConfigFrom(cfg)
		ecfg.CrashAt = os.Getenv(executor.EnvCrashAt)
		trust, err := svcmain.Trust(cfg)
		if err != nil {
			return nil, fmt.Errorf("executor: %w", err)
		}
		return executor.New(ecfg, executor.Deps{NATS: nc, Kube: kube, Logger: logger, Registerer: reg, Trust: trust, Signer: signer})
	case "mcpgateway":
		return mcpgateway.New(mcpgateway.ConfigFrom(cfg), mcpgateway.Deps{NATS: nc, Logger: logger, Registerer: reg, Gatherer: gather, Signer: signer})
	case "notifier":
		return notifier.New(notifier.ConfigFrom(cfg), notifier.Deps{NATS: nc, Logger: logger, Registerer: reg, Signer: signer})
	}
	return nil, fmt.Errorf("unknown service %q", name)
}

// signingRole is the key a service signs with: the planner its plans, the
// gateway and the notifier their decisions, the executor its
// auto-approvals (only with remediation.auto_approve); "" for none.
func signingRole(name string, cfg config.Config) string {
	switch name {
	case "planner":
		return svcmain.RolePlanner
	case "mcpgateway":
		return svcmain.RoleGateway
	case "notifier":
		return svcmain.RoleNotifier
	case "executor":
		if cfg.Remediation.AutoApprove {
			return svcmain.RoleExecutor
		}
	}
	return ""
}

// needsKube reports a service that talks to the cluster; the gateway
// and the notifier only talk to the bus.
func needsKube(name string) bool { return name != "mcpgateway" && name != "notifier" }

// instance is one service of one cluster.
type instance struct {
	name, cluster string
	svc           runner
}

// instances builds the named services for every cluster of cfg
// (kubernetes.additional_clusters): the Kubernetes services once per
// cluster, each with its own client, and the gateway and the notifier for
// the first cluster only. rc is the first cluster's client configuration
// (kaar serve may have fallen back to the sandbox). With several clusters
// every metric carries a cluster label.
func instances(ctx context.Context, names []string, cfg config.Config, connect connector, rc *rest.Config, logger *slog.Logger, reg *prometheus.Registry) ([]instance, func(), error) {
	// The first kaar process of a machine creates the installation's
	// signing keys, so every service, the executor's trust included, finds
	// them (signing.key_dir; a split deployment sets signing.key_file).
	if err := svcmain.EnsureKeys(cfg, logger); err != nil {
		return nil, nil, err
	}
	var out []instance
	var closers []func()
	closeAll := func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}
	clusters := cfg.Clusters()
	for i, cc := range clusters {
		crc := rc
		var creg prometheus.Registerer = reg
		if len(clusters) > 1 {
			creg = prometheus.WrapRegistererWith(prometheus.Labels{"cluster": cc.Kubernetes.ClusterName}, reg)
		}
		for _, name := range names {
			if i > 0 && !needsKube(name) {
				continue
			}
			if i > 0 && crc == rc {
				var err error
				if crc, err = svcmain.RestConfig(cc.Kubernetes); err != nil {
					closeAll()
					return nil, nil, fmt.Errorf("cluster %s: %w", cc.Kubernetes.ClusterName, err)
				}
			}
			svc, closeFn, err := buildService(ctx, name, cc, connect, crc, logger, creg, reg)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("%s of cluster %s: %w", name, cc.Kubernetes.ClusterName, err)
			}
			closers = append(closers, closeFn)
			out = append(out, instance{name: name, cluster: cc.Kubernetes.ClusterName, svc: svc})
		}
	}
	return out, closeAll, nil
}

// servicesFor are the services "kaar serve" runs for cfg: the pipeline,
// and the notifier when notify is configured.
func servicesFor(cfg config.Config) []string {
	if cfg.Notify.Enabled() {
		return append(slices.Clone(serviceNames), "notifier")
	}
	return serviceNames
}

const oneHelp = `Runs one kaar service alone against an external NATS server (--nats-url or nats.url),
as in a split deployment, as its own NATS user (--creds, nats.nkey_file or nats.user;
default: its role's seed in ~/.local/state/kaar/credentials). It does not declare the bus:
run "kaar bus provision" first. The watcher, planner and executor need a Kubernetes configuration; the
gateway has none.`

// runOne is "kaar watcher|planner|executor|mcpgateway|notifier".
func runOne(ctx context.Context, name string, args []string, stderr io.Writer) error {
	fs := newFlagSet(name, oneHelp, stderr)
	var cf commonFlags
	cf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if cfg.NATS.URL == "" {
		return fmt.Errorf("%s needs an external NATS server: --nats-url or nats.url (or run everything with kaar serve)", name)
	}
	logger, closeLog, err := svcmain.NewLogger(cfg.Server, stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	var rc *rest.Config
	if needsKube(name) {
		if rc, err = svcmain.RestConfig(cfg.Kubernetes); err != nil {
			return err
		}
	}
	connect := connectURL(cfg.NATS.URL, cfg)
	reg := prometheus.NewRegistry()
	insts, closeFn, err := instances(ctx, []string{name}, cfg, connect, rc, logger, reg)
	if err != nil {
		return err
	}
	defer closeFn()
	ready := func() bool {
		for _, in := range insts {
			if r := readiness(in.svc); r != nil && !r() {
				return false
			}
		}
		return true
	}
	defer svcmain.ServeOps(cfg.Server.MetricsAddr, svcmain.OpsHandler(reg, nil, ready), logger)()
	logger.Info("service running", slog.String("service", name), slog.String("nats", cfg.NATS.URL), slog.Int("clusters", len(cfg.Clusters())))
	return runAll(ctx, insts)
}

// runAll runs the instances until ctx ends or one fails (then the others
// stop too).
func runAll(ctx context.Context, insts []instance) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, in := range insts {
		g.Go(func() error {
			if err := in.svc.Run(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s of cluster %s: %w", in.name, in.cluster, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// readiness adapts a service's Ready (a channel, or the watcher's bool)
// for /readyz.
func readiness(svc any) func() bool {
	switch r := svc.(type) {
	case interface{ Ready() <-chan struct{} }:
		return svcmain.ReadyChan(r.Ready())
	case interface{ Ready() bool }:
		return r.Ready
	}
	return nil
}

const mcpHelp = `Serves MCP over stdio (for MCP clients that spawn their servers), joining the bus
of a running "kaar serve" or split deployment (--nats-url, default nats://127.0.0.1:4222)
as the mcp-stdio role (its seed from kaar serve's state directory, or --creds FILE).
Logs go to stderr or server.log_file, never to stdout.`

// runMCPStdio is "kaar mcp --stdio".
func runMCPStdio(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("mcp", mcpHelp, stderr)
	var cf commonFlags
	cf.register(fs)
	stdio := fs.Bool("stdio", false, "serve MCP on stdin/stdout (required; HTTP is served by kaar serve)")
	cluster := fs.String("cluster-name", "", "cluster name on the bus (overrides kubernetes.cluster_name; kaar serve prints it when it is not \"default\")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*stdio {
		return fmt.Errorf("mcp: only --stdio is served by this command; the HTTP endpoint is part of kaar serve")
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if *cluster != "" {
		cfg.Kubernetes.ClusterName = *cluster
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("--cluster-name: %w", err)
		}
	}
	if cfg.NATS.URL == "" {
		cfg.NATS.URL = "nats://127.0.0.1:4222"
	}
	logger, closeLog, err := svcmain.NewLogger(cfg.Server, stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	nc, err := bus.Connect(ctx, cfg.NATS.URL, svcmain.ConnectOptions(cfg, "kaar-"+string(bus.RoleMCPStdio), logger))
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := checkBound(ctx, nc, string(bus.RoleMCPStdio), cfg); err != nil {
		return err
	}
	signer, err := svcmain.Signer(cfg, svcmain.RoleGateway, logger)
	if err != nil {
		return err
	}
	gw, err := mcpgateway.New(mcpgateway.ConfigFrom(cfg), mcpgateway.Deps{NATS: nc, Logger: logger, Signer: signer})
	if err != nil {
		return err
	}
	return gw.ServeStdio(ctx, stdin, stdout)
}
