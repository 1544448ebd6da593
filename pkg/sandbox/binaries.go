package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
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
// starts it. It is part of kwok's key (groupKey).
//
//go:embed podlogs/podlogs.go
var podLogsSource []byte

// podLogsBuildPath is where the build writes podLogsSource.
const podLogsBuildPath = "kwok/podlogs/podlogs.go"

// Binaries are the paths of the built control-plane executables, all in
// one directory (Dir), which deploy/hack/build-images.sh copies into the
// demo cluster's image as a whole.
type Binaries struct {
	Dir                   string `json:"dir"`
	Etcd                  string `json:"etcd"`
	KubeAPIServer         string `json:"kubeAPIServer"`
	KubeControllerManager string `json:"kubeControllerManager"`
	KubeScheduler         string `json:"kubeScheduler"`
	Kubectl               string `json:"kubectl"`
	Kwok                  string `json:"kwok"`
	MetricsServer         string `json:"metricsServer"`
}

// embeddedSource is a file written into a build module besides the
// module's own buildmods files (a package of this repository compiled into
// a binary), at path relative to the build directory.
type embeddedSource struct {
	path string
	data []byte
}

// buildGroup is one `go build` run: a build module and its packages. Each
// group is cached under a key of its own inputs (groupKey), so adding or
// changing one group does not rebuild the others.
type buildGroup struct {
	module   string           // directory under buildmods
	version  string           // the component version, part of the key
	pkgs     []string         // packages to build
	bins     []string         // executable names, one per package
	extra    []embeddedSource // more sources written into the module, part of the key
	what     string           // for progress lines
	estimate string           // cold build time on 2 cores, measured
}

// buildGroups, in build order. One go command per module lets the four
// Kubernetes binaries compile and link in parallel. The estimates were
// measured on the project's 2-core machine with a cold Go build cache.
var buildGroups = []buildGroup{
	{module: "etcd", version: EtcdVersion, pkgs: []string{"go.etcd.io/etcd/server/v3"}, bins: []string{"etcd"},
		what: "etcd " + EtcdVersion, estimate: "~1 min"},
	// kwok's own main plus the pod log writer (buildmods/kwok/cmd/kwok).
	{module: "kwok", version: KwokVersion, pkgs: []string{"./cmd/kwok"}, bins: []string{"kwok"},
		extra: []embeddedSource{{podLogsBuildPath, podLogsSource}},
		what:  "kwok " + KwokVersion, estimate: "~2 min"},
	{module: "k8s", version: KubernetesVersion, pkgs: []string{"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-controller-manager",
		"k8s.io/kubernetes/cmd/kube-scheduler", "k8s.io/kubernetes/cmd/kubectl"},
		bins: []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"},
		what: "kube-apiserver, kube-controller-manager, kube-scheduler and kubectl " + KubernetesVersion, estimate: "~9 min"},
	{module: "metrics-server", version: MetricsServerVersion, pkgs: []string{"sigs.k8s.io/metrics-server/cmd/metrics-server"}, bins: []string{"metrics-server"},
		what: "metrics-server " + MetricsServerVersion, estimate: "~4.5 min"},
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
		MetricsServer:         filepath.Join(dir, "metrics-server"),
	}
}

// allBinaries are the executable names of every group.
func allBinaries() []string {
	var out []string
	for _, g := range buildGroups {
		out = append(out, g.bins...)
	}
	return out
}

// manifestName marks a complete binary directory.
const manifestName = "manifest.json"

// manifest describes a binary directory: a group's (Group set) or the set
// of every group's binaries that Binaries.Dir names (Groups set).
type manifest struct {
	Key         string            `json:"key"`
	Group       string            `json:"group,omitempty"`
	Groups      map[string]string `json:"groups,omitempty"` // module -> group key
	Versions    map[string]string `json:"versions"`
	GoVersion   string            `json:"goVersion"`
	BuiltAt     time.Time         `json:"builtAt"`
	BuildTimes  map[string]string `json:"buildTimes"`
	AdoptedFrom string            `json:"adoptedFrom,omitempty"` // a set directory of the single-key layout
}

// versionName is the name a group's version has in manifests.
func (g buildGroup) versionName() string {
	if g.module == "k8s" {
		return "kubernetes"
	}
	return g.module
}

// hashModuleFiles writes into h, in walk order, the name, size and content
// of every embedded build file of the modules keep accepts.
func hashModuleFiles(h io.Writer, keep func(module string) bool) error {
	err := fs.WalkDir(buildMods, "buildmods", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		module, _, _ := strings.Cut(strings.TrimPrefix(path, "buildmods/"), "/")
		if !keep(module) {
			return nil
		}
		b, err := buildMods.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", path, len(b))
		_, err = h.Write(b)
		return err
	})
	if err != nil {
		return fmt.Errorf("hash build modules: %w", err)
	}
	return nil
}

// groupKey identifies a group's binaries: its module, component version,
// build files and extra sources, and the Go toolchain. runtime.Version
// (the Go that built this program) stands in for `go version`, so that a
// warm start never runs the go command.
func groupKey(g buildGroup) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "group=%s\nversion=%s\ngo=%s\nplatform=%s/%s\n", g.module, g.version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if err := hashModuleFiles(h, func(m string) bool { return m == g.module }); err != nil {
		return "", err
	}
	for _, e := range g.extra {
		fmt.Fprintf(h, "%s %d\n", e.path, len(e.data))
		h.Write(e.data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// setKey identifies the directory holding every group's binaries: the
// group keys, in order.
func setKey(groupKeys []string) string {
	h := sha256.New()
	for i, g := range buildGroups {
		fmt.Fprintf(h, "%s=%s\n", g.module, groupKeys[i])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// legacyModules are the groups of the single-key layout (one key for every
// binary), which caches filled before per-group keys existed.
var legacyModules = map[string]bool{"etcd": true, "k8s": true, "kwok": true}

// legacyKey is the key the single-key layout gave the current etcd, kwok
// and Kubernetes inputs. A complete directory under it holds those groups'
// binaries exactly as a build would make them now, so they are linked
// into their group directories instead of being rebuilt (~12 minutes
// on 2 cores).
func legacyKey() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "etcd=%s\nkubernetes=%s\nkwok=%s\ngo=%s\nplatform=%s/%s\n",
		EtcdVersion, KubernetesVersion, KwokVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if err := hashModuleFiles(h, func(m string) bool { return legacyModules[m] }); err != nil {
		return "", err
	}
	fmt.Fprintf(h, "%s %d\n", podLogsBuildPath, len(podLogsSource))
	h.Write(podLogsSource)
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// EnsureBinaries returns the control-plane binaries, building first the
// groups the cache does not hold for their current key. A group's build
// writes its embedded build module under
// CacheDir/sandbox/build/<module>-<key>, runs `go build` (minutes cold,
// seconds with a warm Go build cache) and moves the result to
// CacheDir/sandbox/bin/<module>-<key> atomically. The binaries of every
// group are then hard-linked (copied on file systems without links) into
// one directory, CacheDir/sandbox/bin/<set key>. File locks let concurrent
// callers (parallel test binaries) share one build.
func EnsureBinaries(ctx context.Context, opts Options) (Binaries, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return Binaries{}, err
	}
	keys := make([]string, len(buildGroups))
	for i, g := range buildGroups {
		if keys[i], err = groupKey(g); err != nil {
			return Binaries{}, err
		}
	}
	key := setKey(keys)
	binRoot := filepath.Join(opts.CacheDir, "sandbox", "bin")
	final := filepath.Join(binRoot, key)
	if complete(final, allBinaries()) {
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
	if complete(final, allBinaries()) { // built by whoever held the lock
		return binariesIn(final), nil
	}
	b := &builder{opts: opts, binRoot: binRoot}
	if err := b.ensureSet(ctx, key, keys, final); err != nil {
		return Binaries{}, err
	}
	return binariesIn(final), nil
}

// builder fills the binary cache of one EnsureBinaries call.
type builder struct {
	opts    Options
	binRoot string
	goBin   string    // found at the first build
	started time.Time // of the first build; zero if nothing was built
}

// ensureSet makes sure every group's directory is complete, then links
// their binaries into final.
func (b *builder) ensureSet(ctx context.Context, key string, keys []string, final string) error {
	m := manifest{Key: key, GoVersion: runtime.Version(), Groups: map[string]string{}, Versions: map[string]string{}, BuildTimes: map[string]string{}}
	dirs := make([]string, len(buildGroups))
	for i, g := range buildGroups {
		dir, gm, err := b.ensureGroup(ctx, g, keys[i])
		if err != nil {
			return err
		}
		dirs[i] = dir
		m.Groups[g.module] = keys[i]
		m.Versions[g.versionName()] = g.version
		maps.Copy(m.BuildTimes, gm.BuildTimes)
	}
	if !b.started.IsZero() {
		fmt.Fprintf(b.opts.Progress, "built all sandbox binaries in %s\n", time.Since(b.started).Round(time.Second))
	}
	tmp, err := os.MkdirTemp(b.binRoot, key+".tmp-")
	if err != nil {
		return fmt.Errorf("ensure binaries: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }() // scratch space; a leftover does no harm
	for i, g := range buildGroups {
		for _, bin := range g.bins {
			if err := linkOrCopy(filepath.Join(dirs[i], bin), filepath.Join(tmp, bin)); err != nil {
				return fmt.Errorf("ensure binaries: %w", err)
			}
		}
	}
	m.BuiltAt = time.Now().UTC()
	return install(tmp, final, m)
}

// ensureGroup returns the directory of g's binaries for key, adopting
// them from a single-key directory or building them when the cache does
// not hold them.
func (b *builder) ensureGroup(ctx context.Context, g buildGroup, key string) (string, manifest, error) {
	name := g.module + "-" + key
	final := filepath.Join(b.binRoot, name)
	if m, ok := groupManifest(final, g); ok {
		return final, m, nil
	}
	unlock, err := lockFile(ctx, filepath.Join(b.binRoot, name+".lock"), b.opts.Progress, "another process is building "+g.what+"; waiting")
	if err != nil {
		return "", manifest{}, fmt.Errorf("ensure binaries: %w", err)
	}
	defer unlock()
	if m, ok := groupManifest(final, g); ok { // built by whoever held the lock
		return final, m, nil
	}
	m := manifest{Key: key, Group: g.module, GoVersion: runtime.Version(), BuildTimes: map[string]string{},
		Versions: map[string]string{g.versionName(): g.version}}
	tmp, err := os.MkdirTemp(b.binRoot, name+".tmp-")
	if err != nil {
		return "", m, fmt.Errorf("ensure binaries: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }() // scratch space; a leftover does no harm
	if from := b.legacyDir(g); from != "" {
		for _, bin := range g.bins {
			if err := linkOrCopy(filepath.Join(from, bin), filepath.Join(tmp, bin)); err != nil {
				return "", m, fmt.Errorf("ensure binaries: %w", err)
			}
		}
		var old manifest
		if raw, err := os.ReadFile(filepath.Join(from, manifestName)); err == nil && json.Unmarshal(raw, &old) == nil {
			for _, bin := range g.bins {
				if d, ok := old.BuildTimes[bin]; ok {
					m.BuildTimes[bin] = d
				}
			}
			m.BuiltAt = old.BuiltAt
		}
		m.AdoptedFrom = from
		fmt.Fprintf(b.opts.Progress, "reusing %s built earlier (%s)\n", g.what, from)
	} else {
		if err := b.build(ctx, g, key, tmp, &m); err != nil {
			return "", m, err
		}
		m.BuiltAt = time.Now().UTC()
	}
	if err := install(tmp, final, m); err != nil {
		return "", m, err
	}
	return final, m, nil
}

// legacyDir returns the complete single-key directory holding g's current
// binaries, or "".
func (b *builder) legacyDir(g buildGroup) string {
	if !legacyModules[g.module] {
		return ""
	}
	key, err := legacyKey()
	if err != nil {
		return ""
	}
	dir := filepath.Join(b.binRoot, key)
	if !complete(dir, []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"}) {
		return ""
	}
	return dir
}

// groupManifest reads the manifest of a complete group directory.
func groupManifest(dir string, g buildGroup) (manifest, bool) {
	if !complete(dir, g.bins) {
		return manifest{}, false
	}
	var m manifest
	raw, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil || json.Unmarshal(raw, &m) != nil {
		return manifest{}, false
	}
	return m, true
}

// complete reports whether dir has a manifest and every binary in bins,
// executable.
func complete(dir string, bins []string) bool {
	if _, err := os.Stat(filepath.Join(dir, manifestName)); err != nil {
		return false
	}
	for _, bin := range bins {
		if fi, err := os.Stat(filepath.Join(dir, bin)); err != nil || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// install writes m into tmp and renames tmp to final.
func install(tmp, final string, m manifest) error {
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, manifestName), mb, 0o644); err != nil {
		return fmt.Errorf("install binaries: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("install binaries: %w", err)
	}
	_ = os.RemoveAll(final) // an incomplete leftover
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("install binaries: %w", err)
	}
	return nil
}

// linkOrCopy hard-links src to dst (no copy of hundreds of megabytes), or
// copies it where links are not possible (another file system).
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }() // read only
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
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

// writeBuildModule writes g's embedded build module (and its extra
// sources) under dir: dir/<module>/go.mod, go.sum, tools.go...
func writeBuildModule(dir string, g buildGroup) error {
	root := "buildmods/" + g.module
	err := fs.WalkDir(buildMods, root, func(path string, d fs.DirEntry, err error) error {
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
	for _, e := range g.extra {
		p := filepath.Join(dir, filepath.FromSlash(e.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, e.data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// build runs `go build` for g into out, recording the time in m.
func (b *builder) build(ctx context.Context, g buildGroup, key, out string, m *manifest) error {
	if b.goBin == "" {
		goBin, err := goCommand()
		if err != nil {
			return err
		}
		b.goBin = goBin
	}
	if b.started.IsZero() {
		b.started = time.Now()
		fmt.Fprintf(b.opts.Progress, "building the sandbox binaries into %s\n", b.binRoot)
	}
	modDir := filepath.Join(b.opts.CacheDir, "sandbox", "build", g.module+"-"+key)
	if err := os.RemoveAll(modDir); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if err := writeBuildModule(modDir, g); err != nil {
		return fmt.Errorf("build: write build module: %w", err)
	}
	logPath := filepath.Join(modDir, "build.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	defer func() { _ = logFile.Close() }() // the build log, for people; the build result does not depend on it

	fmt.Fprintf(b.opts.Progress, "building %s (cold build takes %s on 2 cores; log: %s)...\n", g.what, g.estimate, logPath)
	start := time.Now()
	// One package: -o names the file. Several: -o names a directory and
	// each executable is named after its package.
	target := filepath.Join(out, g.bins[0])
	if len(g.pkgs) > 1 {
		target = out + string(filepath.Separator)
	}
	args := append([]string{"build", "-trimpath", "-o", target}, g.pkgs...)
	cmd := exec.CommandContext(ctx, b.goBin, args...)
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
	for _, bin := range g.bins {
		m.BuildTimes[bin] = d.String()
	}
	fmt.Fprintf(b.opts.Progress, "built in %s\n", d)
	b.opts.Logger.Info("built sandbox binaries", slog.String("binaries", strings.Join(g.bins, ",")), slog.String("took", d.String()))
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
