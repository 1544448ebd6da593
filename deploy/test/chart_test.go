package deploytest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/services/notifier"
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
	// natsSecret is nats.auth.existingSecret ("" = NATS auth off);
	// tokenSecret and tokenKey the gateway's token file Secret ("" = none);
	// loopback is mcpgateway.auth.loopbackOnly.
	natsSecret, tokenSecret, tokenKey string
	loopback                          bool
	// notifierSecret is notifier.existingSecret ("" = no notifier).
	notifierSecret string
	// natsCluster is nats.cluster.enabled (three NATS nodes, whose routes
	// log in with the key route of natsSecret).
	natsCluster bool
}

// chartServices are the services a rendering runs: the four, and the
// notifier when notify is configured.
func chartServices(tc chartCase) []string {
	if tc.notifierSecret != "" {
		return append(slices.Clone(services), "notifier")
	}
	return services
}

// The notifier's Secret of the test (notifier.existingSecret): a bot
// token with its signing secret, and the inbound webhook's secret.
var notifierSecrets = map[string]string{
	"slack-bot-token":      "xoxb-chart-test-bot-token-0123456789",
	"slack-signing-secret": "chart-test-slack-signing-secret-0123",
	"inbound-secret":       "chart-test-inbound-secret-0123456789",
}

// notifierArgs configure the notifier: Slack (its non-secret part in
// config.notify) and the Secret with its tokens.
const notifierArgs = ",notifier.existingSecret=kaar-notifier,config.notify.slack.channel=C0123ABCD" +
	",config.notify.slack.allowed_users[0]=U0123ABCD,config.notify.slack.allowed_teams[0]=T0123ABCD"

// The Secrets the README tells to create, as the test's stand-ins: kubelet
// would resolve the rendered secretKeyRefs and secret volumes from them.
const demoTokenFile = `- {token: "chart-test-admin-token-0123456789", user: ops@example.com, role: admin}
- {token: "chart-test-read-token-0123456789a", user: dashboards, role: read}
`

func chartSecrets(tc chartCase) map[string]map[string]string {
	out := map[string]map[string]string{}
	if tc.natsSecret != "" {
		out[tc.natsSecret] = map[string]string{}
		for _, r := range bus.Roles() {
			// Hex, as openssl rand -hex makes them (a leading digit too),
			// one per role, all different.
			out[tc.natsSecret][string(r)] = fmt.Sprintf("4f%x0123456789abcdef", string(r))
		}
		if tc.natsCluster {
			out[tc.natsSecret]["route"] = routePassword
		}
	}
	if tc.tokenSecret != "" {
		out[tc.tokenSecret] = map[string]string{tc.tokenKey: demoTokenFile}
	}
	if tc.notifierSecret != "" {
		out[tc.notifierSecret] = notifierSecrets
	}
	return out
}

// withSecrets are the --set arguments that name the two Secrets of the
// README (what render-manifests.sh renders with).
const withSecrets = "mcpgateway.auth.existingSecret=kaar-mcp-tokens,nats.auth.existingSecret=kaar-nats-users"

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
mcpgateway:
  auth:
    existingSecret: gateway-tokens
    secretKey: tokens
nats:
  auth:
    existingSecret: bus-passwords
`), 0o600); err != nil {
		t.Fatal(err)
	}
	return []chartCase{
		{name: "defaults with the two Secrets", args: []string{"--set", withSecrets},
			cluster: "default", natsInChart: true, persistence: true, rbac: true, dryRunPolicy: true, annotations: true, gatewayPods: 2,
			natsSecret: "kaar-nats-users", tokenSecret: "kaar-mcp-tokens", tokenKey: "tokens.yaml"},
		{name: "external NATS and ServiceMonitor",
			args:    []string{"--set", withSecrets + ",nats.enabled=false,nats.url=nats://nats.bus.svc:4222,serviceMonitor.enabled=true,clusterName=prod-eu,mcpgateway.replicas=3,image.tag=v1.2.3"},
			cluster: "prod-eu", natsURL: "nats://nats.bus.svc:4222", rbac: true, dryRunPolicy: true, annotations: true, monitor: true, gatewayPods: 3,
			natsSecret: "kaar-nats-users", tokenSecret: "kaar-mcp-tokens", tokenKey: "tokens.yaml"},
		{name: "external NATS without NATS auth",
			args:    []string{"--set", "mcpgateway.auth.existingSecret=kaar-mcp-tokens,nats.enabled=false,nats.url=nats://nats.bus.svc:4222,nats.auth.enabled=false"},
			cluster: "default", natsURL: "nats://nats.bus.svc:4222", rbac: true, dryRunPolicy: true, annotations: true, gatewayPods: 2,
			tokenSecret: "kaar-mcp-tokens", tokenKey: "tokens.yaml"},
		{name: "loopback-only gateway, no persistence, no RBAC, no annotations",
			args:    []string{"--set", "mcpgateway.auth.loopbackOnly=true,nats.auth.existingSecret=kaar-nats-users,nats.persistence.enabled=false,rbac.create=false,prometheusAnnotations=false,mcpgateway.podDisruptionBudget.enabled=false,serviceMonitor.enabled=true"},
			cluster: "default", natsInChart: true, gatewayPods: 2, monitor: true, loopback: true, natsSecret: "kaar-nats-users"},
		{name: "values file with config overrides", args: []string{"-f", values},
			cluster: "staging_2", natsInChart: true, persistence: true, rbac: true, dryRunPolicy: true, annotations: true, gatewayPods: 2, autoApprove: true,
			natsSecret: "bus-passwords", tokenSecret: "gateway-tokens", tokenKey: "tokens"},
		{name: "high availability (values-ha.yaml) with the notifier", args: []string{"-f", haValues(t), "--set", withSecrets + notifierArgs},
			cluster: "default", natsInChart: true, persistence: true, rbac: true, dryRunPolicy: true, annotations: true, gatewayPods: 2,
			natsSecret: "kaar-nats-users", tokenSecret: "kaar-mcp-tokens", tokenKey: "tokens.yaml", notifierSecret: "kaar-notifier", natsCluster: true},
		{name: "notifier with Slack and the inbound webhook", args: []string{"--set", withSecrets + notifierArgs + ",serviceMonitor.enabled=true"},
			cluster: "default", natsInChart: true, persistence: true, rbac: true, dryRunPolicy: true, annotations: true, monitor: true, gatewayPods: 2,
			natsSecret: "kaar-nats-users", tokenSecret: "kaar-mcp-tokens", tokenKey: "tokens.yaml", notifierSecret: "kaar-notifier"},
	}
}

// TestChartRendersSecureDeployments renders the chart with default and
// non-default values and checks what every rendering must hold: the four
// Deployments (five with the notifier) with probes, requests, a non-root read-only security context,
// one ServiceAccount each, a config.yaml that kaar's own loader accepts
// with each container's environment (Secrets resolved as kubelet would),
// a gateway that starts with tokens (or on loopback only), NATS
// credentials per service, and no Secret anywhere.
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
	for _, svc := range chartServices(tc) {
		dep := find(t, objs, "Deployment", "kaar-"+svc)
		cfg, tokenFile := effectiveConfig(t, tc, objs, dep)
		checkDeployment(t, tc, svc, dep, cfg)
		if svc == "mcpgateway" {
			checkGatewayAuth(t, tc.name, cfg, tokenFile, tc.loopback)
		}
		if svc == "notifier" {
			checkNotifier(t, tc, objs, cfg)
		}
		if got := find(t, objs, "ServiceAccount", "kaar-"+svc); svc == "mcpgateway" || svc == "notifier" {
			if auto, ok, _ := unstructured.NestedBool(got.Object, "automountServiceAccountToken"); !ok || auto {
				t.Errorf("%s ServiceAccount mounts a token: %v", svc, got.Object)
			}
		}
		pdbWanted := !(svc == "mcpgateway" && slices.ContainsFunc(tc.args, func(a string) bool { return strings.Contains(a, "mcpgateway.podDisruptionBudget.enabled=false") }))
		if hasObject(objs, "PodDisruptionBudget", "kaar-"+svc) != pdbWanted {
			t.Errorf("PodDisruptionBudget kaar-%s rendered=%t, want %t", svc, !pdbWanted, pdbWanted)
		}
	}
	for _, kind := range []string{"Deployment", "ServiceAccount", "Service", "PodDisruptionBudget"} {
		if got := hasObject(objs, kind, "kaar-notifier"); got != (tc.notifierSecret != "") {
			t.Errorf("%s kaar-notifier rendered=%t, want it only with notify configured", kind, got)
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
	checkProvisionJob(t, tc, objs)
	if got := len(ofKind(objs, "ClusterRole")) == 3 && len(ofKind(objs, "ClusterRoleBinding")) == 3; got != tc.rbac {
		t.Errorf("3 ClusterRoles and bindings rendered=%t, want %t", got, tc.rbac)
	}
	if got := hasObject(objs, "ValidatingAdmissionPolicy", "kaar-planner-dry-run-only"); got != tc.dryRunPolicy {
		t.Errorf("planner dry-run-only policy rendered=%t, want %t", got, tc.dryRunPolicy)
	}
	if got := len(ofKind(objs, "ServiceMonitor")) == 1; got != tc.monitor {
		t.Errorf("ServiceMonitor rendered=%t, want %t", got, tc.monitor)
	}
	// A loopback-only gateway has no Service: nothing could reach it.
	if got := hasObject(objs, "Service", "kaar-mcpgateway"); got == tc.loopback {
		t.Errorf("gateway Service rendered=%t with loopbackOnly=%t", got, tc.loopback)
	}
	if tc.natsInChart {
		env := natsServerEnv(t, tc, find(t, objs, "StatefulSet", "kaar-nats"))
		conf, _, _ := unstructured.NestedStringMap(find(t, objs, "ConfigMap", "kaar-nats").Object, "data")
		if hasPerms := strings.Contains(conf["nats.conf"], "include ./kaar-permissions.conf") && conf["kaar-permissions.conf"] != ""; hasPerms != (tc.natsSecret != "") {
			t.Errorf("NATS includes kaar-permissions.conf: %t, want %t", hasPerms, tc.natsSecret != "")
		}
		n := 0
		for _, kv := range env {
			if name, _, _ := strings.Cut(kv, "="); strings.HasSuffix(name, "_PASSWORD") && name != "KAAR_NATS_ROUTE_PASSWORD" {
				n++
			}
		}
		if (n == len(bus.Roles())) != (tc.natsSecret != "") {
			t.Errorf("NATS server gets %d passwords, want one per role with NATS auth only", n)
		}
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

// effectiveConfig is the configuration a Deployment's container runs
// with: config.yaml plus its environment through kaar's own loader, the
// secretKeyRefs resolved from the case's Secrets. tokenFile is a local copy
// of the Secret mounted at mcp.token_file ("" when none is configured).
func effectiveConfig(t *testing.T, tc chartCase, objs []*unstructured.Unstructured, dep *unstructured.Unstructured) (cfg config.Config, tokenFile string) {
	t.Helper()
	cfgYAML, _, _ := unstructured.NestedString(find(t, objs, "ConfigMap", "kaar-config").Object, "data", "config.yaml")
	secrets := chartSecrets(tc)
	spec, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	c := spec["containers"].([]any)[0].(map[string]any)
	env := resolveEnv(t, dep.GetName(), c, secrets)
	cfg, err := config.Load(strings.NewReader(cfgYAML), env)
	if err != nil {
		t.Fatalf("%s: kaar rejects the rendered config.yaml with env %v: %v\n%s", dep.GetName(), env, err, cfgYAML)
	}
	if cfg.MCP.TokenFile == "" {
		return cfg, ""
	}
	// The file at mcp.token_file is the Secret volume mounted (read-only)
	// on its directory.
	dir, base := filepath.Split(cfg.MCP.TokenFile)
	mounts, _ := c["volumeMounts"].([]any)
	for _, m := range mounts {
		mount := m.(map[string]any)
		if mount["mountPath"] != filepath.Clean(dir) {
			continue
		}
		if mount["readOnly"] != true {
			t.Errorf("%s: the token file is mounted writable", dep.GetName())
		}
		volumes, _ := spec["volumes"].([]any)
		for _, v := range volumes {
			vol := v.(map[string]any)
			if vol["name"] != mount["name"] {
				continue
			}
			secretName, _, _ := unstructured.NestedString(vol, "secret", "secretName")
			if secretName == "" || secretName != tc.tokenSecret {
				t.Fatalf("%s: token file volume %v, want Secret %q", dep.GetName(), vol, tc.tokenSecret)
			}
			items, _, _ := unstructured.NestedSlice(vol, "secret", "items")
			for _, it := range items {
				item := it.(map[string]any)
				if item["path"] == base {
					content, ok := secrets[secretName][item["key"].(string)]
					if !ok {
						t.Fatalf("%s: token file from key %v of Secret %s, which the README does not create", dep.GetName(), item["key"], secretName)
					}
					return cfg, writeTemp(t, "tokens.yaml", content)
				}
			}
			t.Fatalf("%s: Secret volume %v has no item %s", dep.GetName(), vol, base)
		}
	}
	t.Fatalf("%s: mcp.token_file %s is not on a mounted volume", dep.GetName(), cfg.MCP.TokenFile)
	return cfg, ""
}

// resolveEnv is a container's environment as NAME=value, with
// secretKeyRefs resolved from secrets; a reference to a Secret or key
// that does not exist fails the test.
func resolveEnv(t *testing.T, where string, c map[string]any, secrets map[string]map[string]string) []string {
	t.Helper()
	env := []string{}
	envList, _ := c["env"].([]any)
	for _, e := range envList {
		m := e.(map[string]any)
		name := m["name"].(string)
		if v, ok := m["value"].(string); ok {
			// kubelet expands $(NAME) of the variables defined before.
			for _, kv := range env {
				k, val, _ := strings.Cut(kv, "=")
				v = strings.ReplaceAll(v, "$("+k+")", val)
			}
			env = append(env, name+"="+v)
			continue
		}
		if ref, ok, _ := unstructured.NestedMap(m, "valueFrom", "secretKeyRef"); ok {
			secret, key := ref["name"].(string), ref["key"].(string)
			v, found := secrets[secret][key]
			if _, exists := secrets[secret]; exists && !found && ref["optional"] == true {
				continue // kubelet leaves an optional key that is absent unset
			}
			if !found {
				t.Fatalf("%s: %s from Secret %q key %q, which is not the one to create", where, name, secret, key)
			}
			env = append(env, name+"="+v)
			continue
		}
		if path, ok, _ := unstructured.NestedString(m, "valueFrom", "fieldRef", "fieldPath"); ok && path == "metadata.name" {
			env = append(env, name+"=kaar-nats-0")
			continue
		}
		t.Fatalf("%s: env %s: unexpected source %v", where, name, m)
	}
	return env
}

// natsServerEnv is the chart's NATS container environment, resolved.
func natsServerEnv(t *testing.T, tc chartCase, sts *unstructured.Unstructured) []string {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(sts.Object, "spec", "template", "spec", "containers")
	return resolveEnv(t, sts.GetName(), containers[0].(map[string]any), chartSecrets(tc))
}

func checkDeployment(t *testing.T, tc chartCase, svc string, dep *unstructured.Unstructured, cfg config.Config) {
	t.Helper()
	replicas, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas")
	if svc == "mcpgateway" && replicas != tc.gatewayPods {
		t.Errorf("gateway replicas = %d, want %d", replicas, tc.gatewayPods)
	}
	spec, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	if sa := spec["serviceAccountName"]; sa != "kaar-"+svc {
		t.Errorf("%s: serviceAccountName %v, want kaar-%s", svc, sa, svc)
	}
	if auto := spec["automountServiceAccountToken"]; auto != (svc != "mcpgateway" && svc != "notifier") {
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
	loopbackGateway := svc == "mcpgateway" && tc.loopback
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		got, _, _ := unstructured.NestedString(c, probe, "httpGet", "path")
		if loopbackGateway {
			// kubelet probes the pod's IP, where nothing listens.
			if _, has := c[probe]; has {
				t.Errorf("%s: %s on a loopback-only gateway", svc, probe)
			}
		} else if got != path {
			t.Errorf("%s: %s path %q, want %q", svc, probe, got, path)
		}
	}
	for _, res := range []string{"cpu", "memory"} {
		if _, ok, _ := unstructured.NestedString(c, "resources", "requests", res); !ok {
			t.Errorf("%s: no %s request", svc, res)
		}
	}
	annotations, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "annotations")
	if (annotations["prometheus.io/scrape"] == "true") != (tc.annotations && !loopbackGateway) {
		t.Errorf("%s: prometheus annotations %v, want %t", svc, annotations, tc.annotations)
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
	wantUser, wantPassword := "", ""
	if tc.natsSecret != "" {
		wantUser, wantPassword = "kaar-"+svc, chartSecrets(tc)[tc.natsSecret][svc]
	}
	if cfg.NATS.User != wantUser || cfg.NATS.Password != wantPassword {
		t.Errorf("%s: nats.user %q password %q, want %q %q (its own, from Secret %q)", svc, cfg.NATS.User, cfg.NATS.Password, wantUser, wantPassword, tc.natsSecret)
	}
	if svc == "mcpgateway" {
		host := "0.0.0.0"
		if tc.loopback {
			host = "127.0.0.1"
		}
		if cfg.Server.Host != host || cfg.Server.Port != 8000 {
			t.Errorf("gateway listens on %s:%d, want %s:8000", cfg.Server.Host, cfg.Server.Port, host)
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

// TestChartRefusesInsecureOrIncompleteValues: values that would install a
// gateway that cannot start (no tokens on 0.0.0.0), a bus anyone can use,
// secrets in the ConfigMap, or no bus at all are an error naming the fix,
// not a broken install.
func TestChartRefusesInsecureOrIncompleteValues(t *testing.T) {
	for _, tc := range []struct {
		name, set, want string
	}{
		{"no gateway tokens", "nats.auth.existingSecret=kaar-nats-users", "create secret generic kaar-mcp-tokens"},
		{"no gateway tokens with NATS auth off", "nats.auth.enabled=false", "mcpgateway.auth.loopbackOnly=true"},
		{"the chart's NATS without authentication", "mcpgateway.auth.existingSecret=t,nats.auth.enabled=false", "nats.auth.enabled=false with the chart's NATS server"},
		{"no NATS passwords", "mcpgateway.auth.existingSecret=kaar-mcp-tokens", "create secret generic kaar-nats-users"},
		{"external NATS without NATS passwords", "mcpgateway.auth.existingSecret=t,nats.enabled=false,nats.url=nats://bus:4222", "nats.auth.existingSecret=kaar-nats-users"},
		{"tokens in the ConfigMap", withSecrets + ",config.mcp.tokens[0].token=0123456789abcdef0,config.mcp.tokens[0].user=a,config.mcp.tokens[0].role=admin", "config.mcp.tokens would be stored in a ConfigMap"},
		{"token file path in config", withSecrets + ",config.mcp.token_file=/x", "config.mcp.token_file is set by the chart"},
		{"NATS password in the ConfigMap", withSecrets + ",config.nats.password=secret", "config.nats.user/password"},
		{"token Secret without a key", withSecrets + ",mcpgateway.auth.secretKey=", "mcpgateway.auth.secretKey"},
		{"external NATS without URL", withSecrets + ",nats.enabled=false", "nats.url is required"},
		{"no signing keys Secret", withSecrets + ",signing.existingSecret=", "create secret generic kaar-signing-keys"},
		{"signing key file in config", withSecrets + ",config.signing.key_file=/k", "config.signing.key_file/key_dir are set by the chart"},
		{"signing key directory in config", withSecrets + ",config.signing.key_dir=/k", "config.signing.key_file/key_dir are set by the chart"},
		{"notify without the notifier's Secret", withSecrets + ",config.notify.slack.channel=C0123ABCD", "create secret generic kaar-notifier"},
		{"Slack bot token in the ConfigMap", withSecrets + notifierArgs + ",config.notify.slack.bot_token=xoxb-0123456789", "config.notify's Slack tokens and inbound secret would be stored in a ConfigMap"},
		{"Slack signing secret in the ConfigMap", withSecrets + notifierArgs + ",config.notify.slack.signing_secret=0123456789abcdef", "config.notify's Slack tokens"},
		{"inbound secret in the ConfigMap", withSecrets + notifierArgs + ",config.notify.inbound.secret=0123456789abcdef", "config.notify's Slack tokens"},
		{"outbound webhook secret in the ConfigMap", withSecrets + notifierArgs + ",config.notify.webhooks[0].name=ops,config.notify.webhooks[0].url=https://h.example,config.notify.webhooks[0].secret=0123456789abcdef", "config.notify.webhooks and config.notify.inbound.senders carry their secrets"},
		{"inbound senders in the ConfigMap", withSecrets + notifierArgs + ",config.notify.inbound.senders[0].name=pd,config.notify.inbound.senders[0].secret=0123456789abcdef", "config.notify.webhooks and config.notify.inbound.senders"},
		{"notify listen address in config", withSecrets + notifierArgs + ",config.notify.listen=0.0.0.0:1", "config.notify.listen is set by the chart"},
		{"R3 streams on the chart's single NATS node", withSecrets + ",config.nats.replicas=3", "config.nats.replicas=3 needs a NATS cluster of three JetStream servers"},
		{"R1 streams on the chart's three NATS nodes", withSecrets + ",nats.cluster.enabled=true,config.nats.replicas=1", "config.nats.replicas=1 with nats.cluster.enabled"},
		{"unknown anti-affinity", withSecrets + ",podAntiAffinity=always", `podAntiAffinity "always": use soft`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helmTemplate(t, "kaar", "kaar", "--set", tc.set)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("helm template --set %s: err = %v, want %q", tc.set, err, tc.want)
			}
		})
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

// TestChartNATSConfigRunsJetStream loads the chart's nats.conf (and the
// kaar-permissions.conf it includes) with nats-server's own parser, starts
// a server from it (ports and store directory moved to the test's) with
// the environment the StatefulSet gives it, then logs in as each service
// with the credentials its Deployment gives it and declares the bus: the
// server's users and the services' logins are the same, and each is
// limited to its own subjects (the kill switch).
func TestChartNATSConfigRunsJetStream(t *testing.T) {
	root := repoRoot(t)
	canonical, err := os.ReadFile(filepath.Join(root, "deploy", "nats", "kaar-permissions.conf"))
	if err != nil {
		t.Fatal(err)
	}
	chartCopy, err := os.ReadFile(filepath.Join(chartDir(t), "files", "kaar-permissions.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if string(chartCopy) != string(canonical) {
		t.Fatal("deploy/helm/kaar/files/kaar-permissions.conf differs from deploy/nats/kaar-permissions.conf: copy it over")
	}
	// The case with the notifier: every service of the chart logs in.
	cases := chartCases(t)
	tc := cases[len(cases)-1]
	if tc.notifierSecret == "" {
		t.Fatal("the last chart case should run the notifier")
	}
	objs := render(t, "kaar", "kaar-system", tc.args...)
	data, _, _ := unstructured.NestedStringMap(find(t, objs, "ConfigMap", "kaar-nats").Object, "data")
	if data["kaar-permissions.conf"] != string(canonical) {
		t.Fatal("the chart's NATS ConfigMap does not carry deploy/nats/kaar-permissions.conf")
	}
	dir := t.TempDir()
	for name, content := range data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, kv := range natsServerEnv(t, tc, find(t, objs, "StatefulSet", "kaar-nats")) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	opts, err := natsserver.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("nats-server rejects the chart's nats.conf: %v\n%s", err, data["nats.conf"])
	}
	if !opts.JetStream || opts.StoreDir != "/data" || opts.ServerName != "kaar-nats-0" || opts.Port != 4222 || opts.HTTPPort != 8222 {
		t.Fatalf("nats.conf: jetstream=%t store_dir=%q server_name=%q port=%d http=%d", opts.JetStream, opts.StoreDir, opts.ServerName, opts.Port, opts.HTTPPort)
	}
	if opts.JetStreamMaxStore < 1<<29 {
		t.Errorf("max_file_store parsed as %d bytes, want about 1G", opts.JetStreamMaxStore)
	}
	if len(opts.Users) != len(bus.Roles()) {
		t.Fatalf("%d NATS users, want one per role", len(opts.Users))
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
	cfgs := map[string]config.Config{}
	for _, svc := range chartServices(tc) {
		cfgs[svc], _ = effectiveConfig(t, tc, objs, find(t, objs, "Deployment", "kaar-"+svc))
	}
	cfgs["provisioner"], _ = effectiveConfig(t, tc, objs, find(t, objs, "Job", "kaar-provision"))
	checkBusAsServices(t, ns.ClientURL(), cfgs)
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(cfgs["mcpgateway"].NATS.User, cfgs["mcpgateway"].NATS.Password),
		nats.CustomInboxPrefix(bus.RoleMCPGateway.InboxPrefix()))
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

// checkProvisionJob: the chart runs "kaar bus provision" as a Helm hook
// (before every upgrade; at install before the release's objects with an
// external NATS, after them with the chart's own NATS, which does not
// exist before), as kaar-provisioner, with the services' configuration.
func checkProvisionJob(t *testing.T, tc chartCase, objs []*unstructured.Unstructured) {
	t.Helper()
	job := find(t, objs, "Job", "kaar-provision")
	hook := job.GetAnnotations()["helm.sh/hook"]
	want := "pre-install,pre-upgrade"
	if tc.natsInChart {
		want = "post-install,pre-upgrade"
	}
	if hook != want {
		t.Errorf("provision Job hook %q, want %q", hook, want)
	}
	spec, _, _ := unstructured.NestedMap(job.Object, "spec", "template", "spec")
	c := spec["containers"].([]any)[0].(map[string]any)
	if cmd := fmt.Sprint(c["command"]); cmd != "[kaar bus provision --config /etc/kaar/config.yaml]" {
		t.Errorf("provision Job command %s", cmd)
	}
	checkSecurityContext(t, "provision", job)
	if auto := spec["automountServiceAccountToken"]; auto != false {
		t.Errorf("provision Job mounts a ServiceAccount token: %v", auto)
	}
	cm := find(t, objs, "ConfigMap", "kaar-provision")
	if h := cm.GetAnnotations()["helm.sh/hook"]; h != want {
		t.Errorf("provision ConfigMap hook %q, want %q (it must exist when the Job runs)", h, want)
	}
	got, _, _ := unstructured.NestedString(cm.Object, "data", "config.yaml")
	main, _, _ := unstructured.NestedString(find(t, objs, "ConfigMap", "kaar-config").Object, "data", "config.yaml")
	if got != main {
		t.Errorf("the provision Job's config.yaml differs from the services':\n%s\n---\n%s", got, main)
	}
	if tc.natsSecret != "" {
		cfg, _ := effectiveConfig(t, tc, objs, job)
		if cfg.NATS.User != bus.RoleProvisioner.User() || cfg.NATS.Password == "" {
			t.Errorf("provision Job logs in as %q (password set %t), want kaar-provisioner", cfg.NATS.User, cfg.NATS.Password != "")
		}
	}
}

// checkNotifier: the notifier's Slack tokens and inbound secret reach it
// from its Secret and appear in no ConfigMap; it listens for Slack and the
// inbound webhook on the port its Service targets; no RBAC binding names
// its ServiceAccount; the provision Job sees the same notify section, so
// it declares the consumers the notifier binds to.
func checkNotifier(t *testing.T, tc chartCase, objs []*unstructured.Unstructured, cfg config.Config) {
	t.Helper()
	n := cfg.Notify
	if n.Listen != "0.0.0.0:8081" {
		t.Errorf("notifier: notify.listen %q, want 0.0.0.0:8081 (its Service's target)", n.Listen)
	}
	if n.Slack.BotToken != notifierSecrets["slack-bot-token"] || n.Slack.SigningSecret != notifierSecrets["slack-signing-secret"] || n.Slack.AppToken != "" {
		t.Errorf("notifier: Slack bot token %q signing secret %q app token %q, want those of Secret %s (no app token)", n.Slack.BotToken, n.Slack.SigningSecret, n.Slack.AppToken, tc.notifierSecret)
	}
	if got := n.Inbound.InboundSenders(); len(got) != 1 || got[0].Secret != notifierSecrets["inbound-secret"] {
		t.Errorf("notifier: inbound senders %v, want the one of Secret %s", got, tc.notifierSecret)
	}
	if n.Slack.Channel != "C0123ABCD" || !n.SlackEnabled() || !n.Enabled() {
		t.Errorf("notifier: Slack channel %q enabled %t", n.Slack.Channel, n.SlackEnabled())
	}
	for _, cm := range ofKind(objs, "ConfigMap") {
		data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
		for _, content := range data {
			for key, secret := range notifierSecrets {
				if strings.Contains(content, secret) {
					t.Errorf("ConfigMap %s holds the notifier's %s", cm.GetName(), key)
				}
			}
		}
	}
	svc := find(t, objs, "Service", "kaar-notifier")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if len(ports) != 1 || ports[0].(map[string]any)["targetPort"] != "notify" {
		t.Errorf("notifier Service ports %v, want one targeting the container port notify", ports)
	}
	containers, _, _ := unstructured.NestedSlice(find(t, objs, "Deployment", "kaar-notifier").Object, "spec", "template", "spec", "containers")
	cports, _ := containers[0].(map[string]any)["ports"].([]any)
	if !slices.ContainsFunc(cports, func(p any) bool {
		m := p.(map[string]any)
		return m["name"] == "notify" && m["containerPort"] == int64(8081)
	}) {
		t.Errorf("notifier container ports %v, want notify on 8081 (notify.listen)", cports)
	}
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, b := range ofKind(objs, kind) {
			subjects, _, _ := unstructured.NestedSlice(b.Object, "subjects")
			for _, s := range subjects {
				if s.(map[string]any)["name"] == "kaar-notifier" {
					t.Errorf("%s %s binds the notifier, which holds no Kubernetes access", kind, b.GetName())
				}
			}
		}
	}
	prov, _ := effectiveConfig(t, tc, objs, find(t, objs, "Job", "kaar-provision"))
	want, err := notifier.BusConfig(cfg)
	if err != nil {
		t.Fatalf("notifier: bus declaration: %v", err)
	}
	got, err := notifier.BusConfig(prov)
	if err != nil {
		t.Fatalf("provision Job: bus declaration: %v", err)
	}
	if want.Notify == nil || len(want.Notify.Consumers) != 1 || !reflect.DeepEqual(got.Notify, want.Notify) {
		t.Errorf("the provision Job declares the notifier's %+v, the notifier binds to %+v (want its Slack consumer in both)", got.Notify, want.Notify)
	}
}
