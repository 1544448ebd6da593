// Command kaar-mcpgateway runs kaar's MCP gateway alone against a NATS
// server: MCP over streamable HTTP plus the REST API, or MCP over stdio
// with --stdio (for MCP clients that spawn their servers).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/services/mcpgateway"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

func main() {
	cfgPath := flag.String("config", "", "kaar config file (YAML); empty uses the defaults")
	natsURL := flag.String("nats-url", "", "NATS server URL (default: nats.url from the config, else nats://127.0.0.1:4222)")
	stdio := flag.Bool("stdio", false, "serve MCP on stdin/stdout instead of HTTP (logs go to stderr)")
	flag.Usage = func() {
		fmt.Fprint(os.Stderr, "kaar-mcpgateway serves kaar's MCP tools (streamable HTTP or stdio) and REST API.\n\nUsage: kaar-mcpgateway [flags]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *cfgPath, *natsURL, *stdio); err != nil {
		fmt.Fprintln(os.Stderr, "kaar-mcpgateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfgPath, natsURL string, stdio bool) error {
	cfg, err := config.LoadFile(cfgPath, os.Environ())
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Server.LogLevel))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})) // never stdout: stdio carries MCP
	url := cfg.NATS.URL
	if natsURL != "" {
		url = natsURL
	}
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := bus.Connect(ctx, url, bus.ConnectOptions{Name: "kaar-mcpgateway", Logger: log,
		CredsFile: cfg.NATS.CredsFile, User: cfg.NATS.User, Password: cfg.NATS.Password})
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := bus.Provision(ctx, js, bus.Config{Clusters: []string{cfg.Kubernetes.ClusterName}, AuditRetention: cfg.NATS.AuditRetention.Duration}); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	gw, err := mcpgateway.New(mcpgateway.ConfigFrom(cfg), mcpgateway.Deps{NATS: nc, Logger: log, Registerer: reg, Gatherer: reg})
	if err != nil {
		return err
	}
	if stdio {
		return gw.ServeStdio(ctx, os.Stdin, os.Stdout)
	}
	return gw.Run(ctx)
}
