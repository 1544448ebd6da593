package planner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// fakeCluster loads fixtures into a fake clientset, plus a ReplicaSet of
// another Deployment that selects the same labels (it must be ignored).
func fakeCluster(t *testing.T, fixtures ...shopFixture) *fake.Clientset {
	t.Helper()
	var objs []runtime.Object
	for _, f := range fixtures {
		objs = append(objs, f.Deployment.DeepCopy())
		for i := range f.ReplicaSets {
			objs = append(objs, f.ReplicaSets[i].DeepCopy())
		}
		for i := range f.Pods {
			objs = append(objs, f.Pods[i].DeepCopy())
		}
		for i := range f.Events {
			objs = append(objs, f.Events[i].DeepCopy())
		}
	}
	if len(fixtures) > 0 && len(fixtures[0].ReplicaSets) > 0 {
		stray := fixtures[0].ReplicaSets[0].DeepCopy()
		stray.Name, stray.UID = "stray", "stray-uid"
		stray.OwnerReferences[0].UID = "another-deployment"
		objs = append(objs, stray)
	}
	return fake.NewClientset(objs...)
}

func TestGatherReadsWhatThePlanNeeds(t *testing.T) {
	cfg := testConfig(t)
	f := loadShop(t, "payments-api")
	r := reader{kube: fakeCluster(t, f), cfg: cfg}
	inc := f.incident(t, events.IssueCrashLoopBackOff, "app")
	in, err := r.gather(context.Background(), inc)
	if err != nil {
		t.Fatal(err)
	}
	if in.Owner.Deployment == nil || in.Owner.Ref.UID != string(f.Deployment.UID) {
		t.Fatalf("owner %+v", in.Owner.Ref)
	}
	if in.Pod == nil || in.Pod.Name != inc.Pods[0] {
		t.Errorf("pod %v", in.Pod)
	}
	if len(in.ReplicaSets) != 2 || slices.ContainsFunc(in.ReplicaSets, func(rs appsv1.ReplicaSet) bool { return rs.Name == "stray" }) {
		t.Errorf("replicasets %d (stray included?)", len(in.ReplicaSets))
	}
	// Events of the pod, its ReplicaSet and the Deployment only: not those
	// of the healthy pods of revision 1.
	for _, e := range in.Events {
		ok := e.InvolvedObject.Name == in.Pod.Name || e.InvolvedObject.Name == "payments-api" ||
			e.InvolvedObject.Name == metav1.GetControllerOf(in.Pod).Name
		if !ok {
			t.Errorf("event of %s/%s read", e.InvolvedObject.Kind, e.InvolvedObject.Name)
		}
	}
	if !slices.ContainsFunc(in.Events, func(e corev1.Event) bool { return e.Reason == "BackOff" }) {
		t.Error("the BackOff warning was not read")
	}
	// The fake clientset serves "fake logs" for any pod.
	if in.Logs == nil || in.Logs.Err != "" || !slices.Equal(in.Logs.Lines, []string{"fake logs"}) || in.Logs.Container != "app" {
		t.Errorf("logs %+v", in.Logs)
	}
	ev := collectEvidence(in)
	var kinds []events.EvidenceKind
	for _, e := range ev {
		kinds = append(kinds, e.Kind)
		if err := e.Validate(); err != nil {
			t.Errorf("evidence %s: %v", e.Kind, err)
		}
	}
	want := []events.EvidenceKind{events.EvidenceOwnerChain, events.EvidenceExitCode, events.EvidenceLogs,
		events.EvidenceEvents, events.EvidenceResources, events.EvidenceRolloutHistory}
	if !slices.Equal(kinds, want) {
		t.Errorf("evidence kinds %v, want %v", kinds, want)
	}
	if ev[3].Lines[0][:len("Warning BackOff")] != "Warning BackOff" {
		t.Errorf("warnings first: %v", ev[3].Lines)
	}
}

func TestGatherEvictedAndPending(t *testing.T) {
	cfg := testConfig(t)
	cache := loadShop(t, "cache")
	r := reader{kube: fakeCluster(t, cache), cfg: cfg}
	in, err := r.gather(context.Background(), cache.incident(t, events.IssueEvicted, ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(in.EvictedPods) != 2 || in.Logs != nil {
		t.Errorf("evicted pods %d, logs %+v", len(in.EvictedPods), in.Logs)
	}

	analytics := loadShop(t, "analytics")
	cs := fakeCluster(t, analytics)
	for _, n := range loadNodes(t) {
		if _, err := cs.CoreV1().Nodes().Create(context.Background(), &n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	r = reader{kube: cs, cfg: cfg}
	in, err = r.gather(context.Background(), analytics.incident(t, events.IssuePending, ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Nodes) != 3 {
		t.Errorf("nodes %d", len(in.Nodes))
	}
}

func TestGatherTargetGone(t *testing.T) {
	f := loadShop(t, "frontend")
	r := reader{kube: fake.NewClientset(), cfg: testConfig(t)}
	_, err := r.gather(context.Background(), f.incident(t, events.IssueImagePullBackOff, "app"))
	if !errors.Is(err, ErrTargetGone) {
		t.Fatalf("want ErrTargetGone, got %v", err)
	}
	inc := f.incident(t, events.IssueImagePullBackOff, "app")
	inc.Owner.Kind = "ReplicationController"
	if _, err := r.gather(context.Background(), inc); !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), "supported: Deployment") {
		t.Fatalf("unsupported kind: %v", err)
	}
}

func TestSplitLogsBoundsAndRedacts(t *testing.T) {
	const key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx3\nQ29tZSBvbiwgdGhpcyBpcyBub3Qg\n-----END RSA PRIVATE KEY-----\n"
	r := redactedLine
	tests := []struct {
		name  string
		raw   string
		lines int
		bytes int64
		want  []string
	}{
		{"keeps the last lines", "one\ntwo\r\npassword=hunter2\nfour\n", 3, 1 << 10, []string{"two", r, "four"}},
		{"keeps the last bytes", "first line\nsecond\nthird\n", 10, 14, []string{"second", "third"}},
		{"keeps the last bytes, without a cut line", "first line\nsecond\nthird\n", 10, 12, []string{"third"}},
		{"a single cut line is dropped", "0123456789abcdef", 10, 8, nil},
		{"every line of a private key block", "start\n" + key + "done\n", 10, 1 << 10, []string{"start", r, r, r, r, "done"}},
		{"a tail that starts inside a key block", "MIIEowIBAAKCAQEAx3\n-----END PRIVATE KEY-----\nafter\n", 10, 1 << 10, []string{r, r, "after"}},
		{"empty", "", 10, 1 << 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := splitLogs([]byte(tt.raw), tt.lines, tt.bytes)
			if !slices.Equal(got, tt.want) {
				t.Errorf("splitLogs = %q, want %q", got, tt.want)
			}
			total := 0
			for _, l := range got {
				if l != redactedLine {
					total += len(l) + 1
				}
			}
			if int64(total) > tt.bytes {
				t.Errorf("%d bytes of log quoted, limit %d", total, tt.bytes)
			}
		})
	}
}

func TestConfigFrom(t *testing.T) {
	c := config.Default()
	c.Kubernetes.ClusterName = "prod-eu"
	c.Remediation.ApprovalWindow = config.Duration{Duration: 90 * time.Second}
	c.Remediation.Strategies["OOMKilled"] = []config.Strategy{{Action: "increase_memory", Params: map[string]string{"factor": "1.5"}}}
	cfg, err := ConfigFrom(c).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster != "prod-eu" || cfg.ApprovalWindow != 90*time.Second || cfg.MaxPods != 10 || cfg.MemoryFactor != 2 ||
		cfg.MaxMemoryLimit != "4Gi" || !cfg.protected("kube-system") || cfg.LogTailLines != 50 || cfg.LogLimitBytes != 8192 {
		t.Errorf("config %+v", cfg)
	}
	if s := cfg.Strategies[events.IssueOOMKilled]; len(s) != 1 || s[0].Params["factor"] != "1.5" {
		t.Errorf("strategies %+v", cfg.Strategies)
	}
	if got := cfg.Strategies[events.IssueCrashLoopBackOff]; len(got) != 3 || got[1].Name != "rollback" {
		t.Errorf("CrashLoopBackOff strategies %+v", got)
	}

	// A Config built by hand gets config.Default()'s values for the
	// remediation settings it leaves zero; their bounds are config.Load's
	// to check (pkg/config/testdata/invalid).
	byHand, err := Config{Cluster: "prod-eu"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if byHand.ApprovalWindow != 15*time.Minute || byHand.MaxPods != 10 || byHand.MemoryFactor != 2 ||
		byHand.MaxMemoryLimit != "4Gi" || byHand.GitOpsManaged != GitOpsFlag {
		t.Errorf("defaults of a Config built by hand: %+v", byHand)
	}
	if _, err := (Config{Cluster: "Bad Name"}).withDefaults(); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "kubernetes.cluster_name") {
		t.Errorf("a bad cluster name: %v, want ErrInvalidConfig naming kubernetes.cluster_name", err)
	}
	// 1.5Gi is a quantity to config.Load and to the planner alike.
	c.Remediation.MaxMemoryLimit = "1.5Gi"
	if _, err := config.Load(strings.NewReader("remediation: {max_memory_limit: 1.5Gi}"), nil); err != nil {
		t.Errorf("config.Load refuses max_memory_limit 1.5Gi: %v", err)
	}
	if n, err := parseBytes(ConfigFrom(c).MaxMemoryLimit); err != nil || n != 3<<29 {
		t.Errorf("parseBytes(1.5Gi) = %d, %v", n, err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(testConfig(t), Deps{}); err == nil || !strings.Contains(err.Error(), "Deps.NATS") {
		t.Errorf("New without NATS: %v", err)
	}
	cfg := testConfig(t)
	cfg.Cluster = ""
	if _, err := New(cfg, Deps{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with a bad config: %v", err)
	}
}

func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "plain", "password=x", "Authorization: Bearer abc", "\x00\x1b[1m", strings.Repeat("ü", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		q := quote(line)
		if len(q) > maxLineLen+len("…") {
			t.Fatalf("quote returned %d bytes", len(q))
		}
		for _, r := range q {
			if r < ' ' || r == 0x7f {
				t.Fatalf("control character %q kept in %q", r, q)
			}
		}
		if q != redactedLine && text.Redact(q) == text.Withheld {
			t.Fatalf("credential-looking line quoted: %q", q)
		}
	})
}

func BenchmarkDraftPlan(b *testing.B) {
	cfg := testConfig(b)
	in := loadShop(b, "frontend").input(b, cfg, events.IssueImagePullBackOff, "app")
	for b.Loop() {
		out := finalize(draftPlan(in), acceptAll)
		_ = collectEvidence(in)
		if len(out.Steps) != 2 {
			b.Fatal(out.Steps)
		}
	}
}

func TestObservationsAdmitInOrder(t *testing.T) {
	var o observations
	now := time.Now()
	steps := []struct {
		id   string
		n    int64
		want bool
	}{
		{"a", 1, true}, {"a", 1, true}, {"a", 3, true}, {"a", 2, false}, {"b", 1, true}, {"a", 3, true}, {"a", 4, true},
	}
	for i, s := range steps {
		if got := o.admit(s.id, s.n, now); got != s.want {
			t.Errorf("step %d: admit(%s, %d) = %t, want %t", i, s.id, s.n, got, s.want)
		}
	}
	// Old entries are pruned once the map is full.
	for i := range observationsMax {
		o.admit(fmt.Sprint("old-", i), 1, now.Add(-2*observationsTTL))
	}
	o.admit("new", 1, now)
	if len(o.m) > 10 {
		t.Errorf("%d entries kept after pruning", len(o.m))
	}
}
