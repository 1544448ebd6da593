package sandbox

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Versions of the components the sandbox builds and runs.
const (
	EtcdVersion       = "3.6.8"
	KubernetesVersion = "1.37.2"
	KwokVersion       = "0.8.0"
	// MetricsServerVersion serves the resource metrics API
	// (metrics.k8s.io) from kwok's simulated usage.
	MetricsServerVersion = "0.8.0"
)

// Environment variables the sandbox reads.
const (
	// EnvCacheDir overrides the cache base directory (binaries are kept
	// under <base>/sandbox/bin/<key>).
	EnvCacheDir = "KAAR_CACHE_DIR"
	// EnvStateDir overrides the default state directory of the command.
	EnvStateDir = "KAAR_SANDBOX_STATE_DIR"
	// EnvKubeconfig, when set, makes ForTest reuse the running sandbox
	// whose admin kubeconfig it names instead of starting one.
	EnvKubeconfig = "KAAR_SANDBOX_KUBECONFIG"
)

// Defaults of Options.
const (
	DefaultNodes      = 3
	DefaultNodeCPU    = "16"
	DefaultNodeMemory = "64Gi"
	DefaultNodePods   = 110
)

// Options configure EnsureBinaries and Up. The zero value is usable: every
// field has a default.
type Options struct {
	// StateDir holds the cluster's data, certificates, kubeconfigs, logs
	// and state.json. Default: DefaultStateDir().
	StateDir string
	// CacheDir is the cache base; binaries go to CacheDir/sandbox/bin/<key>.
	// Default: $KAAR_CACHE_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/kaar.
	CacheDir string
	// Nodes is the number of kwok nodes (default 3).
	Nodes int
	// NodeCPU, NodeMemory and NodePods are each node's capacity
	// (defaults "16", "64Gi", 110).
	NodeCPU    string
	NodeMemory string
	NodePods   int
	// NoMetrics runs the sandbox without the resource metrics API: no
	// metrics-server, and kwok simulates no usage. For benchmarks at scale
	// that must not pay for it (kwok evaluates every container's usage at
	// each 10 s scrape: about 0.7% of a core per 300 pods, measured).
	NoMetrics bool
	// Detached leaves the processes running when the calling program exits
	// (for `kaar-sandbox up`); they are stopped by Down. When false, the
	// processes are tied to the caller and die with it.
	Detached bool
	// Progress receives human-readable progress lines (nil: discarded).
	Progress io.Writer
	// Logger receives structured logs (nil: discarded).
	Logger *slog.Logger
}

// withDefaults returns a copy with defaults filled in, or an error naming
// the invalid field.
func (o Options) withDefaults() (Options, error) {
	if o.StateDir == "" {
		d, err := DefaultStateDir()
		if err != nil {
			return o, err
		}
		o.StateDir = d
	}
	abs, err := filepath.Abs(o.StateDir)
	if err != nil {
		return o, fmt.Errorf("options: StateDir %q: %w", o.StateDir, err)
	}
	o.StateDir = abs
	if o.CacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return o, err
		}
		o.CacheDir = d
	}
	if o.Nodes == 0 {
		o.Nodes = DefaultNodes
	}
	if o.Nodes < 1 || o.Nodes > 1000 {
		return o, fmt.Errorf("options: Nodes is %d: %w", o.Nodes, errInvalid("between 1 and 1000"))
	}
	if o.NodeCPU == "" {
		o.NodeCPU = DefaultNodeCPU
	}
	if o.NodeMemory == "" {
		o.NodeMemory = DefaultNodeMemory
	}
	if o.NodePods == 0 {
		o.NodePods = DefaultNodePods
	}
	if _, err := resource.ParseQuantity(o.NodeCPU); err != nil {
		return o, fmt.Errorf("options: NodeCPU %q: %w", o.NodeCPU, errInvalid("a Kubernetes quantity such as 16 or 8000m"))
	}
	if _, err := resource.ParseQuantity(o.NodeMemory); err != nil {
		return o, fmt.Errorf("options: NodeMemory %q: %w", o.NodeMemory, errInvalid("a Kubernetes quantity such as 64Gi"))
	}
	if o.NodePods < 1 {
		return o, fmt.Errorf("options: NodePods is %d: %w", o.NodePods, errInvalid("a positive number"))
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// DefaultCacheDir returns the cache base: $KAAR_CACHE_DIR, else
// ${XDG_CACHE_HOME:-$HOME/.cache}/kaar.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv(EnvCacheDir); d != "" {
		return filepath.Abs(d)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache dir: set %s: %w", EnvCacheDir, err)
	}
	return filepath.Join(d, "kaar"), nil
}

// DefaultStateDir returns $KAAR_SANDBOX_STATE_DIR, else
// ${XDG_STATE_HOME:-$HOME/.local/state}/kaar/sandbox.
func DefaultStateDir() (string, error) {
	if d := os.Getenv(EnvStateDir); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "kaar", "sandbox"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("state dir: set %s: %w", EnvStateDir, err)
	}
	return filepath.Join(home, ".local", "state", "kaar", "sandbox"), nil
}
