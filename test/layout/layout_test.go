// Package layout holds the tests of the tree's shape: what may import
// what, and that a user's ordinary install of kaar works.
package layout

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const module = "github.com/kaar-dev/kaar"

// repoRoot is the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// list is `go list -deps=false -json` of the patterns.
func list(t *testing.T, patterns ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, patterns...)...)
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", patterns, err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// service is the service a package belongs to ("watcher" for
// .../services/watcher/cmd/kaar-watcher), or "".
func service(importPath string) string {
	rest, ok := strings.CutPrefix(importPath, module+"/services/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// TestServicesNeverImportEachOther: the services talk over the bus only;
// what they share lives in pkg/.
func TestServicesNeverImportEachOther(t *testing.T) {
	t.Parallel()
	pkgs := list(t, "./services/...")
	if len(pkgs) < 5 {
		t.Fatalf("go list ./services/... found %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		own := service(p.ImportPath)
		for _, imp := range p.Imports {
			if other := service(imp); other != "" && other != own {
				t.Errorf("%s imports %s: services talk over the bus, never through each other's code", p.ImportPath, imp)
			}
		}
	}
}

// TestNoKubernetesClientWhereNoCredentials: the gateway and the notifier
// hold no cluster credentials, and their binaries link no Kubernetes
// client; neither do the composition root and the bus contract that
// third-party subscribers import.
func TestNoKubernetesClientWhereNoCredentials(t *testing.T) {
	t.Parallel()
	for _, p := range []string{
		"./services/mcpgateway/cmd/kaar-mcpgateway",
		"./services/notifier/cmd/kaar-notifier",
		"./pkg/svcmain",
		"./pkg/events/...",
		"./pkg/bus",
	} {
		for _, lp := range list(t, p) {
			deps := append(slices.Clone(lp.Deps), lp.Imports...)
			for _, d := range deps {
				if strings.HasPrefix(d, "k8s.io/client-go") {
					t.Errorf("%s links %s", lp.ImportPath, d)
					break
				}
			}
		}
	}
	// The check itself can fail: the watcher does link a client.
	var found bool
	for _, lp := range list(t, "./services/watcher/cmd/kaar-watcher") {
		found = slices.ContainsFunc(lp.Deps, func(d string) bool { return strings.HasPrefix(d, "k8s.io/client-go") })
	}
	if !found {
		t.Error("kaar-watcher does not link k8s.io/client-go: go list -json no longer reports Deps as this test expects")
	}
}

// TestEventsIsASmallContract: pkg/events, what a third-party subscriber
// imports, needs only the standard library and google/uuid.
func TestEventsIsASmallContract(t *testing.T) {
	t.Parallel()
	for _, p := range list(t, "./pkg/events/...") {
		for _, d := range p.Deps {
			std := !strings.Contains(strings.SplitN(d, "/", 2)[0], ".")
			if std || strings.HasPrefix(d, module+"/pkg/events") || d == "github.com/google/uuid" {
				continue
			}
			t.Errorf("%s depends on %s: the bus contract must stay importable without kaar's other dependencies", p.ImportPath, d)
		}
	}
}

// TestEveryServiceBinaryIsTheComposedService: each kaar-<service> main
// is svcmain.Main(<service>.Spec()) and nothing else, so that it cannot
// drift from "kaar <service>" (same flags, defaults, clusters).
func TestEveryServiceBinaryIsTheComposedService(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	mains, err := filepath.Glob(filepath.Join(root, "services", "*", "cmd", "kaar-*", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, m := range mains {
		name := strings.TrimPrefix(filepath.Base(filepath.Dir(m)), "kaar-")
		if name == "watcher-bench" {
			continue
		}
		seen = append(seen, name)
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("func main() { svcmain.Main(%s.Spec()) }", name)
		if !strings.Contains(string(b), want) {
			t.Errorf("%s: main is not %q", m, want)
		}
	}
	slices.Sort(seen)
	if want := []string{"executor", "mcpgateway", "notifier", "planner", "watcher"}; !slices.Equal(seen, want) {
		t.Errorf("service binaries %v, want %v", seen, want)
	}
}

// TestServicesDoNotTagTheirOwnLogs: svcmain, the composition root,
// gives each service a logger tagged with service and cluster; a service
// that adds either again makes every line carry the key twice (slog does
// not merge attributes; a JSON log then has duplicate keys).
func TestServicesDoNotTagTheirOwnLogs(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "services", "*", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, tag := range []string{`slog.String("service"`, `slog.String("cluster"`, `slog.String("component"`} {
				if strings.Contains(line, tag) {
					rel, _ := filepath.Rel(root, f)
					t.Errorf("%s:%d: %s: svcmain tags a service's logger already", rel, i+1, tag)
				}
			}
		}
	}
	if len(files) < 50 {
		t.Errorf("read %d service files; the glob found too few", len(files))
	}
}

// TestGoInstallFromAModuleProxy: a user's ordinary install,
// `go install github.com/kaar-dev/kaar/cmd/kaar@version`, refuses a main
// module with replace directives; it works from a module proxy holding
// the tree as a release would.
func TestGoInstallFromAModuleProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kaar from a module zip (about a minute); run without -short")
	}
	t.Parallel()
	root := repoRoot(t)
	const version = "v0.0.1-test"
	proxy := t.TempDir()
	dir := filepath.Join(proxy, module, "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(gomod, []byte("\nreplace")) {
		t.Fatal("go.mod has replace directives: go install module@version refuses them")
	}
	var zbuf bytes.Buffer
	writeModuleZip(t, &zbuf, root, module+"@"+version)
	info := fmt.Sprintf(`{"Version":%q,"Time":%q}`, version, time.Now().UTC().Format(time.RFC3339))
	for name, data := range map[string][]byte{"list": []byte(version + "\n"), version + ".info": []byte(info), version + ".mod": gomod, version + ".zip": zbuf.Bytes()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gobin := t.TempDir()
	upstream, _ := exec.Command("go", "env", "GOPROXY").Output()
	cmd := exec.Command("go", "install", module+"/cmd/kaar@"+version)
	cmd.Dir = t.TempDir() // outside the repository: no go.work, no go.mod
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOWORK=off", "GOFLAGS=-mod=mod",
		"GOPROXY=file://"+filepath.ToSlash(proxy)+","+strings.TrimSpace(string(upstream)),
		"GONOSUMDB="+module, "GOPRIVATE=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s/cmd/kaar@%s: %v\n%s", module, version, err, out)
	}
	out, err := exec.Command(filepath.Join(gobin, "kaar"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "kaar ") {
		t.Fatalf("installed kaar version: %v %q", err, out)
	}
}

// writeModuleZip writes the module zip of the files git knows or would add
// (git ls-files --cached --others --exclude-standard), as they are in the
// working tree, under the prefix module@version/.
func writeModuleZip(t *testing.T, w *bytes.Buffer, root, prefix string) {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	zw := zip.NewWriter(w)
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		data, err := os.ReadFile(filepath.Join(root, f))
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		fw, err := zw.Create(prefix + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}
