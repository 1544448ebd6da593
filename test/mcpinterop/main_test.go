package mcpinterop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/sandbox"
)

func TestMain(m *testing.M) { os.Exit(sandbox.RunTests(m)) }

// repoRoot is the kaar repository (the directory holding go.work).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root: no go.work in %s: %v", root, err)
	}
	return root
}

var tools struct {
	once sync.Once
	bin  string // the directory holding node, conformance, inspector
	err  error
}

// mcpTools runs hack/mcp-tools.sh (a no-op once the pinned versions are
// installed) and returns its bin directory. Without the tools the test
// fails: it never passes without having run the peers.
func mcpTools(t testing.TB) string {
	t.Helper()
	sandbox.SkipShort(t, "it needs the MCP peers from the npm registry (Node.js, conformance suite, Inspector)")
	root := repoRoot(t)
	tools.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, filepath.Join(root, "hack", "mcp-tools.sh")).CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err != nil {
			tools.err = fmt.Errorf("hack/mcp-tools.sh: %v\n%s", err, out)
			return
		}
		tools.bin = lines[len(lines)-1]
		for _, name := range []string{"node", "conformance", "inspector"} {
			if _, err := os.Stat(filepath.Join(tools.bin, name)); err != nil {
				tools.err = fmt.Errorf("hack/mcp-tools.sh did not install %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if tools.err != nil {
		t.Fatalf("installing the MCP peers (Node.js 22, conformance suite, Inspector) from the npm registry: %v", tools.err)
	}
	return tools.bin
}

var kaar struct {
	once sync.Once
	bin  string
	err  error
}

// kaarBinary builds kaar from the repository root (go build ./cmd/kaar,
// with -race when the tests run with -race) into .cache/mcpinterop/bin, a
// directory holding only kaar, so that it can be put first on PATH for
// commands that name "kaar" as the client snippets do.
func kaarBinary(t testing.TB) string {
	t.Helper()
	sandbox.SkipShort(t, "it builds the kaar binary")
	root := repoRoot(t)
	kaar.once.Do(func() {
		dir := filepath.Join(root, ".cache", "mcpinterop", "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			kaar.err = err
			return
		}
		bin := filepath.Join(dir, "kaar")
		args := []string{"build", "-o", bin}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/kaar")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			kaar.err = fmt.Errorf("go build ./cmd/kaar: %v\n%s", err, out)
			return
		}
		kaar.bin = bin
	})
	if kaar.err != nil {
		t.Fatal(kaar.err)
	}
	return kaar.bin
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serveOptions configure one "kaar serve".
type serveOptions struct {
	cluster    string // kubernetes.cluster_name; "" is "default"
	natsListen string // --nats-listen; "" is 127.0.0.1:0
	extraYAML  string // appended to the config file (top-level sections)
}

// served is one running "kaar serve" process.
type served struct {
	base      string // http://127.0.0.1:port
	mcpURL    string // the streamable HTTP endpoint printed in the banner
	stdioLine string // the stdio command line printed in the banner
	natsURL   string
	cluster   string
	ns        string
	stdout    *lockedBuffer
	stderr    *lockedBuffer
}

var (
	bannerHTTPRE  = regexp.MustCompile(`MCP \(streamable HTTP\):\s+(\S+)`)
	bannerStdioRE = regexp.MustCompile(`MCP \(stdio\):\s+(kaar mcp .*\S)`)
	bannerNATSRE  = regexp.MustCompile(`--nats-url (nats://\S+)`)
)

// startServe runs "kaar serve --config F --nats-listen ... --no-sandbox" as
// a process against the sandbox, watching namespace ns, waits for its
// banner and for /health to answer 200, and stops it (SIGTERM) when the
// test ends.
func startServe(t *testing.T, c *sandbox.Cluster, ns string, o serveOptions) *served {
	t.Helper()
	bin := kaarBinary(t)
	if o.cluster == "" {
		o.cluster = "default"
	}
	if o.natsListen == "" {
		o.natsListen = "127.0.0.1:0"
	}
	port := freePort(t)
	cfg := fmt.Sprintf(`server:
  host: 127.0.0.1
  port: %d
  log_level: info
kubernetes:
  kubeconfig: %s
  namespace: %s
  cluster_name: %s
nats:
  store_dir: %s
%s
`, port, c.KubeconfigPath, ns, o.cluster, t.TempDir(), o.extraYAML)
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &served{base: fmt.Sprintf("http://127.0.0.1:%d", port), cluster: o.cluster, ns: ns, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	cmd := exec.Command(bin, "serve", "--config", cfgFile, "--nats-listen", o.natsListen, "--no-sandbox")
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kaar serve: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("kaar serve exited with %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("kaar serve did not stop within 30s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("kaar serve stdout:\n%s\nkaar serve stderr (last lines):\n%s", s.stdout.String(), tail(s.stderr.String(), 60))
		}
	})

	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("kaar serve exited early (%v):\n%s\n%s", err, s.stdout.String(), tail(s.stderr.String(), 60))
		default:
		}
		if s.stdioLine == "" {
			out := s.stdout.String()
			if m := bannerStdioRE.FindStringSubmatch(out); m != nil {
				s.stdioLine = m[1]
				if m := bannerHTTPRE.FindStringSubmatch(out); m != nil {
					s.mcpURL = m[1]
				}
				if m := bannerNATSRE.FindStringSubmatch(s.stdioLine); m != nil {
					s.natsURL = m[1]
				}
			}
		}
		if s.stdioLine != "" && healthy(s.base) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kaar serve did not print its banner and answer /health within 90s:\n%s\n%s", s.stdout.String(), tail(s.stderr.String(), 60))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s.mcpURL != s.base+"/mcp" || s.natsURL == "" {
		t.Fatalf("kaar serve's banner: MCP URL %q (want %s/mcp), NATS URL %q:\n%s", s.mcpURL, s.base, s.natsURL, s.stdout.String())
	}
	return s
}

func healthy(base string) bool {
	resp, err := http.Get(base + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// restCall invokes a tool through kaar's REST API (used only to wait for
// the cluster state the peers then read over MCP).
func restCall(base, tool string, args any) (map[string]any, error) {
	body, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	resp, err := http.Post(base+"/mcp/v1/invoke/"+tool, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Result map[string]any `json:"result"`
		Error  string         `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("%s: HTTP %d: %v", tool, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d: %s", tool, resp.StatusCode, out.Error)
	}
	return out.Result, nil
}

// inspectorRun is one run of the MCP Inspector CLI.
type inspectorRun struct {
	args           []string
	stdout, stderr string
	err            error
}

func (r inspectorRun) String() string {
	return fmt.Sprintf("inspector --cli %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.err, tail(r.stdout, 40), tail(r.stderr, 40))
}

// result decodes the "result" of --format json output.
func (r inspectorRun) result(t *testing.T, v any) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%s", r)
	}
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &env); err != nil || len(env.Result) == 0 {
		t.Fatalf("no JSON result (%v): %s", err, r)
	}
	if err := json.Unmarshal(env.Result, v); err != nil {
		t.Fatalf("decode the result: %v: %s", err, r)
	}
}

// inspector runs "inspector --cli args..." with a private HOME (the
// Inspector keeps a catalog and OAuth state there) and PATH headed by
// pathFirst (where the stdio command's "kaar" is found).
func inspector(t *testing.T, pathFirst string, args ...string) inspectorRun {
	t.Helper()
	bin := mcpTools(t)
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The private HOME is the Inspector's own; a server it spawns gets a
	// filtered environment with that HOME. A real client spawns kaar with
	// the user's HOME, where kaar serve keeps the bus credentials: point
	// the spawned kaar at the user's state directory (-e), as that would.
	state := os.Getenv("XDG_STATE_HOME")
	if state == "" {
		userHome, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		state = filepath.Join(userHome, ".local", "state")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "inspector"), append([]string{"--cli", "-e", "XDG_STATE_HOME=" + state}, args...)...)
	path := os.Getenv("PATH")
	if pathFirst != "" {
		path = pathFirst + string(os.PathListSeparator) + path
	}
	cmd.Env = append(os.Environ(), "HOME="+home, "PATH="+path,
		"MCP_CATALOG_PATH="+filepath.Join(home, "mcp.json"),
		"MCP_CLIENT_CONFIG_PATH="+filepath.Join(home, "client.json"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, fmt.Errorf("timed out after 2m"))
	}
	return inspectorRun{args: args, stdout: stdout.String(), stderr: stderr.String(), err: err}
}
