package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/services/watcher"
)

// The bench measures the real kaar-watcher program: built as the images
// build it (deploy/hack/build-binaries.sh), configured as a user
// configures it (a config file and the flags of `kaar-watcher --help`),
// in its own process. Its memory comes from /proc/<pid>/status and from
// its own Prometheus /metrics (server.metrics_addr).

// buildFlags are deploy/hack/build-binaries.sh's, which the Dockerfile's
// images are built with.
var buildFlags = []string{"-trimpath", "-ldflags", "-s -w"}

// buildWatcher builds kaar-watcher into dir as the images build it
// (CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags "-s -w") and
// returns its path.
func buildWatcher(ctx context.Context, dir string) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || root == "" {
		return "", errors.New("build kaar-watcher: run the bench inside the kaar module")
	}
	bin := filepath.Join(dir, "kaar-watcher")
	args := append([]string{"build"}, buildFlags...)
	cmd := exec.CommandContext(ctx, "go", append(args, "-o", bin, "./services/watcher/cmd/kaar-watcher")...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build kaar-watcher: %w\n%s", err, out)
	}
	return bin, nil
}

// watcherConfigYAML is the configuration file the bench gives
// kaar-watcher: the defaults (server.memory_limit auto among them),
// except watcher.pending_grace 0 so that a Pending pod is classifiable
// at its status write like the other types (the grace is a deliberate
// policy delay, not detection latency). The NATS URL, its credential and
// the kubeconfig are flags, as in the chart.
func watcherConfigYAML(cluster, memoryLimit, metricsAddr string, warnings bool) string {
	return fmt.Sprintf(`# written by kaar-watcher-bench
server:
  metrics_addr: %q
  memory_limit: %q
kubernetes:
  cluster_name: %q
watcher:
  pending_grace: 0s
  warnings:
    enabled: %t
`, metricsAddr, memoryLimit, cluster, warnings)
}

// benchClassify is the classification the watcher runs with that
// configuration, for the bench's own watch: the same file, parsed by
// kaar's own loader.
func benchClassify(cluster, memoryLimit string) (watcher.ClassifyOptions, error) {
	cfg, err := config.Load(strings.NewReader(watcherConfigYAML(cluster, memoryLimit, "127.0.0.1:0", true)), nil)
	if err != nil {
		return watcher.ClassifyOptions{}, fmt.Errorf("bench configuration: %w", err)
	}
	return watcher.ConfigFrom(cfg).Classify, nil
}

// watcherProc is the running kaar-watcher.
type watcherProc struct {
	cmd        *exec.Cmd
	done       chan struct{} // closed when the process has exited
	err        error         // its exit, once done
	metricsURL string
	logPath    string
}

// startWatcherProc writes the configuration into dir and starts bin
// against the bus at natsURL (logging in with the watcher's seed) and the
// cluster of kubeconfig. Its log goes to dir/kaar-watcher.log.
func startWatcherProc(ctx context.Context, bin, dir, natsURL, seed, kubeconfig, cluster, memoryLimit string, warnings bool) (*watcherProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "kaar-watcher.yaml")
	if err := os.WriteFile(cfgPath, []byte(watcherConfigYAML(cluster, memoryLimit, addr, warnings)), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "kaar-watcher.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "--config", cfgPath, "--nats-url", natsURL, "--creds", seed, "--kubeconfig", kubeconfig)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close() // the start error is the one to report
		return nil, err
	}
	p := &watcherProc{cmd: cmd, done: make(chan struct{}), metricsURL: "http://" + addr + "/metrics", logPath: logPath}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close() // written by the child only
		close(p.done)
	}()
	return p, nil
}

func (p *watcherProc) pid() int { return p.cmd.Process.Pid }

// exited returns the process's exit and the end of its log once it has
// exited, nil while it runs.
func (p *watcherProc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("kaar-watcher exited (%v); its log ends with:\n%s", p.err, tail(p.logPath, 20))
	default:
		return nil
	}
}

// wait waits for the process to exit (after its context ended).
func (p *watcherProc) wait() { <-p.done }

// freeAddr is a loopback address with a port free at the time of the call.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// goMemory is what the watcher's Go runtime says of its memory, from its
// /metrics (client_golang's Go collector).
type goMemory struct {
	HeapAlloc   uint64 // go_memstats_heap_alloc_bytes: live and not yet swept
	HeapObjects uint64 // go_memstats_heap_objects
	NextGC      uint64 // go_memstats_next_gc_bytes: the heap goal
	// Held is what the runtime holds from the system and has not
	// released (go_memstats_sys_bytes - go_memstats_heap_released_bytes):
	// what a soft memory limit bounds.
	Held uint64
	// Held by kind: heap spans in use, free heap spans not yet returned
	// to the system, goroutine stacks, and the runtime's own metadata
	// (GC, spans, profiling buckets, other).
	HeapInuse, HeapFree, Stacks, Runtime uint64
	Goroutines                           uint64
	// CPU is the process's CPU time so far (process_cpu_seconds_total):
	// what the collector's work, among the rest, costs.
	CPU   time.Duration
	GOGC  int64  // go_gc_gogc_percent
	Limit uint64 // go_gc_gomemlimit_bytes; 0: none
}

// scrapeGoMemory reads the watcher's /metrics.
func scrapeGoMemory(url string) (goMemory, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return goMemory{}, err
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below
	if resp.StatusCode != http.StatusOK {
		return goMemory{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return goMemory{}, err
	}
	u := func(name string) uint64 { return uint64(max(m[name], 0)) }
	g := goMemory{HeapAlloc: u("go_memstats_heap_alloc_bytes"), HeapObjects: u("go_memstats_heap_objects"),
		NextGC: u("go_memstats_next_gc_bytes"), Held: u("go_memstats_sys_bytes") - min(u("go_memstats_heap_released_bytes"), u("go_memstats_sys_bytes")),
		HeapInuse: u("go_memstats_heap_inuse_bytes"), HeapFree: u("go_memstats_heap_idle_bytes") - min(u("go_memstats_heap_released_bytes"), u("go_memstats_heap_idle_bytes")),
		Stacks:     u("go_memstats_stack_sys_bytes"),
		Runtime:    u("go_memstats_gc_sys_bytes") + u("go_memstats_mspan_sys_bytes") + u("go_memstats_mcache_sys_bytes") + u("go_memstats_buck_hash_sys_bytes") + u("go_memstats_other_sys_bytes"),
		Goroutines: u("go_goroutines"), GOGC: int64(m["go_gc_gogc_percent"]),
		CPU: time.Duration(m["process_cpu_seconds_total"] * float64(time.Second))}
	// No limit is math.MaxInt64, which a float64 rounds up.
	if l := m["go_gc_gomemlimit_bytes"]; l > 0 && l < math.MaxInt64/2 {
		g.Limit = uint64(l)
	}
	if _, ok := m["go_memstats_sys_bytes"]; !ok {
		return g, fmt.Errorf("%s has no go_memstats_sys_bytes", url)
	}
	return g, nil
}

// parseMetrics reads the samples without labels of a Prometheus text
// exposition (the Go collector's are all such).
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.ContainsRune(line, '{') {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, sc.Err()
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

// loadAverage is /proc/loadavg's 1, 5 and 15 minute figures.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// treeCommit is the commit of the tree the bench runs in, and whether
// the code the watcher is built from (pkg, services) differs from it.
func treeCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short=7", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if exec.Command("git", "diff", "--quiet", "HEAD", "--", "pkg", "services", "go.mod", "go.sum").Run() != nil {
		c += " with uncommitted changes under pkg/ or services/"
	}
	return c
}

func nproc() int { return runtime.NumCPU() }
