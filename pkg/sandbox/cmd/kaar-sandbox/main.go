// Command kaar-sandbox runs kaar's local Kubernetes sandbox: a real control
// plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
// with kwok nodes, built from source on first use.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kaar-dev/kaar/pkg/sandbox"
)

const usage = `kaar-sandbox runs a local Kubernetes control plane with simulated nodes.

Usage:
  kaar-sandbox up [--demo] [--nodes N] [--state-dir D]   start it (first run builds it: ~15 min on 2 cores;
                                                          --no-metrics: without the metrics API)
  kaar-sandbox status [--state-dir D]                     what runs, on which ports, healthy or not
  kaar-sandbox kubeconfig [--state-dir D]                 print the admin kubeconfig path
  kaar-sandbox down [--state-dir D]                       stop it and delete its state
  kaar-sandbox build                                      only build (or find) the binaries

Then:  export KUBECONFIG=$(kaar-sandbox kubeconfig); kubectl get pods -A
--demo installs the demo shop (namespace "shop") with its broken workloads.
State: $KAAR_SANDBOX_STATE_DIR or ~/.local/state/kaar/sandbox.
Binaries: $KAAR_CACHE_DIR or ~/.cache/kaar, under sandbox/bin.

Flags:
`

func main() {
	fs := flag.NewFlagSet("kaar-sandbox", flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	demo := fs.Bool("demo", false, "install the demo workloads, with the extra failures")
	opts := sandbox.Options{Detached: true, Progress: os.Stderr}
	fs.IntVar(&opts.Nodes, "nodes", sandbox.DefaultNodes, "number of kwok nodes")
	fs.StringVar(&opts.StateDir, "state-dir", "", "state directory")
	fs.BoolVar(&opts.NoMetrics, "no-metrics", false, "no resource metrics API (no metrics-server, no simulated usage): for benchmarks at scale")
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		fs.Usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	_ = fs.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := sandbox.RunCommand(ctx, os.Args[1], opts, *demo, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kaar-sandbox:", err)
		os.Exit(1)
	}
}
