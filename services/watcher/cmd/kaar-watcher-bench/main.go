// Command kaar-watcher-bench measures the watcher on a real control plane
// (pkg/sandbox with kwok nodes): detection latency from a pod's status
// write to the incident on the bus, analyze latency over NATS
// request/reply, the watcher's resident memory, and a storm of pods
// failing within seconds (throughput, lost and duplicate incidents). It
// prints a table and appends it to BENCHMARKS.md. Numbers are measured,
// never asserted.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type flags struct {
	pods, nodes, failPercent, storm, analyze int
	stormWindow, loadTimeout                 time.Duration
	kubeconfig, stateDir, out                string
	runWatcher                               bool
	natsURL, cluster                         string
	memoryLimit                              string
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
	flag.BoolVar(&f.runWatcher, "run-watcher", false, "internal: run the watcher (the child process)")
	flag.StringVar(&f.natsURL, "nats-url", "", "internal: NATS URL of the child watcher")
	flag.StringVar(&f.cluster, "cluster", "bench", "cluster name on the bus")
	flag.StringVar(&f.memoryLimit, "memory-limit", "auto", "the watcher's server.memory_limit (auto, off or a size such as 96Mi), applied as kaar applies it")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if f.runWatcher {
		err = runWatcherChild(ctx, f.natsURL, f.kubeconfig, f.cluster, f.memoryLimit)
	} else {
		err = bench(ctx, f, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kaar-watcher-bench:", err)
		os.Exit(1)
	}
}

// startChild runs this binary as the watcher.
func startChild(ctx context.Context, natsURL, kubeconfig, cluster, memoryLimit string, stats *childStats) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-run-watcher", "-nats-url", natsURL, "-kubeconfig", kubeconfig, "-cluster", cluster, "-memory-limit", memoryLimit)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go stats.follow(out)
	return cmd, nil
}

func commandLine() string {
	return "go run ./services/watcher/cmd/kaar-watcher-bench " + strings.Join(os.Args[1:], " ")
}

func logf(w io.Writer, format string, a ...any) {
	fmt.Fprintf(w, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}
