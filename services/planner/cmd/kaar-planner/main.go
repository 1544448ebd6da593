// Command kaar-planner runs kaar's planner alone against a NATS server: it
// turns incidents from the ISSUES stream into remediation plans.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/services/planner"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	cfgPath := flag.String("config", "", "config file (YAML); KAAR_* environment variables override it")
	natsURL := flag.String("nats-url", "", "NATS server URL (default: nats.url, else nats://127.0.0.1:4222)")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig (default: kubernetes.kubeconfig, $KUBECONFIG, ~/.kube/config, in-cluster)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *cfgPath, *natsURL, *kubeconfig); err != nil {
		fmt.Fprintln(os.Stderr, "kaar-planner:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfgPath, natsURL, kubeconfig string) error {
	cfg, err := config.LoadFile(cfgPath, os.Environ())
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = cmp.Or(kubeconfig, cfg.Kubernetes.Kubeconfig)
	rest, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: cfg.Kubernetes.Context}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubernetes client config: %w", err)
	}
	kube, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return err
	}
	nc, err := bus.Connect(ctx, cmp.Or(natsURL, cfg.NATS.URL, "nats://127.0.0.1:4222"), bus.ConnectOptions{Name: planner.ServiceName,
		Logger: log, CredsFile: cfg.NATS.CredsFile, User: cfg.NATS.User, Password: cfg.NATS.Password})
	if err != nil {
		return err
	}
	defer nc.Drain()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := bus.Provision(ctx, js, bus.Config{Clusters: []string{cfg.Kubernetes.ClusterName}}); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	svc, err := planner.New(planner.ConfigFrom(cfg), planner.Deps{NATS: nc, Kube: kube, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	if addr := cfg.Server.MetricsAddr; addr != "" {
		go func() { _ = http.ListenAndServe(addr, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})) }()
	}
	return svc.Run(ctx)
}
