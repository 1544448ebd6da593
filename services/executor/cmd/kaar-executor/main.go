// Command kaar-executor runs kaar's executor alone against a NATS server:
// it executes approved remediation plans and verifies the workloads.
package main

import (
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
	"github.com/kaar-dev/kaar/services/executor"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	cfgPath := flag.String("config", "", "kaar config file (YAML); empty uses the defaults")
	natsURL := flag.String("nats-url", "", "NATS server URL (default: nats.url from the config, else nats://127.0.0.1:4222)")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (default: kubernetes.kubeconfig, $KUBECONFIG, ~/.kube/config, in-cluster)")
	flag.Usage = func() {
		fmt.Fprint(os.Stderr, "kaar-executor executes approved kaar plans and verifies the workloads.\n\nUsage: kaar-executor [flags]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *cfgPath, *natsURL, *kubeconfig); err != nil {
		fmt.Fprintln(os.Stderr, "kaar-executor:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfgPath, natsURL, kubeconfig string) error {
	cfg, err := config.LoadFile(cfgPath, os.Environ())
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: firstSet(kubeconfig, cfg.Kubernetes.Kubeconfig)}
	if rules.ExplicitPath == "" {
		rules = clientcmd.NewDefaultClientConfigLoadingRules()
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: cfg.Kubernetes.Context}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubernetes client config: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	nc, err := bus.Connect(ctx, firstSet(natsURL, cfg.NATS.URL, "nats://127.0.0.1:4222"), bus.ConnectOptions{Name: executor.ServiceName,
		Logger: log, CredsFile: cfg.NATS.CredsFile, User: cfg.NATS.User, Password: cfg.NATS.Password})
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
	svc, err := executor.New(executor.ConfigFrom(cfg), executor.Deps{NATS: nc, Kube: cs, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	if addr := cfg.Server.MetricsAddr; addr != "" {
		srv := &http.Server{Addr: addr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
		go func() {
			if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", slog.Any("error", err))
			}
		}()
		defer srv.Close() // ends the goroutine above
	}
	return svc.Run(ctx)
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
