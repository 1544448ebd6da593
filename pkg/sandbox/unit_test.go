package sandbox

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
)

func TestPickPortsAreDistinctAndFree(t *testing.T) {
	ports, err := pickPorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("port %d invalid or repeated in %v", p, ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d was not released: %v", p, err)
		}
		l.Close()
	}
}

func TestRenderKubeconfigHasOneContextPerUser(t *testing.T) {
	users := newUsers()
	b, err := renderKubeconfig("https://127.0.0.1:6443", []byte("CA"), users, AdminUser)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CurrentContext != AdminUser {
		t.Errorf("current context %q, want %q", cfg.CurrentContext, AdminUser)
	}
	if got := cfg.Clusters[clusterName]; got == nil || got.Server != "https://127.0.0.1:6443" || string(got.CertificateAuthorityData) != "CA" {
		t.Errorf("cluster %+v", got)
	}
	for _, u := range users {
		ctx := cfg.Contexts[u.Name]
		if ctx == nil || ctx.AuthInfo != u.Name || cfg.AuthInfos[u.Name].Token != u.Token {
			t.Errorf("user %s: context %+v", u.Name, ctx)
		}
	}
	if _, err := renderKubeconfig("https://x", nil, users, "nobody"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("unknown current context: %v, want ErrUnknownUser", err)
	}
}

func TestRenderTokenFile(t *testing.T) {
	got := string(renderTokenFile([]user{
		{Name: "admin", Token: "t1", Groups: []string{"system:masters", "other"}},
		{Name: "kaar-watcher", Token: "t2"},
	}))
	want := "t1,admin,admin,\"system:masters,other\"\nt2,kaar-watcher,kaar-watcher\n"
	if got != want {
		t.Errorf("token file:\n%s\nwant:\n%s", got, want)
	}
	users := newUsers()
	tokens := map[string]bool{}
	for _, u := range users {
		if len(u.Token) != 32 || tokens[u.Token] {
			t.Errorf("user %s: weak or repeated token %q", u.Name, u.Token)
		}
		tokens[u.Token] = true
	}
	for _, name := range ServiceUsers {
		for _, u := range users {
			if u.Name == name && len(u.Groups) != 0 {
				t.Errorf("service user %s has groups %v, want none", name, u.Groups)
			}
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := readState(dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("empty dir: %v, want ErrNotRunning", err)
	}
	in := &State{Server: "https://127.0.0.1:1", Ports: Ports{APIServer: 1, EtcdClient: 2}, Nodes: 3, Detached: true,
		Processes: []ProcessState{{Name: "etcd", PID: 42, Binary: "/bin/etcd", Log: "/l"}}}
	if err := writeState(dir, in); err != nil {
		t.Fatal(err)
	}
	out, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if out.Server != in.Server || out.Ports != in.Ports || out.Nodes != 3 || !out.Detached || len(out.Processes) != 1 || out.Processes[0] != in.Processes[0] {
		t.Errorf("read %+v, wrote %+v", out, in)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFileName), []byte(`{"version": 99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readState(dir); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("future version: %v", err)
	}
}

func TestRemoveStateKeepsForeignFiles(t *testing.T) {
	dir := t.TempDir()
	for _, e := range []string{"etcd/member", "logs", "pki"} {
		if err := os.MkdirAll(filepath.Join(dir, e), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"kubeconfig", stateFileName, "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeState(dir); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "notes.txt" {
		t.Errorf("left %v, want only notes.txt", entries)
	}
}

func TestOptionsDefaultsAndValidation(t *testing.T) {
	t.Setenv(EnvCacheDir, t.TempDir())
	o, err := Options{StateDir: "rel"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(o.StateDir) || o.Nodes != 3 || o.NodeCPU != "16" || o.NodeMemory != "64Gi" || o.NodePods != 110 || o.Progress == nil || o.Logger == nil {
		t.Errorf("defaults: %+v", o)
	}
	if o.CacheDir != os.Getenv(EnvCacheDir) {
		t.Errorf("cache dir %q, want $%s", o.CacheDir, EnvCacheDir)
	}
	for _, tc := range []struct {
		opts  Options
		field string
	}{
		{Options{StateDir: "x", Nodes: -1}, "Nodes"},
		{Options{StateDir: "x", NodeCPU: "sixteen"}, "NodeCPU"},
		{Options{StateDir: "x", NodeMemory: "lots"}, "NodeMemory"},
		{Options{StateDir: "x", NodePods: -5}, "NodePods"},
	} {
		_, err := tc.opts.withDefaults()
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), "must be") {
			t.Errorf("%+v: %v, want ErrInvalidOptions naming %s and the allowed values", tc.opts, err, tc.field)
		}
	}
}

func TestWriteBuildModules(t *testing.T) {
	dir := t.TempDir()
	for _, g := range buildGroups {
		if err := writeBuildModule(dir, g); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"go.mod", "go.sum", "tools.go"} {
			b, err := os.ReadFile(filepath.Join(dir, g.module, f))
			if err != nil {
				t.Fatal(err)
			}
			embedded, _ := buildMods.ReadFile("buildmods/" + g.module + "/" + f + ".txt")
			if string(b) != string(embedded) {
				t.Errorf("%s/%s differs from the embedded copy", g.module, f)
			}
		}
		tools, _ := os.ReadFile(filepath.Join(dir, g.module, "tools.go"))
		for _, p := range g.pkgs {
			if strings.HasPrefix(p, "./") { // a main of the build module's own
				if _, err := os.Stat(filepath.Join(dir, g.module, p, "main.go")); err != nil {
					t.Errorf("%s: %v", p, err)
				}
				continue
			}
			if !strings.Contains(string(tools), `"`+p+`"`) {
				t.Errorf("%s/tools.go does not import %s, so go.mod may not hold its dependencies", g.module, p)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(podLogsBuildPath))); err != nil || string(b) != string(podLogsSource) {
		t.Errorf("the pod log writer was not written into the kwok build module: %v", err)
	}
}

// TestBinaryKeysArePerGroup: each group's key depends on its own inputs
// only, so adding or changing one group never rebuilds the others.
func TestBinaryKeysArePerGroup(t *testing.T) {
	keys := map[string]string{}
	for _, g := range buildGroups {
		k1, err := groupKey(g)
		if err != nil {
			t.Fatal(err)
		}
		k2, _ := groupKey(g)
		if k1 != k2 || len(k1) != 16 {
			t.Errorf("%s: key %q then %q", g.module, k1, k2)
		}
		if other, dup := keys[k1]; dup {
			t.Errorf("%s and %s have the same key %s", g.module, other, k1)
		}
		keys[k1] = g.module
	}
	kwok := buildGroups[1]
	if kwok.module != "kwok" {
		t.Fatalf("buildGroups[1] is %s, want kwok", kwok.module)
	}
	before, _ := groupKey(kwok)
	changed := kwok
	changed.extra = []embeddedSource{{podLogsBuildPath, append([]byte("// changed\n"), podLogsSource...)}}
	after, _ := groupKey(changed)
	if before == after {
		t.Error("changing the pod log writer does not change kwok's key")
	}
	changed = kwok
	changed.version = "0.0.1"
	if after, _ := groupKey(changed); before == after {
		t.Error("changing kwok's version does not change its key")
	}
	gk := make([]string, len(buildGroups))
	for i, g := range buildGroups {
		gk[i], _ = groupKey(g)
	}
	s1 := setKey(gk)
	gk[0] = "0000000000000000"
	if s2 := setKey(gk); s1 == s2 {
		t.Error("the set key does not follow the group keys")
	}
}

// TestEnsureBinariesAdoptsTheSingleKeyLayout: binaries cached under the
// former single key (every group in one directory) are linked into the
// per-group directories, not rebuilt, and a second call finds them all.
func TestEnsureBinariesAdoptsTheSingleKeyLayout(t *testing.T) {
	cache := t.TempDir()
	lk, err := legacyKey()
	if err != nil {
		t.Fatal(err)
	}
	legacy := filepath.Join(cache, "sandbox", "bin", lk)
	if err := os.MkdirAll(legacy, 0o755); err != nil {
		t.Fatal(err)
	}
	// The groups outside the single-key layout (added later) are cached
	// already in their own directories.
	for _, g := range buildGroups {
		dir := legacy
		if !legacyModules[g.module] {
			k, _ := groupKey(g)
			dir = filepath.Join(cache, "sandbox", "bin", g.module+"-"+k)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, manifestName), []byte(`{"key":"`+k+`"}`), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, bin := range g.bins {
			if err := os.WriteFile(filepath.Join(dir, bin), []byte("#!/bin/sh\necho "+bin+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(legacy, manifestName), []byte(`{"key":"`+lk+`","buildTimes":{"etcd":"1m0s"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	opts := Options{StateDir: t.TempDir(), CacheDir: cache, Progress: &progress}
	b, err := EnsureBinaries(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(progress.String(), "building") {
		t.Errorf("built instead of reusing:\n%s", progress.String())
	}
	for _, p := range []string{b.Etcd, b.KubeAPIServer, b.KubeControllerManager, b.KubeScheduler, b.Kubectl, b.Kwok, b.MetricsServer} {
		if filepath.Dir(p) != b.Dir {
			t.Errorf("%s is not in %s", p, b.Dir)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != "#!/bin/sh\necho "+filepath.Base(p)+"\n" {
			t.Errorf("%s: %q, %v", p, got, err)
		}
	}
	for _, g := range buildGroups {
		k, _ := groupKey(g)
		if !complete(filepath.Join(cache, "sandbox", "bin", g.module+"-"+k), g.bins) {
			t.Errorf("group directory of %s is not complete", g.module)
		}
	}
	progress.Reset()
	again, err := EnsureBinaries(context.Background(), opts)
	if err != nil || again != b {
		t.Errorf("second call: %+v, %v; want %+v", again, err, b)
	}
	if progress.Len() != 0 {
		t.Errorf("second call said %q, want nothing (cached)", progress.String())
	}
}

func TestLockFileExcludesASecondHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := lockFile(context.Background(), path, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	var said strings.Builder
	if _, err := lockFile(ctx, path, &said, "waiting"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second lock: %v, want a timeout", err)
	}
	if said.String() != "waiting\n" {
		t.Errorf("progress %q, want the waiting message once", said.String())
	}
	unlock()
	unlock2, err := lockFile(context.Background(), path, nil, "")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

func TestPodStatusMatchesKubectlRules(t *testing.T) {
	waiting := func(r string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: r}}
	}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	term := func(r string, code int32) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: r, ExitCode: code}}
	}
	ready := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	now := metav1.Now()
	always := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name string
		pod  corev1.Pod
		want string
	}{
		{"running", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: ready,
			ContainerStatuses: []corev1.ContainerStatus{{State: running, Ready: true}}}}, "Running"},
		{"crash loop", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{State: waiting("CrashLoopBackOff")}}}}, "CrashLoopBackOff"},
		{"first container wins", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending,
			ContainerStatuses: []corev1.ContainerStatus{{State: waiting("ImagePullBackOff")}, {State: waiting("ContainerCreating")}}}}, "ImagePullBackOff"},
		{"evicted with killed container", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted",
			ContainerStatuses: []corev1.ContainerStatus{{State: term("Error", 137)}}}}, "Error"},
		{"evicted without container status", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted"}}, "Evicted"},
		{"unschedulable", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}, "Pending"},
		{"completed job", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded,
			ContainerStatuses: []corev1.ContainerStatus{{State: term("Completed", 0)}}}}, "Completed"},
		{"completed but a sidecar runs", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: ready,
			ContainerStatuses: []corev1.ContainerStatus{{State: term("Completed", 0)}, {State: running, Ready: true}}}}, "Running"},
		{"no reason, exit code", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed,
			ContainerStatuses: []corev1.ContainerStatus{{State: term("", 2)}}}}, "ExitCode:2"},
		{"init container crashing", corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "init"}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending,
				InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", State: waiting("CrashLoopBackOff")}}}}, "Init:CrashLoopBackOff"},
		{"init container pending", corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "a"}, {Name: "b"}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{
				{Name: "a", State: term("Completed", 0)}, {Name: "b", State: running}}}}, "Init:1/2"},
		{"started sidecar init container", corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "proxy", RestartPolicy: &always}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: ready,
				InitContainerStatuses: []corev1.ContainerStatus{{Name: "proxy", State: running, Started: new(true)}},
				ContainerStatuses:     []corev1.ContainerStatus{{State: running, Ready: true}}}}, "Running"},
		{"terminating", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{State: running, Ready: true}}}}, "Terminating"},
		{"node lost", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: corev1.PodStatus{Phase: corev1.PodRunning, Reason: "NodeLost"}}, "Unknown"},
		{"scheduling gated", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Reason: corev1.PodReasonSchedulingGated}}}}, "SchedulingGated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PodStatus(&tt.pod); got != tt.want {
				t.Errorf("PodStatus = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLastLines(t *testing.T) {
	if got := lastLines("a\nb\nc\n", 2); got != "b\nc" {
		t.Errorf("lastLines = %q", got)
	}
	if got := lastLines("a", 5); got != "a" {
		t.Errorf("lastLines = %q", got)
	}
}
