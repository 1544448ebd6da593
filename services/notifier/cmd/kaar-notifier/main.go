// Command kaar-notifier runs kaar's notifier alone against a NATS server:
// Slack messages, outbound webhooks, the Slack interactivity endpoint and
// the inbound approval webhook.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/services/notifier"
)

func main() {
	cfgPath := flag.String("config", "", "kaar config file (YAML); the notify section configures this service")
	natsURL := flag.String("nats-url", "", "NATS server URL (default: nats.url from the config, else nats://127.0.0.1:4222)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *cfgPath, *natsURL); err != nil {
		fmt.Fprintln(os.Stderr, "kaar-notifier:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfgPath, natsURL string) error {
	cfg, err := config.LoadFile(cfgPath, os.Environ())
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Server.LogLevel))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	url := cfg.NATS.URL
	if natsURL != "" {
		url = natsURL
	}
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := bus.Connect(ctx, url, bus.ConnectOptions{Name: "kaar-notifier", Logger: log,
		CredsFile: cfg.NATS.CredsFile, User: cfg.NATS.User, Password: cfg.NATS.Password})
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := bus.Provision(ctx, js, bus.Config{Clusters: []string{cfg.Kubernetes.ClusterName},
		AuditRetention: cfg.NATS.AuditRetention.Duration, ExecutorAckWait: cfg.NATS.ExecutorAckWait.Duration}); err != nil {
		return err
	}
	svc, err := notifier.New(notifier.ConfigFrom(cfg), notifier.Deps{NATS: nc, Logger: log})
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}
