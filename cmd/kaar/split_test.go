package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/sandbox"
)

// builtKaar is the kaar binary, built once per test binary run for every
// test that runs it as a process (removed by TestMain).
var builtKaar struct {
	once sync.Once
	dir  string
	bin  string
	err  error
	out  []byte
}

// buildKaar builds the kaar binary once per test binary run and returns
// its path. It skips the test under -short.
func buildKaar(t testing.TB) string {
	t.Helper()
	sandbox.SkipShort(t, "it builds the kaar binary")
	builtKaar.once.Do(func() {
		if builtKaar.dir, builtKaar.err = os.MkdirTemp("", "kaar-e2e-bin-"); builtKaar.err != nil {
			return
		}
		builtKaar.bin = filepath.Join(builtKaar.dir, "kaar")
		cmd := exec.Command("go", "build", "-race", "-o", builtKaar.bin, ".")
		builtKaar.out, builtKaar.err = cmd.CombinedOutput()
	})
	if builtKaar.err != nil {
		t.Fatalf("go build kaar: %v\n%s", builtKaar.err, builtKaar.out)
	}
	return builtKaar.bin
}

func removeBuiltKaar() {
	if builtKaar.dir != "" {
		_ = os.RemoveAll(builtKaar.dir)
	}
}

// startProcess starts a kaar process and stops it (SIGTERM, then SIGKILL)
// when the test ends; its output is logged if the test failed.
func startProcess(t *testing.T, bin string, args ...string) (*exec.Cmd, *testutil.Buffer) {
	t.Helper()
	var out testutil.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s %v: %v", bin, args, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil && !t.Failed() {
				t.Errorf("kaar %s exited with %v:\n%s", args[0], err, tail(out.String(), 50))
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("kaar %s did not stop within 30s of SIGTERM", args[0])
		}
		if t.Failed() {
			t.Logf("kaar %s output:\n%s", args[0], tail(out.String(), 80))
		}
	})
	return cmd, &out
}

var natsURLRE = regexp.MustCompile(`listening on (nats://\S+)`)

// TestCaseStudySplitProcesses: the same case study with a separate NATS
// server process and the four services as separate processes, talking
// only over NATS.
func TestCaseStudySplitProcesses(t *testing.T) {
	parallel(t)
	c := sandbox.ForTest(t)
	ns := sandbox.NewNamespace(t, c.Clientset())
	applyCaseStudy(t, c, ns)
	bin := buildKaar(t)

	port := testutil.FreePort(t)
	cluster := "split-" + strings.ReplaceAll(ns[len(ns)-5:], "-", "")
	cfg := writeConfig(t, c, ns, cluster, port, "")

	natsCmd, natsOut := startProcess(t, bin, "nats", "--listen", "127.0.0.1:0", "--store-dir", t.TempDir(), "--cluster-name", cluster)
	var natsURL string
	deadline := time.Now().Add(30 * time.Second)
	for natsURL == "" && time.Now().Before(deadline) {
		if m := natsURLRE.FindStringSubmatch(natsOut.String()); m != nil {
			natsURL = m[1]
		}
		time.Sleep(100 * time.Millisecond)
	}
	if natsURL == "" {
		t.Fatalf("kaar nats did not print its URL:\n%s", natsOut.String())
	}
	t.Logf("NATS server process %d at %s", natsCmd.Process.Pid, natsURL)

	// A split deployment creates its signing keys once, before the
	// services (each service creates only its own key when missing).
	if out, err := exec.Command(bin, "keys", "init", "--config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("kaar keys init: %v\n%s", err, out)
	}
	pids := map[string]int{}
	for _, svc := range []string{"watcher", "planner", "executor", "mcpgateway"} {
		cmd, _ := startProcess(t, bin, svc, "--config", cfg, "--nats-url", natsURL)
		pids[svc] = cmd.Process.Pid
	}
	t.Logf("service processes: %v", pids)
	inst := &instance{base: "http://127.0.0.1:" + strconv.Itoa(port), ns: ns, cluster: cluster, kube: c.Clientset()}
	waitHealthy(t, inst, nil, natsOut)
	runCaseStudy(t, newMCPCaller(t, inst, ""), inst)
}

// TestHelpIsReadable: every command answers --help with its usage.
func TestHelpIsReadable(t *testing.T) {
	parallel(t)
	bin := buildKaar(t)
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"watcher", "--help"}, {"mcp", "--help"}, {"nats", "--help"}, {"sandbox", "--help"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("kaar %v: %v\n%s", args, err, out)
			continue
		}
		if !strings.Contains(string(out), "Usage") && !strings.Contains(string(out), "kaar") {
			t.Errorf("kaar %v printed no usage:\n%s", args, out)
		}
	}
	out, err := exec.Command(bin, "serve", "--bogus").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bogus") {
		t.Errorf("kaar serve --bogus: want an error naming the flag, got %v:\n%s", err, out)
	}
	badCfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(badCfg, []byte("server:\n  prot: 8080\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "serve", "--config", badCfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `"server.prot"`) {
		t.Errorf("kaar serve with an unknown config key: want an error naming server.prot, got %v:\n%s", err, out)
	}
}

// TestStdioJoinsServe: an MCP client that spawns "kaar mcp --stdio" (the
// command line kaar serve prints) reaches the running pipeline over its bus.
func TestStdioJoinsServe(t *testing.T) {
	parallel(t)
	c := sandbox.ForTest(t)
	cs := c.Clientset()
	ns := sandbox.NewNamespace(t, cs)
	breakDeployment(t, cs, ns, "web")
	inst := startServe(t, c, ns, "")
	bin := buildKaar(t)
	// The line exactly as printed: it names the bus and the cluster.
	m := regexp.MustCompile(`MCP \(stdio\): +kaar (mcp --stdio .*)`).FindStringSubmatch(inst.output.String())
	if m == nil {
		t.Fatalf("kaar serve did not print the stdio command line:\n%s", inst.output.String())
	}
	cmd := exec.Command(bin, strings.Fields(m[1])...)
	var stderr testutil.Buffer
	cmd.Stderr = &stderr
	cl := sdk.NewClient(&sdk.Implementation{Name: "kaar-e2e-stdio", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	session, err := cl.Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect over stdio: %v\nstderr:\n%s", err, stderr.String())
	}
	defer session.Close()
	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, tl := range tools.Tools {
		names[tl.Name] = true
	}
	for _, want := range []string{"analyze_cluster", "generate_remediation_plan", "approve_remediation_plan", "remediate_issue", "test"} {
		if !names[want] {
			t.Errorf("stdio tools/list lacks %s: %v", want, names)
		}
	}
	got := waitIncidents(t, &mcpCaller{cs: session}, ns, 2*time.Minute, "the ImagePullBackOff incident over stdio", func(a analyzeOut) bool {
		return a.ByType["ImagePullBackOff"] == 1
	})
	if len(got.Incidents) != 1 || got.Incidents[0].OwnerName != "web" {
		t.Errorf("analyze over stdio: %+v", got)
	}
}
