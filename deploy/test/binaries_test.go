package deploytest

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kaar-dev/kaar/pkg/sandbox"
)

// binaries are what the Dockerfile's image holds, with a phrase each one's
// --help prints.
var binaries = map[string]string{
	"kaar":            "kaar serve",
	"kaar-watcher":    "-nats-url",
	"kaar-planner":    "-nats-url",
	"kaar-executor":   "-nats-url",
	"kaar-mcpgateway": "-stdio",
	"kaar-notifier":   "-nats-url",
}

// TestDockerfileBinariesAreStaticAndRun runs the build script whose output
// the kaar image holds (deploy/hack/build-binaries.sh, CGO_ENABLED=0, run by
// deploy/hack/build-images.sh), as plain processes, and checks each binary
// is statically linked (no interpreter, no shared libraries: it runs FROM
// scratch) and answers --help. compose_e2e_test.go runs the images.
func TestDockerfileBinariesAreStaticAndRun(t *testing.T) {
	sandbox.SkipShort(t, "it builds every binary of the image with deploy/hack/build-binaries.sh")
	t.Parallel()
	root := repoRoot(t)
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nFROM scratch\n", "\nCOPY bin/ /usr/local/bin/\n", "\nUSER 65532:65532\n"} {
		if !bytes.Contains(dockerfile, []byte(want)) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// No base image to pull, no build step inside Docker: the binaries are
	// built here (deploy/hack/build-images.sh runs build-binaries.sh).
	if n := bytes.Count(dockerfile, []byte("\nFROM ")); n != 1 || bytes.Contains(dockerfile, []byte("\nRUN ")) {
		t.Errorf("Dockerfile has %d FROM lines or a RUN: want FROM scratch alone, no RUN", n)
	}
	script, err := os.ReadFile(filepath.Join(root, "deploy", "hack", "build-images.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(script, []byte(`./deploy/hack/build-binaries.sh "$out/kaar/bin"`)) {
		t.Error("deploy/hack/build-images.sh does not build the kaar image's binaries with build-binaries.sh")
	}
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "deploy", "hack", "build-binaries.sh"), out, "v0.0.0-test")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build-binaries.sh: %v\n%s", err, b)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(binaries) {
		t.Errorf("built %d files, want %d", len(entries), len(binaries))
	}
	for name, phrase := range binaries {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(out, name)
			f, err := elf.Open(path)
			if err != nil {
				t.Fatalf("not an ELF binary: %v", err)
			}
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Error("has a program interpreter: dynamically linked")
				}
			}
			if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
				t.Errorf("links shared libraries %v", libs)
			}
			// An empty environment and working directory, as in the image.
			help := exec.Command(path, "--help")
			help.Env, help.Dir = []string{}, t.TempDir()
			b, err := help.CombinedOutput()
			if err != nil {
				t.Fatalf("%s --help: %v\n%s", name, err, b)
			}
			if !strings.Contains(string(b), phrase) {
				t.Errorf("%s --help does not mention %q:\n%s", name, phrase, b)
			}
			// kaar-<service> and "kaar <service>" are one command under
			// two names: the same flags.
			if svc, ok := strings.CutPrefix(name, "kaar-"); ok {
				same := exec.Command(filepath.Join(out, "kaar"), svc, "--help")
				same.Env, same.Dir = []string{}, t.TempDir()
				sb, err := same.CombinedOutput()
				if err != nil {
					t.Fatalf("kaar %s --help: %v\n%s", svc, err, sb)
				}
				if got, want := flagNames(b), flagNames(sb); !slices.Equal(got, want) || len(got) < 3 {
					t.Errorf("%s flags %v, kaar %s flags %v: want the same", name, got, svc, want)
				}
			}
		})
	}
	v := exec.Command(filepath.Join(out, "kaar"), "version")
	if b, err := v.CombinedOutput(); err != nil || !strings.Contains(string(b), "v0.0.0-test") {
		t.Errorf("kaar version = %q (%v), want the version stamped by the build", b, err)
	}
}

// flagNames are the flags a --help lists ("  -name value" lines).
func flagNames(help []byte) []string {
	var names []string
	for _, line := range strings.Split(string(help), "\n") {
		if rest, ok := strings.CutPrefix(line, "  -"); ok {
			names = append(names, strings.Fields(rest)[0])
		}
	}
	return names
}
