// Command kaar-watcher-bench measures the kaar-watcher program on a real
// control plane (pkg/sandbox with kwok nodes): detection latency from a
// pod's status write to the incident on the bus, analyze latency over
// NATS request/reply, the watcher's resident memory, and a storm of pods
// failing within seconds (throughput, lost and duplicate incidents). It
// builds kaar-watcher as the images do and runs it as a user would (a
// config file, --nats-url, --creds, --kubeconfig), against its own NATS
// server. It prints a table and appends it to BENCHMARKS.md. Numbers are
// measured, never asserted.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type flags struct {
	pods, nodes, failPercent, storm, analyze int
	stormWindow, loadTimeout                 time.Duration
	kubeconfig, stateDir, out                string
	cluster, memoryLimit, watcherBinary      string
	warnings                                 bool
}

func main() {
	var f flags
	flag.IntVar(&f.pods, "pods", 10000, "pods in the cluster (healthy + failing + storm)")
	flag.IntVar(&f.nodes, "nodes", 100, "kwok nodes of the private sandbox")
	flag.IntVar(&f.failPercent, "fail-percent", 5, "share of the pods failing at steady state, over the five types")
	flag.IntVar(&f.storm, "storm", 2000, "bare pods that start crashing within -storm-window")
	flag.DurationVar(&f.stormWindow, "storm-window", 10*time.Second, "how fast the storm pods are made to fail")
	flag.IntVar(&f.analyze, "analyze", 1000, "analyze requests to time")
	flag.DurationVar(&f.loadTimeout, "load-timeout", 40*time.Minute, "how long the pods may take to run")
	flag.StringVar(&f.kubeconfig, "kubeconfig", "", "admin kubeconfig of a running sandbox to use instead of starting a private one")
	flag.StringVar(&f.stateDir, "state-dir", "", "state directory of the private sandbox (default: a temporary directory)")
	flag.StringVar(&f.out, "out", "BENCHMARKS.md", "file the results are appended to (empty: none)")
	flag.StringVar(&f.cluster, "cluster", "bench", "cluster name on the bus (kubernetes.cluster_name)")
	flag.StringVar(&f.memoryLimit, "memory-limit", "auto", "the watcher's server.memory_limit (auto, off or a size such as 96Mi); auto is kaar's default")
	flag.BoolVar(&f.warnings, "warnings", true, "the watcher's watcher.warnings.enabled (kaar's default: on); -warnings=false measures what the warnings cost")
	flag.StringVar(&f.watcherBinary, "watcher-binary", "", "kaar-watcher to measure (default: built from this tree as the images build it)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, f, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kaar-watcher-bench:", err)
		os.Exit(1)
	}
}

func commandLine() string {
	return "go run ./services/watcher/cmd/kaar-watcher-bench " + strings.Join(os.Args[1:], " ")
}

func logf(w io.Writer, format string, a ...any) {
	fmt.Fprintf(w, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}
