package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// buildMods holds the throw-away build modules (go.mod, go.sum, tools.go,
// stored with a .txt suffix so they do not form nested modules here).
//
//go:embed buildmods
var buildMods embed.FS

// podLogsSource is the pod log writer (package podlogs), compiled into the
// sandbox's kwok: the build writes it into the kwok build module as
// podlogs/podlogs.go, next to the main (buildmods/kwok/cmd/kwok) that
// starts it. It is part of the binary key.
//
//go:embed podlogs/podlogs.go
var podLogsSource []byte

// podLogsBuildPath is where the build writes podLogsSource.
const podLogsBuildPath = "kwok/podlogs/podlogs.go"

// Binaries are the paths of the built control-plane executables.
type Binaries struct {
	Dir                   string `json:"dir"`
	Etcd                  string `json:"etcd"`
	KubeAPIServer         string `json:"kubeAPIServer"`
	KubeControllerManager string `json:"kubeControllerManager"`
	KubeScheduler         string `json:"kubeScheduler"`
	Kubectl               string `json:"kubectl"`
	Kwok                  string `json:"kwok"`
}

// buildGroup is one `go build` run: a build module and its packages.
type buildGroup struct {
	module   string   // directory under buildmods
	pkgs     []string // packages to build
	bins     []string // executable names, one per package
	what     string   // for progress lines
	estimate string   // cold build time on 2 cores, measured
}

// buildGroups, in build order. One go command per module lets the four
// Kubernetes binaries compile and link in parallel. The estimates were
// measured on the project's 2-core machine with a cold Go build cache.
var buildGroups = []buildGroup{
	{"etcd", []string{"go.etcd.io/etcd/server/v3"}, []string{"etcd"}, "etcd " + EtcdVersion, "~1 min"},
	// kwok's own main plus the pod log writer (buildmods/kwok/cmd/kwok).
	{"kwok", []string{"./cmd/kwok"}, []string{"kwok"}, "kwok " + KwokVersion, "~2 min"},
	{"k8s", []string{"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-controller-manager",
		"k8s.io/kubernetes/cmd/kube-scheduler", "k8s.io/kubernetes/cmd/kubectl"},
		[]string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"},
		"kube-apiserver, kube-controller-manager, kube-scheduler and kubectl " + KubernetesVersion, "~9 min"},
}

func binariesIn(dir string) Binaries {
	return Binaries{
		Dir:                   dir,
		Etcd:                  filepath.Join(dir, "etcd"),
		KubeAPIServer:         filepath.Join(dir, "kube-apiserver"),
		KubeControllerManager: filepath.Join(dir, "kube-controller-manager"),
		KubeScheduler:         filepath.Join(dir, "kube-scheduler"),
		Kubectl:               filepath.Join(dir, "kubectl"),
		Kwok:                  filepath.Join(dir, "kwok"),
	}
}

// manifestName marks a complete binary directory.
const manifestName = "manifest.json"

type manifest struct {
	Key        string            `json:"key"`
	Versions   map[string]string `json:"versions"`
	GoVersion  string            `json:"goVersion"`
	BuiltAt    time.Time         `json:"builtAt"`
	BuildTimes map[string]string `json:"buildTimes"`
}

// binaryKey identifies a set of binaries: the component versions, the
// embedded build modules and the Go toolchain. runtime.Version (the Go
// that built this program) stands in for `go version`, so that a warm
// start never runs the go command.
func binaryKey() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "etcd=%s\nkubernetes=%s\nkwok=%s\ngo=%s\nplatform=%s/%s\n",
		EtcdVersion, KubernetesVersion, KwokVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	err := fs.WalkDir(buildMods, "buildmods", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := buildMods.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", path, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash build modules: %w", err)
	}
	fmt.Fprintf(h, "%s %d\n", podLogsBuildPath, len(podLogsSource))
	h.Write(podLogsSource)
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// EnsureBinaries returns the control-plane binaries, building them first
// if the cache does not hold them for the current key. A build writes the
// embedded build modules under CacheDir/sandbox/build/<key>, runs
// `go build` for each binary (minutes cold, seconds with a warm Go build
// cache) and moves the result to CacheDir/sandbox/bin/<key> atomically. A
// file lock lets concurrent callers (parallel test binaries) share one
// build.
func EnsureBinaries(ctx context.Context, opts Options) (Binaries, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return Binaries{}, err
	}
	key, err := binaryKey()
	if err != nil {
		return Binaries{}, err
	}
	binRoot := filepath.Join(opts.CacheDir, "sandbox", "bin")
	final := filepath.Join(binRoot, key)
	if complete(final) {
		return binariesIn(final), nil
	}
	if err := os.MkdirAll(binRoot, 0o755); err != nil {
		return Binaries{}, fmt.Errorf("ensure binaries: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(binRoot, key+".lock"), opts.Progress, "another process is building the sandbox binaries; waiting")
	if err != nil {
		return Binaries{}, fmt.Errorf("ensure binaries: %w", err)
	}
	defer unlock()
	if complete(final) { // built by whoever held the lock
		return binariesIn(final), nil
	}
	if err := build(ctx, opts, key, final); err != nil {
		return Binaries{}, err
	}
	return binariesIn(final), nil
}

func complete(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, manifestName)); err != nil {
		return false
	}
	b := binariesIn(dir)
	for _, p := range []string{b.Etcd, b.KubeAPIServer, b.KubeControllerManager, b.KubeScheduler, b.Kubectl, b.Kwok} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// goCommand finds the go toolchain.
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if gr := os.Getenv("GOROOT"); gr != "" {
		if p := filepath.Join(gr, "bin", "go"); isExecutable(p) {
			return p, nil
		}
	}
	if p := "/usr/local/go/bin/go"; isExecutable(p) {
		return p, nil
	}
	return "", fmt.Errorf("%w in PATH: the sandbox builds etcd, Kubernetes %s and kwok from source; install Go 1.26 or later", ErrNoGo, KubernetesVersion)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// writeBuildModules writes the embedded build modules under dir.
func writeBuildModules(dir string) error {
	err := fs.WalkDir(buildMods, "buildmods", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(path, "buildmods"), "/")
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		b, err := buildMods.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, strings.TrimSuffix(rel, ".txt")), b, 0o644)
	})
	if err != nil {
		return err
	}
	p := filepath.Join(dir, filepath.FromSlash(podLogsBuildPath))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, podLogsSource, 0o644)
}

func build(ctx context.Context, opts Options, key, final string) error {
	goBin, err := goCommand()
	if err != nil {
		return err
	}
	modDir := filepath.Join(opts.CacheDir, "sandbox", "build", key)
	if err := os.RemoveAll(modDir); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if err := writeBuildModules(modDir); err != nil {
		return fmt.Errorf("build: write build modules: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(final), key+".tmp-")
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }() // scratch space; a leftover does no harm
	logPath := filepath.Join(modDir, "build.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	defer func() { _ = logFile.Close() }() // the build log, for people; the build result does not depend on it

	m := manifest{Key: key, GoVersion: runtime.Version(), BuildTimes: map[string]string{},
		Versions: map[string]string{"etcd": EtcdVersion, "kubernetes": KubernetesVersion, "kwok": KwokVersion}}
	total := time.Now()
	fmt.Fprintf(opts.Progress, "building the sandbox binaries into %s (log: %s)\n", final, logPath)
	for _, g := range buildGroups {
		fmt.Fprintf(opts.Progress, "building %s (cold build takes %s on 2 cores)...\n", g.what, g.estimate)
		start := time.Now()
		// One package: -o names the file. Several: -o names a directory and
		// each executable is named after its package.
		out := filepath.Join(tmp, g.bins[0])
		if len(g.pkgs) > 1 {
			out = tmp + string(filepath.Separator)
		}
		args := append([]string{"build", "-trimpath", "-o", out}, g.pkgs...)
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.Dir = filepath.Join(modDir, g.module)
		// GOWORK=off: the build module must never see a caller's workspace.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
		var tail bytes.Buffer
		cmd.Stdout = logFile
		cmd.Stderr = &teeTail{w: logFile, tail: &tail}
		fmt.Fprintf(logFile, "$ (cd %s && CGO_ENABLED=0 go %s)\n", cmd.Dir, strings.Join(args, " "))
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%w: %s: %v: %s (full log: %s)", ErrBuild, g.what, err, lastLines(tail.String(), 15), logPath)
		}
		d := time.Since(start).Round(time.Second)
		for _, b := range g.bins {
			m.BuildTimes[b] = d.String()
		}
		fmt.Fprintf(opts.Progress, "built in %s\n", d)
		opts.Logger.Info("built sandbox binaries", slog.String("binaries", strings.Join(g.bins, ",")), slog.String("took", d.String()))
	}
	m.BuiltAt = time.Now().UTC()
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, manifestName), mb, 0o644); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	_ = os.RemoveAll(final) // an incomplete leftover
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("build: install binaries: %w", err)
	}
	fmt.Fprintf(opts.Progress, "built all sandbox binaries in %s\n", time.Since(total).Round(time.Second))
	return nil
}

// teeTail writes to w and keeps everything in tail (for error messages).
type teeTail struct {
	w    *os.File
	tail *bytes.Buffer
}

func (t *teeTail) Write(p []byte) (int, error) {
	t.tail.Write(p)
	return t.w.Write(p)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
