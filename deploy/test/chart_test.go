package deploytest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// chartCase is one set of values and what the rendering must contain.
type chartCase struct {
	name         string
	args         []string
	cluster      string // kubernetes.cluster_name in config.yaml
	natsURL      string // "" = the chart's own NATS Service
	natsInChart  bool
	persistence  bool
	rbac         bool
	dryRunPolicy bool
	annotations  bool
	monitor      bool
	gatewayPods  int64
	autoApprove  bool
}

func chartCases(t testing.TB) []chartCase {
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`
clusterName: staging_2
config:
  remediation:
    auto_approve: true
    auto_approve_max_risk: low
    strategies:
      CrashLoopBackOff: [check_logs, rollback]
  policy:
    exclude_namespaces: [kube-system]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	return []chartCase{
		{name: "defaults", cluster: "default", natsInChart: true, persistence: true, rbac: true, dryRunPolicy: true, annotations: true, gatewayPods: 2},
		{name: "external NATS and ServiceMonitor",
			args:    []string{"--set", "nats.enabled=false,nats.url=nats://nats.bus.svc:4222,serviceMonitor.enabled=true,clusterName=prod-eu,mcpgateway.replicas=3,image.tag=v1.2.3"},
			cluster: "prod-eu", natsURL: "nats://nats.bus.svc:4222", rbac: true, dryRunPolicy: true, annotations: true, monitor: true, gatewayPods: 3},
		{name: "no persistence, no RBAC, no annotations",
			args:    []string{"--set", "nats.persistence.enabled=false,rbac.create=false,prometheusAnnotations=false,mcpgateway.podDisruptionBudget.enabled=false"},
			cluster: "default", natsInChart: true, gatewayPods: 2},
		{name: "values file with config overrides", args: []string{"-f", values},
			cluster: "staging_2", natsInChart: true, persistence: true, rbac: true, dryRunPolicy: true, annotations: true, gatewayPods: 2, autoApprove: true},
	}
}

// TestChartRendersSecureDeployments renders the chart with default and
// non-default values and checks what every rendering must hold: the four
// Deployments with probes, requests, a non-root read-only security context,
// one ServiceAccount each, a config.yaml that kaar's own loader accepts
// with each container's environment, and no Secret anywhere.
func TestChartRendersSecureDeployments(t *testing.T) {
	for _, tc := range chartCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			const ns = "kaar-system"
			objs := render(t, "kaar", ns, tc.args...)
			checkRendering(t, tc, ns, objs)
		})
	}
}

func checkRendering(t *testing.T, tc chartCase, ns string, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "Secret" {
			t.Errorf("the chart renders a Secret %q", o.GetName())
		}
		if ns := o.GetNamespace(); ns != "" && ns != "kaar-system" {
			t.Errorf("%s %s in namespace %q, want the release namespace", o.GetKind(), o.GetName(), ns)
		}
	}
	cfgMap := find(t, objs, "ConfigMap", "kaar-config")
	cfgYAML, _, _ := unstructured.NestedString(cfgMap.Object, "data", "config.yaml")
	for _, svc := range services {
		dep := find(t, objs, "Deployment", "kaar-"+svc)
		checkDeployment(t, tc, svc, dep, cfgYAML)
		if got := find(t, objs, "ServiceAccount", "kaar-"+svc); svc == "mcpgateway" {
			if auto, ok, _ := unstructured.NestedBool(got.Object, "automountServiceAccountToken"); !ok || auto {
				t.Errorf("gateway ServiceAccount mounts a token: %v", got.Object)
			}
		}
		pdbWanted := !(svc == "mcpgateway" && slices.ContainsFunc(tc.args, func(a string) bool { return strings.Contains(a, "mcpgateway.podDisruptionBudget.enabled=false") }))
		if hasObject(objs, "PodDisruptionBudget", "kaar-"+svc) != pdbWanted {
			t.Errorf("PodDisruptionBudget kaar-%s rendered=%t, want %t", svc, !pdbWanted, pdbWanted)
		}
	}
	if hasObject(objs, "StatefulSet", "kaar-nats") != tc.natsInChart {
		t.Errorf("NATS StatefulSet rendered=%t, want %t", !tc.natsInChart, tc.natsInChart)
	}
	if tc.natsInChart {
		sts := find(t, objs, "StatefulSet", "kaar-nats")
		claims, _, _ := unstructured.NestedSlice(sts.Object, "spec", "volumeClaimTemplates")
		if (len(claims) == 1) != tc.persistence {
			t.Errorf("NATS volumeClaimTemplates = %v, want persistence %t", claims, tc.persistence)
		}
		checkSecurityContext(t, "nats", sts)
	}
	if got := len(ofKind(objs, "ClusterRole")) == 3 && len(ofKind(objs, "ClusterRoleBinding")) == 3; got != tc.rbac {
		t.Errorf("3 ClusterRoles and bindings rendered=%t, want %t", got, tc.rbac)
	}
	if got := hasObject(objs, "ValidatingAdmissionPolicy", "kaar-planner-dry-run-only"); got != tc.dryRunPolicy {
		t.Errorf("planner dry-run-only policy rendered=%t, want %t", got, tc.dryRunPolicy)
	}
	if got := len(ofKind(objs, "ServiceMonitor")) == 1; got != tc.monitor {
		t.Errorf("ServiceMonitor rendered=%t, want %t", got, tc.monitor)
	}
	for _, cr := range ofKind(objs, "ClusterRole") {
		rules, _, _ := unstructured.NestedSlice(cr.Object, "rules")
		for _, r := range rules {
			rule := r.(map[string]any)
			for _, field := range []string{"resources", "verbs", "apiGroups"} {
				for _, v := range rule[field].([]any) {
					if v == "*" || v == "secrets" {
						t.Errorf("ClusterRole %s grants %s %q", cr.GetName(), field, v)
					}
				}
			}
		}
	}
}

func hasObject(objs []*unstructured.Unstructured, kind, name string) bool {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return true
		}
	}
	return false
}

func checkDeployment(t *testing.T, tc chartCase, svc string, dep *unstructured.Unstructured, cfgYAML string) {
	t.Helper()
	replicas, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas")
	if svc == "mcpgateway" && replicas != tc.gatewayPods {
		t.Errorf("gateway replicas = %d, want %d", replicas, tc.gatewayPods)
	}
	spec, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	if sa := spec["serviceAccountName"]; sa != "kaar-"+svc {
		t.Errorf("%s: serviceAccountName %v, want kaar-%s", svc, sa, svc)
	}
	if auto := spec["automountServiceAccountToken"]; auto != (svc != "mcpgateway") {
		t.Errorf("%s: automountServiceAccountToken = %v", svc, auto)
	}
	checkSecurityContext(t, svc, dep)
	containers := spec["containers"].([]any)
	if len(containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", svc, len(containers))
	}
	c := containers[0].(map[string]any)
	if cmd, _ := c["command"].([]any); len(cmd) == 0 || cmd[0] != "kaar-"+svc {
		t.Errorf("%s: command %v, want kaar-%s first", svc, c["command"], svc)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got, _, _ := unstructured.NestedString(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s: %s path %q, want %q", svc, probe, got, path)
		}
	}
	for _, res := range []string{"cpu", "memory"} {
		if _, ok, _ := unstructured.NestedString(c, "resources", "requests", res); !ok {
			t.Errorf("%s: no %s request", svc, res)
		}
	}
	annotations, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "annotations")
	if (annotations["prometheus.io/scrape"] == "true") != tc.annotations {
		t.Errorf("%s: prometheus annotations %v, want %t", svc, annotations, tc.annotations)
	}
	// The configuration as this container sees it: config.yaml plus its
	// environment, through kaar's own loader.
	env := []string{}
	envList, _ := c["env"].([]any)
	for _, e := range envList {
		m := e.(map[string]any)
		env = append(env, m["name"].(string)+"="+m["value"].(string))
	}
	cfg, err := config.Load(strings.NewReader(cfgYAML), env)
	if err != nil {
		t.Fatalf("%s: kaar rejects the rendered config.yaml with env %v: %v\n%s", svc, env, err, cfgYAML)
	}
	if cfg.Kubernetes.ClusterName != tc.cluster {
		t.Errorf("%s: cluster_name %q, want %q", svc, cfg.Kubernetes.ClusterName, tc.cluster)
	}
	wantURL := tc.natsURL
	if wantURL == "" {
		wantURL = "nats://kaar-nats.kaar-system.svc:4222"
	}
	if cfg.NATS.URL != wantURL {
		t.Errorf("%s: nats.url %q, want %q", svc, cfg.NATS.URL, wantURL)
	}
	if cfg.Remediation.AutoApprove != tc.autoApprove {
		t.Errorf("%s: auto_approve %t, want %t", svc, cfg.Remediation.AutoApprove, tc.autoApprove)
	}
	if svc == "mcpgateway" {
		if cfg.Server.Host != "0.0.0.0" || cfg.Server.Port != 8080 {
			t.Errorf("gateway listens on %s:%d, want 0.0.0.0:8080", cfg.Server.Host, cfg.Server.Port)
		}
	} else if cfg.Server.MetricsAddr != ":9090" {
		t.Errorf("%s: metrics_addr %q, want :9090 (the probes' port)", svc, cfg.Server.MetricsAddr)
	}
}

// checkSecurityContext checks the pod template of a Deployment or
// StatefulSet: non-root, no privilege escalation, read-only root, no
// capabilities, RuntimeDefault seccomp.
func checkSecurityContext(t *testing.T, name string, workload *unstructured.Unstructured) {
	t.Helper()
	pod, _, _ := unstructured.NestedMap(workload.Object, "spec", "template", "spec")
	if v, _, _ := unstructured.NestedBool(pod, "securityContext", "runAsNonRoot"); !v {
		t.Errorf("%s: pod runAsNonRoot is not true", name)
	}
	if v, _, _ := unstructured.NestedString(pod, "securityContext", "seccompProfile", "type"); v != "RuntimeDefault" {
		t.Errorf("%s: seccompProfile %q", name, v)
	}
	for _, ci := range pod["containers"].([]any) {
		c := ci.(map[string]any)
		if v, ok, _ := unstructured.NestedBool(c, "securityContext", "allowPrivilegeEscalation"); !ok || v {
			t.Errorf("%s: allowPrivilegeEscalation not false", name)
		}
		if v, _, _ := unstructured.NestedBool(c, "securityContext", "readOnlyRootFilesystem"); !v {
			t.Errorf("%s: readOnlyRootFilesystem not true", name)
		}
		if v, _, _ := unstructured.NestedStringSlice(c, "securityContext", "capabilities", "drop"); !slices.Equal(v, []string{"ALL"}) {
			t.Errorf("%s: capabilities drop %v, want [ALL]", name, v)
		}
	}
}

// TestChartRefusesExternalNATSWithoutURL: turning off the chart's NATS
// without naming another server is an error, not a broken install.
func TestChartRefusesExternalNATSWithoutURL(t *testing.T) {
	_, err := helmTemplate(t, "kaar", "kaar", "--set", "nats.enabled=false")
	if err == nil || !strings.Contains(err.Error(), "nats.url is required") {
		t.Fatalf("helm template with nats.enabled=false and no url: err = %v, want \"nats.url is required\"", err)
	}
}

// TestRenderedManifestsAreUpToDate: deploy/manifests/kaar.yaml is what
// deploy/hack/render-manifests.sh makes from the chart today.
func TestRenderedManifestsAreUpToDate(t *testing.T) {
	root := repoRoot(t)
	committed, err := os.ReadFile(filepath.Join(root, "deploy", "manifests", "kaar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	helm(t) // installed before the script needs it
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "deploy", "hack", "render-manifests.sh"))
	cmd.Env = append(os.Environ(), "KAAR_MANIFESTS_DIR="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("render-manifests.sh: %v\n%s", err, b)
	}
	fresh, err := os.ReadFile(filepath.Join(out, "kaar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(fresh) != string(committed) {
		t.Fatal("deploy/manifests/kaar.yaml is stale: run make -C deploy manifests")
	}
	objs := decodeObjects(t, string(fresh))
	if ns := find(t, objs, "Namespace", "kaar"); ns.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace kaar is not labelled for the restricted Pod Security Standard: %v", ns.GetLabels())
	}
}

// TestChartNATSConfigRunsJetStream loads the chart's nats.conf with
// nats-server's own parser, starts a server from it (ports and store
// directory moved to the test's) and checks JetStream answers.
func TestChartNATSConfigRunsJetStream(t *testing.T) {
	objs := render(t, "kaar", "kaar")
	conf, _, _ := unstructured.NestedString(find(t, objs, "ConfigMap", "kaar-nats").Object, "data", "nats.conf")
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", "kaar-nats-0")
	opts, err := natsserver.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server rejects the chart's nats.conf: %v\n%s", err, conf)
	}
	if !opts.JetStream || opts.StoreDir != "/data" || opts.ServerName != "kaar-nats-0" || opts.Port != 4222 || opts.HTTPPort != 8222 {
		t.Fatalf("nats.conf: jetstream=%t store_dir=%q server_name=%q port=%d http=%d", opts.JetStream, opts.StoreDir, opts.ServerName, opts.Port, opts.HTTPPort)
	}
	if opts.JetStreamMaxStore < 1<<29 {
		t.Errorf("max_file_store parsed as %d bytes, want about 1G", opts.JetStreamMaxStore)
	}
	opts.Host, opts.Port, opts.HTTPPort, opts.StoreDir = "127.0.0.1", -1, -1, t.TempDir()
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server from the chart's config did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.AccountInfo(context.Background())
	if err != nil {
		t.Fatalf("JetStream: %v", err)
	}
	if info.Limits.MaxStore != -1 && info.Limits.MaxStore < 1<<29 {
		t.Errorf("JetStream account store limit %d", info.Limits.MaxStore)
	}
}
