package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/watcher"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The watcher runs in a child process (this binary with -run-watcher) so
// that its resident memory is its own, not the load generator's.

// heapReport is what the child prints on stdout every second.
type heapReport struct {
	HeapLive    uint64 `json:"heap_live"`
	HeapObjects uint64 `json:"heap_objects"`
	Goroutines  uint64 `json:"goroutines"`
	// GoMapped is the memory the Go runtime holds from the system and
	// has not released (what a soft memory limit bounds).
	GoMapped uint64 `json:"go_mapped"`
}

// watcherConfig is the watcher configuration the bench measures: the
// defaults, except a pending grace of 0 so that a Pending pod is
// classifiable at its status write like the other types (the grace is a
// deliberate policy delay, not detection latency).
func watcherConfig(cluster string) watcher.Config {
	opts := watcher.DefaultClassifyOptions()
	opts.PendingGrace = 0
	return watcher.Config{Cluster: cluster, Classify: opts}
}

// runWatcherChild is the child's main: the watcher alone, against the
// parent's NATS server and the sandbox.
func runWatcherChild(ctx context.Context, natsURL, kubeconfig, cluster, memoryLimit string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv := config.Server{MemoryLimit: memoryLimit}
	if err := config.ValidateMemoryLimit(memoryLimit); err != nil {
		return err
	}
	svcmain.ApplyMemoryLimit(srv, log)
	nc, err := bus.Connect(ctx, natsURL, bus.ConnectOptions{Name: "kaar-watcher-bench", Logger: log,
		NkeyFile: os.Getenv("KAAR_NATS_NKEY_FILE"), InboxPrefix: bus.RoleWatcher.InboxPrefix()})
	if err != nil {
		return err
	}
	defer nc.Close()
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	svc, err := watcher.New(watcherConfig(cluster), watcher.Deps{NATS: nc, Kube: kube, Logger: log})
	if err != nil {
		return err
	}
	go func() {
		samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/objects:objects"}, {Name: "/sched/goroutines:goroutines"},
			{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
		enc := json.NewEncoder(os.Stdout)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			metrics.Read(samples)
			_ = enc.Encode(heapReport{HeapLive: samples[0].Value.Uint64(), HeapObjects: samples[1].Value.Uint64(), Goroutines: samples[2].Value.Uint64(),
				GoMapped: samples[3].Value.Uint64() - samples[4].Value.Uint64()})
		}
	}()
	return svc.Run(ctx)
}

// childStats follows the child's heap reports.
type childStats struct {
	mu   sync.Mutex
	last heapReport
}

func (c *childStats) follow(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var h heapReport
		if json.Unmarshal(sc.Bytes(), &h) == nil {
			c.mu.Lock()
			c.last = h
			c.mu.Unlock()
		}
	}
}

func (c *childStats) heap() heapReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// procMemory returns a process's VmRSS and VmHWM (peak RSS) in bytes.
func procMemory(pid int) (rss, hwm uint64, err error) {
	m, err := procStatus(pid)
	return m["VmRSS"], m["VmHWM"], err
}

// procStatus returns the sizes of /proc/<pid>/status in bytes (VmRSS,
// VmHWM, RssAnon, RssFile, ...).
func procStatus(pid int) (map[string]uint64, error) {
	out := map[string]uint64{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			n, _ := strconv.ParseUint(f[0], 10, 64)
			out[k] = n << 10
		}
	}
	return out, nil
}

func nproc() int { return runtime.NumCPU() }
