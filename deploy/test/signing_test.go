package deploytest

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// signingRoles are the roles `kaar keys init` makes a key pair for
// (pkg/svcmain.SigningRoles).
var signingRoles = []string{"planner", "mcpgateway", "notifier", "cli", "executor"}

// wantSigningFiles is what each Deployment may see of the signing Secret:
// the planner, the gateway and the notifier their own private key, the
// executor every public key and its own private key, the watcher nothing.
func wantSigningFiles(svc string) []string {
	switch svc {
	case "planner", "mcpgateway", "notifier":
		return []string{svc + ".key"}
	case "executor":
		files := []string{"executor.key"}
		for _, r := range signingRoles {
			files = append(files, r+".pub")
		}
		slices.Sort(files)
		return files
	}
	return nil
}

// signingMount is the part of the signing Secret a pod template mounts:
// the Secret's name, the volume's mode, the files (item paths, each equal
// to its key) and where they are mounted. A second volume of that Secret,
// a mount that is not read-only or an item renamed fails the test.
type signingMount struct {
	secret, dir string
	mode        int64
	files       []string
}

func signingMountOf(t *testing.T, where string, workload *unstructured.Unstructured, secretName string) (signingMount, bool) {
	t.Helper()
	spec, _, _ := unstructured.NestedMap(workload.Object, "spec", "template", "spec")
	volumes, _ := spec["volumes"].([]any)
	var m signingMount
	volName := ""
	for _, v := range volumes {
		vol := v.(map[string]any)
		name, _, _ := unstructured.NestedString(vol, "secret", "secretName")
		if name != secretName {
			continue
		}
		if volName != "" {
			t.Fatalf("%s: two volumes of Secret %s", where, secretName)
		}
		volName = vol["name"].(string)
		m.secret = name
		m.mode, _, _ = unstructured.NestedInt64(vol, "secret", "defaultMode")
		items, _, _ := unstructured.NestedSlice(vol, "secret", "items")
		if len(items) == 0 {
			t.Fatalf("%s: volume %s mounts the whole Secret %s (no items): every private key", where, volName, name)
		}
		for _, it := range items {
			item := it.(map[string]any)
			if item["key"] != item["path"] {
				t.Errorf("%s: Secret %s key %v mounted as %v: the layout of kaar keys init is <role>.key/<role>.pub", where, name, item["key"], item["path"])
			}
			m.files = append(m.files, item["path"].(string))
		}
		slices.Sort(m.files)
	}
	if volName == "" {
		return m, false
	}
	for _, ci := range spec["containers"].([]any) {
		c := ci.(map[string]any)
		mounts, _ := c["volumeMounts"].([]any)
		for _, mi := range mounts {
			mount := mi.(map[string]any)
			if mount["name"] != volName {
				continue
			}
			if mount["readOnly"] != true {
				t.Errorf("%s: signing keys mounted writable at %v", where, mount["mountPath"])
			}
			if m.dir != "" {
				t.Errorf("%s: signing keys mounted twice", where)
			}
			m.dir = mount["mountPath"].(string)
		}
	}
	if m.dir == "" {
		t.Fatalf("%s: volume %s of Secret %s is not mounted", where, volName, secretName)
	}
	return m, true
}

// TestChartMountsEachServiceOnlyItsSigningKeys: every rendering mounts,
// from the signing Secret, the planner's, the gateway's and the notifier's own private key
// (named by signing.key_file), the executor's public keys of every role
// plus its own private key (as signing.key_dir, whose public keys it
// trusts), and nothing into the watcher or the provision Job; the files
// are readable by the pod's non-root user (group-readable, fsGroup set)
// and by nobody else.
func TestChartMountsEachServiceOnlyItsSigningKeys(t *testing.T) {
	cases := chartCases(t)
	cases = append(cases, chartCase{name: "a signing Secret of another name", args: []string{"--set", withSecrets + ",signing.existingSecret=prod-signing"},
		cluster: "default", natsSecret: "kaar-nats-users", tokenSecret: "kaar-mcp-tokens", tokenKey: "tokens.yaml"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			secret := "kaar-signing-keys"
			if strings.Contains(strings.Join(tc.args, " "), "signing.existingSecret=prod-signing") {
				secret = "prod-signing"
			}
			objs := render(t, "kaar", "kaar-system", tc.args...)
			for _, svc := range chartServices(tc) {
				dep := find(t, objs, "Deployment", "kaar-"+svc)
				cfg, _ := effectiveConfig(t, tc, objs, dep)
				m, mounted := signingMountOf(t, svc, dep, secret)
				want := wantSigningFiles(svc)
				if !slices.Equal(m.files, want) {
					t.Errorf("%s: mounts %v of Secret %s, want exactly %v", svc, m.files, secret, want)
				}
				for _, f := range m.files {
					if strings.HasSuffix(f, ".key") && f != svc+".key" {
						t.Errorf("%s: mounts %s, another role's private key", svc, f)
					}
				}
				switch svc {
				case "watcher":
					if mounted || cfg.Signing.KeyFile != "" || cfg.Signing.KeyDir != "" {
						t.Errorf("watcher: signing mount %v, key_file %q, key_dir %q; it signs nothing", m, cfg.Signing.KeyFile, cfg.Signing.KeyDir)
					}
					continue
				case "executor":
					if cfg.Signing.KeyDir != m.dir || cfg.Signing.KeyFile != "" {
						t.Errorf("executor: signing.key_dir %q key_file %q, want key_dir %q (its mount)", cfg.Signing.KeyDir, cfg.Signing.KeyFile, m.dir)
					}
				default:
					if want := filepath.Join(m.dir, svc+".key"); cfg.Signing.KeyFile != want {
						t.Errorf("%s: signing.key_file %q, want %q (its mount)", svc, cfg.Signing.KeyFile, want)
					}
				}
				if m.mode&0o040 == 0 || m.mode&0o027 != 0 {
					t.Errorf("%s: signing keys mode %#o, want group-read only (0440 or 0400 with fsGroup)", svc, m.mode)
				}
				fsGroup, ok, _ := unstructured.NestedInt64(dep.Object, "spec", "template", "spec", "securityContext", "fsGroup")
				runAsGroup, _, _ := unstructured.NestedInt64(dep.Object, "spec", "template", "spec", "securityContext", "runAsGroup")
				if !ok || fsGroup != runAsGroup {
					t.Errorf("%s: fsGroup %d (set %t), runAsGroup %d: the non-root process could not read its key", svc, fsGroup, ok, runAsGroup)
				}
			}
			if m, mounted := signingMountOf(t, "provision", find(t, objs, "Job", "kaar-provision"), secret); mounted {
				t.Errorf("the provision Job mounts signing keys %v", m.files)
			}
		})
	}
}

// buildServiceBinaries builds kaar, kaar-planner and kaar-executor into
// the test's directory.
func buildServiceBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir, "./cmd/kaar", "./services/planner/cmd/kaar-planner", "./services/executor/cmd/kaar-executor")
	cmd.Dir = repoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return dir
}

// chartLayout copies, from the files `kaar keys init` made (what
// `kubectl create secret generic --from-file` puts in the Secret), the
// items the Deployment of svc mounts into a fresh directory standing for
// its mount (0440 files in a read-only directory, as kubelet makes them),
// and returns the Deployment's environment with the mount path replaced by
// that directory. drop names files to leave out.
func chartLayout(t *testing.T, tc chartCase, objs []*unstructured.Unstructured, svc, secretDir string, drop ...string) []string {
	t.Helper()
	dep := find(t, objs, "Deployment", "kaar-"+svc)
	m, ok := signingMountOf(t, svc, dep, "kaar-signing-keys")
	if !ok {
		t.Fatalf("%s mounts no signing keys", svc)
	}
	dir := t.TempDir()
	for _, f := range m.files {
		if slices.Contains(drop, f) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(secretDir, f))
		if err != nil {
			t.Fatalf("%s mounts %s, which kaar keys init does not make: %v", svc, f, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, os.FileMode(m.mode)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	spec, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	env := resolveEnv(t, svc, spec["containers"].([]any)[0].(map[string]any), chartSecrets(tc))
	for i, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(v, m.dir) {
			env[i] = k + "=" + dir + strings.TrimPrefix(v, m.dir)
		}
	}
	return env
}

// startService runs a kaar-<svc> binary with env and the chart's
// config.yaml against natsURL and the sandbox, and waits until it logs
// "service running" (true) or exits (false); out is its output so far.
// The process is stopped at the end of the test.
func startService(t *testing.T, bin, configFile, natsURL, kubeconfig string, env []string) (running bool, out *syncBuffer) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(bin, "--config", configFile, "--nats-url", natsURL, "--kubeconfig", kubeconfig)
	// No signing key anywhere but the mount: an empty home and state
	// directory, where a fallback would create one (and the test sees it).
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_STATE_HOME=" + filepath.Join(home, "state")}, env...)
	cmd.Env = append(cmd.Env, "KAAR_SERVER_METRICS_ADDR=127.0.0.1:0", "KAAR_SERVER_LOG_FORMAT=text")
	out = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if entries, _ := os.ReadDir(filepath.Join(home, "state", "kaar", "keys")); len(entries) > 0 {
			t.Errorf("%s created signing keys outside its mount: %v\n%s", filepath.Base(bin), entries, out.String())
		}
	})
	deadline := time.NewTimer(90 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			return false, out
		case <-tick.C:
			if strings.Contains(out.String(), "service running") {
				return true, out
			}
		case <-deadline.C:
			t.Fatalf("%s neither started nor exited in 90s:\n%s", filepath.Base(bin), out.String())
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSigningKeysAsMountedStartThePlannerAndTheExecutor runs the real
// kaar-planner and kaar-executor binaries as processes with the keys laid
// out exactly as the chart mounts them (files of `kaar keys init`, only
// each Deployment's items, in a read-only directory, with the
// Deployment's own environment), and the executor as docker-compose.yaml
// mounts its demo keys: they start without creating a key, and the
// executor trusts the planner's public key from its mount. Without
// the .pub files the executor refuses to start, naming the missing
// planner key: the mount is what makes it work.
func TestSigningKeysAsMountedStartThePlannerAndTheExecutor(t *testing.T) {
	sandbox.SkipShort(t, "it builds and runs the service binaries")
	t.Parallel()
	bin := buildServiceBinaries(t)
	c := sandbox.ForTest(t)
	kubeconfig, err := c.KubeconfigFor(sandbox.AdminUser)
	if err != nil {
		t.Fatal(err)
	}
	// The Secret's content: kaar keys init into ./kaar-keys.
	secretDir := filepath.Join(t.TempDir(), "kaar-keys")
	initCmd := exec.Command(filepath.Join(bin, "kaar"), "keys", "init")
	initCmd.Env = []string{"HOME=" + t.TempDir(), "KAAR_SIGNING_KEY_DIR=" + secretDir}
	initOut, err := initCmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kaar keys init: %v\n%s", err, initOut)
	}
	plannerPub, err := os.ReadFile(filepath.Join(secretDir, "planner.pub"))
	if err != nil {
		t.Fatalf("kaar keys init made no planner.pub: %v\n%s", err, initOut)
	}

	// The chart's NATS without authentication (an external server with
	// nats.auth.enabled=false), provisioned as kaar bus provision does.
	tc := chartCases(t)[2]
	if tc.natsSecret != "" {
		t.Fatalf("case %q has NATS auth; this test runs NATS without it", tc.name)
	}
	objs := render(t, "kaar", "kaar-system", tc.args...)
	cfgYAML, _, _ := unstructured.NestedString(find(t, objs, "ConfigMap", "kaar-config").Object, "data", "config.yaml")
	configFile := writeTemp(t, "config.yaml", cfgYAML)
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	provisionAs(t, nc, tc.cluster)

	t.Run("planner with planner.key only", func(t *testing.T) {
		env := chartLayout(t, tc, objs, "planner", secretDir)
		running, out := startService(t, filepath.Join(bin, "kaar-planner"), configFile, ns.ClientURL(), kubeconfig, env)
		if !running {
			t.Fatalf("kaar-planner did not start with its mounted key:\n%s", out.String())
		}
	})
	t.Run("executor with every .pub and executor.key", func(t *testing.T) {
		env := chartLayout(t, tc, objs, "executor", secretDir)
		running, out := startService(t, filepath.Join(bin, "kaar-executor"), configFile, ns.ClientURL(), kubeconfig, env)
		if !running {
			t.Fatalf("kaar-executor did not start with the chart's mount:\n%s", out.String())
		}
		// What it trusts is what it reads from the mount: the planner's
		// public key (the executor's own lookup, run on the same files).
		show := exec.Command(filepath.Join(bin, "kaar"), "keys", "show")
		show.Env = append([]string{"HOME=" + t.TempDir()}, env...)
		b, err := show.CombinedOutput()
		if err != nil {
			t.Fatalf("kaar keys show on the executor's mount: %v\n%s", err, b)
		}
		if !strings.Contains(string(b), strings.TrimSpace(string(plannerPub))) {
			t.Errorf("the executor's mount does not show the planner key %s:\n%s", plannerPub, b)
		}
	})
	t.Run("compose executor with its secrets", func(t *testing.T) {
		p := loadCompose(t)
		provisionAs(t, nc, composeConfig(t, p, "executor").Kubernetes.ClusterName)
		env := composeLayout(t, p, "executor")
		running, out := startService(t, filepath.Join(bin, "kaar-executor"), p.Configs["kaar-config"].File, ns.ClientURL(), kubeconfig, env)
		if !running {
			t.Fatalf("the compose kaar-executor did not start with its secrets:\n%s", out.String())
		}
	})
	t.Run("executor without the .pub files", func(t *testing.T) {
		var pubs []string
		for _, r := range signingRoles {
			pubs = append(pubs, r+".pub")
		}
		env := chartLayout(t, tc, objs, "executor", secretDir, pubs...)
		running, out := startService(t, filepath.Join(bin, "kaar-executor"), configFile, ns.ClientURL(), kubeconfig, env)
		if running || !strings.Contains(out.String(), "no planner key") {
			t.Fatalf("kaar-executor without planner.pub: running=%t, want a refusal naming the missing planner key:\n%s", running, out.String())
		}
	})
}

// composeSigningDir is where docker-compose.yaml mounts the signing keys.
const composeSigningDir = "/run/secrets/kaar-keys"

// composeSigningFiles are the signing key secrets of a compose service:
// file name under composeSigningDir -> the file on the host.
func composeSigningFiles(t *testing.T, p *types.Project, svc string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, sec := range p.Services[svc].Secrets {
		src := p.Secrets[sec.Source].File
		inDir := strings.HasPrefix(sec.Target, composeSigningDir+"/")
		fromKeys := filepath.Dir(src) == filepath.Join(repoRoot(t), "deploy", "compose", "demo-secrets", "signing-keys")
		if inDir != fromKeys {
			t.Errorf("%s: secret %s (%s) mounted at %q: signing keys belong at %s and nothing else there", svc, sec.Source, src, sec.Target, composeSigningDir)
		}
		if !inDir {
			continue
		}
		if base := filepath.Base(sec.Target); base != filepath.Base(src) {
			t.Errorf("%s: %s mounted as %s: the layout of kaar keys init is <role>.key/<role>.pub", svc, src, base)
		}
		files[filepath.Base(sec.Target)] = src
	}
	return files
}

// TestComposeMountsEachServiceOnlyItsSigningKeys: docker-compose.yaml
// mounts the demo signing keys as the chart does: the planner and the
// gateway their own private key (signing.key_file), the executor every
// public key plus its own private key (signing.key_dir), the watcher and
// the provision job nothing.
func TestComposeMountsEachServiceOnlyItsSigningKeys(t *testing.T) {
	p := loadCompose(t)
	for _, svc := range append(slices.Clone(composeServices), "provision") {
		files := composeSigningFiles(t, p, svc)
		got := slices.Sorted(maps.Keys(files))
		if want := wantSigningFiles(svc); !slices.Equal(got, want) {
			t.Errorf("%s: mounts signing files %v, want exactly %v", svc, got, want)
		}
		if svc == "provision" {
			continue
		}
		cfg := composeConfig(t, p, svc)
		switch svc {
		case "watcher":
			if cfg.Signing.KeyFile != "" || cfg.Signing.KeyDir != "" {
				t.Errorf("watcher: key_file %q key_dir %q; it signs nothing", cfg.Signing.KeyFile, cfg.Signing.KeyDir)
			}
		case "executor":
			if cfg.Signing.KeyDir != composeSigningDir || cfg.Signing.KeyFile != "" {
				t.Errorf("executor: key_dir %q key_file %q, want key_dir %s", cfg.Signing.KeyDir, cfg.Signing.KeyFile, composeSigningDir)
			}
		default:
			if want := composeSigningDir + "/" + svc + ".key"; cfg.Signing.KeyFile != want {
				t.Errorf("%s: key_file %q, want %q", svc, cfg.Signing.KeyFile, want)
			}
		}
	}
}

// composeLayout copies a compose service's signing secrets into a
// directory standing for /run/secrets/kaar-keys and returns its
// environment with that path replaced.
func composeLayout(t *testing.T, p *types.Project, svc string) []string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range composeSigningFiles(t, p, svc) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	var env []string
	for k, v := range p.Services[svc].Environment {
		if v == nil {
			continue
		}
		val := *v
		if strings.HasPrefix(val, composeSigningDir) {
			val = dir + strings.TrimPrefix(val, composeSigningDir)
		}
		env = append(env, k+"="+val)
	}
	return env
}
