package deploytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kaar-dev/kaar/pkg/sandbox"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// The cluster tests attach to the shared sandbox (KAAR_SANDBOX_KUBECONFIG)
// or start one; the others need none.
func TestMain(m *testing.M) { os.Exit(sandbox.RunTests(m)) }

// repoRoot is the kaar work tree: go test runs a package's tests in its
// directory, deploy/test. (Not runtime.Caller, whose path a -trimpath
// build leaves module-relative.)
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("cannot locate the work tree: %v", err)
	}
	root := filepath.Clean(filepath.Join(wd, "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "deploy", "test", "main_test.go")); err != nil {
		t.Fatalf("the tests of deploy/test run in that directory (go test does that): %v", err)
	}
	return root
}

var helmOnce struct {
	sync.Once
	path string
	err  error
	log  []byte
}

// helm returns the pinned Helm binary, installing it into bin/ with the
// project's own script on first use (from the Go module proxy).
func helm(t testing.TB) string {
	t.Helper()
	helmOnce.Do(func() {
		cmd := exec.Command(filepath.Join(repoRoot(t), "deploy", "hack", "install-helm.sh"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		helmOnce.path, helmOnce.err, helmOnce.log = strings.TrimSpace(string(out)), err, stderr.Bytes()
	})
	if helmOnce.err != nil {
		t.Fatalf("install helm: %v\n%s", helmOnce.err, helmOnce.log)
	}
	return helmOnce.path
}

// chartDir is the Helm chart.
func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "deploy", "helm", "kaar") }

// helmTemplate renders the chart as release in namespace with extra helm
// arguments (--set ..., -f ...) and returns the output and helm's error.
func helmTemplate(t testing.TB, release, namespace string, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"template", release, chartDir(t), "--namespace", namespace}, args...)
	cmd := exec.Command(helm(t), full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), errors.New(strings.TrimSpace(stderr.String()) + ": " + err.Error())
	}
	return string(out), nil
}

// render is helmTemplate that must succeed, decoded into objects.
func render(t testing.TB, release, namespace string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := helmTemplate(t, release, namespace, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v", args, err)
	}
	return decodeObjects(t, out)
}

// decodeObjects splits a multi-document YAML stream into objects, skipping
// empty documents.
func decodeObjects(t testing.TB, manifests string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	var objs []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("decode manifests: %v", err)
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		u := &unstructured.Unstructured{}
		// UnmarshalJSON keeps integers as int64, as the API machinery does.
		if err := u.UnmarshalJSON(raw); err != nil {
			t.Fatalf("decode object %s: %v", raw, err)
		}
		if u.GetName() == "" {
			t.Fatalf("object without a name: %s", raw)
		}
		objs = append(objs, u)
	}
	if len(objs) == 0 {
		t.Fatal("no objects rendered")
	}
	return objs
}

// find returns the object of kind and name, failing the test if absent.
func find(t testing.TB, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %q rendered", kind, name)
	return nil
}

func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// services are kaar's four services that run in every deployment (the
// notifier, the fifth, runs when notify is configured: chartServices,
// composeServices), as named in the chart, the compose
// file and the binaries (kaar-<service>).
var services = []string{"watcher", "planner", "executor", "mcpgateway"}
