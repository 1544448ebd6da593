package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/executor"
	"github.com/kaar-dev/kaar/services/mcpgateway"
	"github.com/kaar-dev/kaar/services/notifier"
	"github.com/kaar-dev/kaar/services/planner"
	"github.com/kaar-dev/kaar/services/watcher"
)

// specs are the pipeline's services, in start order; the notifier runs
// when notify is configured (servicesFor). Every binary builds them
// through svcmain: kaar serve, kaar <service> and kaar-<service> alike.
func specs() []svcmain.Spec {
	return []svcmain.Spec{watcher.Spec(), planner.Spec(), executor.Spec(), mcpgateway.Spec(), notifier.Spec()}
}

// specNamed is the service called name ("watcher"...).
func specNamed(name string) (svcmain.Spec, bool) {
	for _, s := range specs() {
		if s.Name == name {
			return s, true
		}
	}
	return svcmain.Spec{}, false
}

// servicesFor are the services "kaar serve" runs for cfg: the pipeline,
// and the notifier when notify is configured.
func servicesFor(cfg config.Config) []svcmain.Spec {
	all := specs()
	if !cfg.Notify.Enabled() {
		all = slices.DeleteFunc(all, func(s svcmain.Spec) bool { return s.Name == "notifier" })
	}
	return all
}

// runOne is "kaar watcher|planner|executor|mcpgateway|notifier": the
// same function as the kaar-<service> binaries.
func runOne(ctx context.Context, name string, args []string, stderr io.Writer) error {
	spec, ok := specNamed(name)
	if !ok {
		return fmt.Errorf("unknown service %q", name)
	}
	return svcmain.Run(ctx, "kaar "+name, spec, args, stderr)
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
	defer func() { _ = closeLog() }() // the log file: nowhere left to report a failed close
	nc, err := bus.Connect(ctx, cfg.NATS.URL, svcmain.ConnectOptions(cfg, "kaar-"+string(bus.RoleMCPStdio), logger))
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := svcmain.CheckBound(ctx, nc, cfg, bus.RoleMCPStdio, svcmain.BusConfig(cfg)); err != nil {
		return err
	}
	signer, err := svcmain.Signer(cfg, svcmain.RoleGateway, logger)
	if err != nil {
		return err
	}
	// Tagged as svcmain tags the services it builds (they do not tag
	// themselves).
	gwLog := logger.With(slog.String("service", "mcpgateway"), slog.String("cluster", cfg.Kubernetes.ClusterName))
	gw, err := mcpgateway.New(mcpgateway.ConfigFrom(cfg), mcpgateway.Deps{NATS: nc, Logger: gwLog, Signer: signer})
	if err != nil {
		return err
	}
	return gw.ServeStdio(ctx, stdin, stdout)
}
