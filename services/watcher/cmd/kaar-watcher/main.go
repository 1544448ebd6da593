// Command kaar-watcher runs kaar's watcher alone against a NATS server:
// it detects failing pods and publishes incidents to the ISSUES stream.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/services/watcher"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	cfgPath := flag.String("config", "", "kaar config file (YAML; KAAR_* environment variables override)")
	natsURL := flag.String("nats-url", "", "NATS server URL (default: nats.url of the config)")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig (default: kubernetes.kubeconfig, $KUBECONFIG, ~/.kube/config, in-cluster)")
	flag.Usage = func() {
		fmt.Fprint(os.Stderr, "kaar-watcher detects failing pods and publishes incidents on the kaar bus.\n\nUsage: kaar-watcher [flags]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *cfgPath, *natsURL, *kubeconfig); err != nil {
		fmt.Fprintln(os.Stderr, "kaar-watcher:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfgPath, natsURL, kubeconfig string) error {
	cfg, err := config.LoadFile(cfgPath, os.Environ())
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Server.LogLevel))
	var h slog.Handler = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	if cfg.Server.LogFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(h)
	if natsURL = cmp.Or(natsURL, cfg.NATS.URL); natsURL == "" {
		return errors.New("no NATS server: pass --nats-url or set nats.url (kaar serve runs an embedded one)")
	}
	nc, err := bus.Connect(ctx, natsURL, bus.ConnectOptions{Name: "kaar-watcher", Logger: log, CredsFile: cfg.NATS.CredsFile, User: cfg.NATS.User, Password: cfg.NATS.Password})
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := bus.Provision(ctx, js, bus.Config{Clusters: []string{cfg.Kubernetes.ClusterName}, AuditRetention: cfg.NATS.AuditRetention.Duration}); err != nil {
		return err
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = cmp.Or(kubeconfig, cfg.Kubernetes.Kubeconfig)
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: cfg.Kubernetes.Context}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubernetes client config: %w", err)
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	reg := prometheus.NewRegistry()
	svc, err := watcher.New(watcher.ConfigFrom(cfg), watcher.Deps{NATS: nc, Kube: kube, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	if cfg.Server.MetricsAddr != "" {
		srv := &http.Server{Addr: cfg.Server.MetricsAddr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
		go func() { <-ctx.Done(); _ = srv.Close() }()
		go func() { log.Info("metrics server stopped", slog.Any("error", srv.ListenAndServe())) }()
	}
	return svc.Run(ctx)
}
