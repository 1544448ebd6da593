package sandbox

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The cluster shared by the tests of one test binary.
var shared struct {
	mainRunning atomic.Bool
	once        sync.Once
	cluster     *Cluster
	err         error
	owned       bool // started here (not attached): RunTests stops it
	startup     time.Duration
}

// RunTests runs a package's tests and stops the sandbox ForTest started,
// if any. Every package whose tests call ForTest needs this TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(sandbox.RunTests(m)) }
//
// The sandbox starts lazily, at the first ForTest call, so a run of only
// the unit tests does not pay for it.
func RunTests(m *testing.M) int {
	shared.mainRunning.Store(true)
	code := m.Run()
	if shared.owned && shared.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := shared.cluster.Down(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "sandbox: stop:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// ForTest returns the sandbox of this test binary, starting it at the
// first call (one cluster per test binary, stopped by RunTests). If
// $KAAR_SANDBOX_KUBECONFIG is set, it attaches to that running sandbox
// instead (for instance one started by `kaar-sandbox up` that `make test`
// shares across packages). It fails the test loudly when the sandbox
// cannot run. Give each test its own namespace: see NewNamespace.
//
// Under go test -short (make unit) it skips the test: the fast loop runs
// without a control plane.
func ForTest(t testing.TB) *Cluster {
	t.Helper()
	SkipShort(t, "it needs the sandbox control plane")
	if !shared.mainRunning.Load() {
		t.Fatal("sandbox.ForTest needs the package's TestMain to be: func TestMain(m *testing.M) { os.Exit(sandbox.RunTests(m)) }")
	}
	shared.once.Do(startShared)
	if shared.err != nil {
		t.Fatalf("sandbox: %v", shared.err)
	}
	return shared.cluster
}

// SkipShort skips the test under go test -short (make unit), saying why:
// for tests that need slow external parts (the sandbox, built binaries,
// npm tools, long chaos runs). why completes "skipped under -short: ".
func SkipShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipped under -short: %s; run without -short (make test) to run it", why)
	}
}

// TestStartup is how long ForTest took to make the shared sandbox ready
// (zero before the first ForTest call).
func TestStartup() time.Duration { return shared.startup }

func startShared() {
	// Not the test's context: the cluster outlives the first test.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	t0 := time.Now()
	defer func() { shared.startup = time.Since(t0) }()
	if kc := os.Getenv(EnvKubeconfig); kc != "" {
		shared.cluster, shared.err = Attach(ctx, kc)
		return
	}
	dir, err := os.MkdirTemp("", "kaar-sandbox-test-")
	if err != nil {
		shared.err = err
		return
	}
	shared.cluster, shared.err = Up(ctx, Options{StateDir: dir, Progress: prefixWriter{"sandbox: "}})
	shared.owned = shared.err == nil
	if shared.err != nil {
		shared.err = fmt.Errorf("%w (logs kept in %s)", shared.err, dir)
	}
}

// prefixWriter writes progress lines to stderr (shown by go test -v or
// when the package fails).
type prefixWriter struct{ prefix string }

func (w prefixWriter) Write(p []byte) (int, error) {
	for _, l := range strings.SplitAfter(string(p), "\n") {
		if l != "" {
			fmt.Fprint(os.Stderr, w.prefix+l)
		}
	}
	return len(p), nil
}

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// NewNamespace creates a namespace named after the test (with a random
// suffix) and deletes it when the test ends.
func NewNamespace(t testing.TB, cs kubernetes.Interface) string {
	t.Helper()
	prefix := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(prefix) > 40 {
		prefix = strings.Trim(prefix[:40], "-")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: prefix + "-",
		Labels:       map[string]string{"sandbox.kaar.dev/test": "true"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("sandbox: create namespace for %s: %v", t.Name(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("sandbox: delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// TestDeployment is the small Deployment most tests start from: pods
// labelled app=name with one container "app" running image, and the pod
// template annotations that the failure stages read (AnnotationCrashExitCode,
// AnnotationMemoryUsage...). Callers adjust the rest.
func TestDeployment(ns, name, image string, replicas int32, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
			},
		},
	}
}
