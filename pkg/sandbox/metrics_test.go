package sandbox

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The kwok configuration carries the usage expressions and the Metric
// unchanged through YAML (a quoting slip would make kwok report zero).
func TestKwokConfigHasResourceUsageAndMetric(t *testing.T) {
	without, err := renderKwokConfig("/state/podlogs", false)
	if err != nil || strings.Contains(string(without), "kind: Metric") || strings.Contains(string(without), "ResourceUsage") {
		t.Errorf("NoMetrics: kwok config has metrics (%v)", err)
	}
	cfg, err := renderKwokConfig("/state/podlogs", true)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]map[string]any{}
	for doc := range strings.SplitSeq(string(cfg), "\n---\n") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("invalid YAML document: %v\n%s", err, doc)
		}
		if k, _ := obj["kind"].(string); k != "" && k != "Stage" {
			kinds[k] = obj
		}
	}
	usage, ok := kinds["ClusterResourceUsage"]
	if !ok {
		t.Fatalf("no ClusterResourceUsage in %v", kinds)
	}
	u := usage["spec"].(map[string]any)["usages"].([]any)[0].(map[string]any)["usage"].(map[string]any)
	if got := u["memory"].(map[string]any)["expression"]; got != memoryUsageExpr() {
		t.Errorf("memory expression = %v\nwant %s", got, memoryUsageExpr())
	}
	if got := u["cpu"].(map[string]any)["expression"]; got != cpuUsageExpr() {
		t.Errorf("cpu expression = %v\nwant %s", got, cpuUsageExpr())
	}
	for _, a := range []string{AnnotationMemoryUsage, AnnotationMemoryGrowth} {
		if !strings.Contains(memoryUsageExpr(), `"`+a+`"`) {
			t.Errorf("memory expression does not read %s", a)
		}
	}
	metric, ok := kinds["Metric"]
	if !ok {
		t.Fatalf("no Metric in %v", kinds)
	}
	if p := metric["spec"].(map[string]any)["path"]; p != "/metrics/nodes/{nodeName}/metrics/resource" {
		t.Errorf("metric path %v", p)
	}
	names := map[string]bool{}
	for _, m := range metric["spec"].(map[string]any)["metrics"].([]any) {
		names[m.(map[string]any)["name"].(string)] = true
	}
	// What metrics-server 0.8.0 decodes from /metrics/resource.
	for _, n := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_start_time_seconds",
		"node_cpu_usage_seconds_total", "node_memory_working_set_bytes"} {
		if !names[n] {
			t.Errorf("Metric lacks %s", n)
		}
	}
	if n := kwokNode(0, Options{NodeCPU: "1", NodeMemory: "1Gi"}); n.Annotations[MetricsPathAnnotation] != "/metrics/nodes/kwok-node-0/metrics/resource" {
		t.Errorf("node annotation %s = %q", MetricsPathAnnotation, n.Annotations[MetricsPathAnnotation])
	}
}

// The aggregation layer's certificates chain as kube-apiserver and
// metrics-server check them.
func TestPKIForTheAggregationLayer(t *testing.T) {
	files, err := generatePKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert := func(path string) *x509.Certificate {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM", path)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pool := func(path string) *x509.CertPool {
		p := x509.NewCertPool()
		p.AddCert(cert(path))
		return p
	}
	proxy := cert(files.ProxyClientCert)
	if _, err := proxy.Verify(x509.VerifyOptions{Roots: pool(files.FrontProxyCACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("front-proxy client certificate: %v", err)
	}
	if proxy.Subject.CommonName != proxyClientName {
		t.Errorf("front-proxy client CN %q, want %q (--requestheader-allowed-names)", proxy.Subject.CommonName, proxyClientName)
	}
	if _, err := proxy.Verify(x509.VerifyOptions{Roots: pool(files.CACert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("the front-proxy client certificate is trusted by the cluster CA: it would authenticate as a user")
	}
	ms := cert(files.MetricsServerCert)
	for _, name := range []string{"metrics-server.kube-system.svc", "127.0.0.1"} {
		if _, err := ms.Verify(x509.VerifyOptions{Roots: pool(files.CACert), DNSName: name}); err != nil {
			t.Errorf("metrics-server certificate for %s: %v", name, err)
		}
	}
}
