package deploytest

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/services/notifier"
	natsserver "github.com/nats-io/nats-server/v2/server"
)

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yaml")},
		cli.WithWorkingDirectory(root), cli.WithName("kaar"), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose-spec loader rejects docker-compose.yaml: %v", err)
	}
	return p
}

// composeConfig is the configuration kaar-<name> runs with in the compose
// deployment: the kaar-config file plus the service's environment (its
// env_file included), through kaar's own loader.
func composeConfig(t *testing.T, p *types.Project, name string) config.Config {
	t.Helper()
	cfgYAML, err := os.ReadFile(p.Configs["kaar-config"].File)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for k, v := range p.Services[name].Environment {
		if v != nil {
			env = append(env, k+"="+*v)
		}
	}
	cfg, err := config.Load(strings.NewReader(string(cfgYAML)), env)
	if err != nil {
		t.Fatalf("%s: kaar rejects its compose configuration: %v", name, err)
	}
	return cfg
}

// mountedConfig is the file of the compose config mounted at target in
// service svc.
func mountedConfig(t *testing.T, p *types.Project, svc, target string) string {
	t.Helper()
	for _, c := range p.Services[svc].Configs {
		if c.Target == target {
			return p.Configs[c.Source].File
		}
	}
	t.Fatalf("%s: no config mounted at %s: %v", svc, target, p.Services[svc].Configs)
	return ""
}

// TestComposeFileDefinesTheSplitDeployment loads docker-compose.yaml with
// the compose-spec loader (what `docker compose` uses) and checks the
// deployment it describes: NATS with JetStream and kaar's permissions, the
// demo cluster (the sandbox control plane, kaar-demo-cluster), every image
// built from the root Dockerfile, the five services hardened, their configuration
// accepted by kaar's own loader with a NATS login each, the MCP endpoint
// and the notifier's inbound webhook published on the host's loopback
// only, with tokens the gateway accepts and the notifier's secret from the
// demo secrets, and no cluster credentials for the gateway and the
// notifier, and each of watcher, planner and executor only its own
// kubeconfig.
func TestComposeFileDefinesTheSplitDeployment(t *testing.T) {
	p := loadCompose(t)
	want := []string{"cluster", "executor", "mcpgateway", "nats", "notifier", "planner", "provision", "watcher"}
	if got := p.ServiceNames(); !slices.Equal(sorted(got), want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	natsSvc := p.Services["nats"]
	if !slices.Equal(natsSvc.Command, []string{"nats-server", "--config", "/etc/nats/nats.conf"}) || natsSvc.Image != "ghcr.io/kaar-dev/nats-server:dev" {
		t.Errorf("nats: image %q command %v, want the nats-server image built here with --config /etc/nats/nats.conf", natsSvc.Image, natsSvc.Command)
	}
	if got := mountedConfig(t, p, "nats", "/etc/nats/kaar-permissions.conf"); got != filepath.Join(repoRoot(t), "deploy", "nats", "kaar-permissions.conf") {
		t.Errorf("nats: kaar-permissions.conf from %s, want deploy/nats/kaar-permissions.conf", got)
	}
	if natsSvc.HealthCheck == nil || len(natsSvc.HealthCheck.Test) == 0 {
		t.Error("nats has no healthcheck; the services wait for it")
	}
	root := repoRoot(t)
	checkComposeImages(t, p)
	checkComposeCluster(t, p)
	cfgFile := p.Configs["kaar-config"].File
	if cfgFile != filepath.Join(root, "deploy", "compose", "config.yaml") {
		t.Errorf("config kaar-config from %q", cfgFile)
	}
	for _, name := range composeServices {
		s := p.Services[name]
		if s.Image != p.Services["provision"].Image || s.PullPolicy != types.PullPolicyNever || s.Build != nil {
			t.Errorf("%s: image %q pull_policy %q build %+v, want provision's image as built, never pulled", name, s.Image, s.PullPolicy, s.Build)
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) < 3 || s.HealthCheck.Test[1] != "kaar-httpcheck" || !strings.HasSuffix(s.HealthCheck.Test[2], "/readyz") {
			t.Errorf("%s: healthcheck %+v, want kaar-httpcheck of its /readyz", name, s.HealthCheck)
		}
		if len(s.Command) == 0 || s.Command[0] != "kaar-"+name {
			t.Errorf("%s: command %v, want kaar-%s", name, s.Command, name)
		}
		if !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: read_only=%t cap_drop=%v security_opt=%v, want read-only, ALL dropped, no-new-privileges", name, s.ReadOnly, s.CapDrop, s.SecurityOpt)
		}
		if s.User == "" || strings.HasPrefix(s.User, "0") || strings.HasPrefix(s.User, "root") {
			t.Errorf("%s: user %q, want non-root", name, s.User)
		}
		if dep, ok := s.DependsOn["nats"]; !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: does not wait for a healthy NATS: %v", name, s.DependsOn)
		}
		if dep, ok := s.DependsOn["provision"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s: does not wait for kaar bus provision: %v", name, s.DependsOn)
		}
		if !slices.ContainsFunc(s.Configs, func(c types.ServiceConfigObjConfig) bool {
			return c.Source == "kaar-config" && c.Target == "/etc/kaar/config.yaml"
		}) {
			t.Errorf("%s: kaar-config not mounted at /etc/kaar/config.yaml: %v", name, s.Configs)
		}
		cfg := composeConfig(t, p, name)
		if cfg.NATS.URL != "nats://nats:4222" || cfg.Kubernetes.ClusterName != "compose" {
			t.Errorf("%s: nats.url %q cluster %q", name, cfg.NATS.URL, cfg.Kubernetes.ClusterName)
		}
		if cfg.NATS.User != "kaar-"+name || cfg.NATS.Password == "" {
			t.Errorf("%s: nats.user %q (password set: %t), want its own user kaar-%s", name, cfg.NATS.User, cfg.NATS.Password != "", name)
		}
		for k := range s.Environment {
			if strings.HasPrefix(k, "KAAR_NATS_") && strings.HasSuffix(k, "_PASSWORD") && k != "KAAR_NATS_PASSWORD" {
				t.Errorf("%s: gets %s, another service's NATS password", name, k)
			}
		}
		hasKube := slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return strings.HasPrefix(v.Source, "kube-") })
		if name == "mcpgateway" {
			if hasKube || cfg.Kubernetes.Kubeconfig != "" {
				t.Error("mcpgateway gets cluster credentials; it must hold none")
			}
			if cfg.Server.Host != "0.0.0.0" || cfg.Server.Port != 8000 {
				t.Errorf("gateway listens on %s:%d inside its container, want 0.0.0.0:8000", cfg.Server.Host, cfg.Server.Port)
			}
			if len(s.Ports) != 1 || s.Ports[0].HostIP != "127.0.0.1" || s.Ports[0].Published != "8000" || s.Ports[0].Target != 8000 {
				t.Errorf("gateway ports %+v, want 127.0.0.1:8000:8000", s.Ports)
			}
			// The token file is the compose secret mounted at
			// mcp.token_file (compose mounts secrets at /run/secrets/<name>
			// unless a target is given).
			var tokenFile string
			for _, sec := range s.Secrets {
				target := sec.Target
				if target == "" {
					target = sec.Source
				}
				if !strings.HasPrefix(target, "/") {
					target = "/run/secrets/" + target
				}
				if target == cfg.MCP.TokenFile {
					tokenFile = p.Secrets[sec.Source].File
				}
			}
			if tokenFile == "" {
				t.Fatalf("gateway: mcp.token_file %q is not one of its secrets %+v", cfg.MCP.TokenFile, s.Secrets)
			}
			if filepath.Dir(tokenFile) != filepath.Join(root, "deploy", "compose", "demo-secrets") {
				t.Errorf("gateway tokens from %s, want the demo-only deploy/compose/demo-secrets", tokenFile)
			}
			checkGatewayAuth(t, "compose", cfg, tokenFile, false)
			continue
		}
		if name == "notifier" {
			checkComposeNotifier(t, p, cfg, hasKube)
			continue
		}
		if len(s.Volumes) != 1 || s.Volumes[0].Source != "kube-"+name || s.Volumes[0].Target != "/kube" || !s.Volumes[0].ReadOnly ||
			cfg.Kubernetes.Kubeconfig != "/kube/kubeconfig" {
			t.Errorf("%s: kubeconfig %q, volumes %+v: want its own volume kube-%s read-only at /kube and /kube/kubeconfig", name, cfg.Kubernetes.Kubeconfig, s.Volumes, name)
		}
		if dep, ok := s.DependsOn["cluster"]; !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: does not wait for the healthy demo cluster (which writes its kubeconfig): %v", name, s.DependsOn)
		}
		if len(s.Ports) != 0 {
			t.Errorf("%s publishes ports %v; only the gateway should", name, s.Ports)
		}
	}
}

// TestComposeNATSLogsInEachService starts nats-server from the compose
// file's NATS configuration (nats.conf and the kaar-permissions.conf
// mounted next to it, with the nats service's environment; ports and store
// moved to the test's) and logs in as each kaar service with the
// credentials its compose environment gives it.
func TestComposeNATSLogsInEachService(t *testing.T) {
	p := loadCompose(t)
	dir := t.TempDir()
	for _, target := range []string{"/etc/nats/nats.conf", "/etc/nats/kaar-permissions.conf"} {
		b, err := os.ReadFile(mountedConfig(t, p, "nats", target))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(target)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range p.Services["nats"].Environment {
		if v != nil {
			t.Setenv(k, *v)
		}
	}
	opts, err := natsserver.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("nats-server rejects the compose NATS configuration: %v", err)
	}
	if !opts.JetStream || opts.StoreDir != "/data" || opts.Port != 4222 || opts.HTTPPort != 8222 || len(opts.Users) != len(bus.Roles()) {
		t.Fatalf("compose nats.conf: jetstream=%t store_dir=%q port=%d http=%d users=%d", opts.JetStream, opts.StoreDir, opts.Port, opts.HTTPPort, len(opts.Users))
	}
	if slices.ContainsFunc(p.Services["nats"].Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == "/data" && v.Source == "nats-data" }) == false {
		t.Error("nats: JetStream's /data is not the nats-data volume")
	}
	opts.Host, opts.Port, opts.HTTPPort, opts.StoreDir = "127.0.0.1", -1, -1, t.TempDir()
	s, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server from the compose configuration did not start")
	}
	cfgs := map[string]config.Config{}
	for _, svc := range composeServices {
		cfgs[svc] = composeConfig(t, p, svc)
	}
	prov := p.Services["provision"]
	if !slices.Equal(prov.Command, []string{"kaar", "bus", "provision", "--config", "/etc/kaar/config.yaml"}) {
		t.Errorf("provision: command %v, want kaar bus provision", prov.Command)
	}
	cfgs["provisioner"] = composeConfig(t, p, "provision")
	checkBusAsServices(t, s.ClientURL(), cfgs)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// composeServices are the kaar services of docker-compose.yaml: the four
// and the notifier.
var composeServices = append(slices.Clone(services), "notifier")

// checkComposeNotifier: the notifier holds no cluster credentials, serves
// the inbound approval webhook on 0.0.0.0:8081 in its container, published
// on the host's loopback only, with the demo secret of
// demo-secrets/notify.env (not in the shared config file), and the
// provision job sees the same notify section, so it declares the stream
// the notifier binds to.
func checkComposeNotifier(t *testing.T, p *types.Project, cfg config.Config, hasKube bool) {
	t.Helper()
	s := p.Services["notifier"]
	if hasKube || cfg.Kubernetes.Kubeconfig != "" {
		t.Error("notifier gets cluster credentials; it must hold none")
	}
	if cfg.Notify.Listen != "0.0.0.0:8081" || cfg.Server.MetricsAddr != ":9090" {
		t.Errorf("notifier: notify.listen %q metrics_addr %q, want 0.0.0.0:8081 and :9090", cfg.Notify.Listen, cfg.Server.MetricsAddr)
	}
	if len(s.Ports) != 1 || s.Ports[0].HostIP != "127.0.0.1" || s.Ports[0].Published != "8081" || s.Ports[0].Target != 8081 {
		t.Errorf("notifier ports %+v, want 127.0.0.1:8081:8081", s.Ports)
	}
	senders := cfg.Notify.Inbound.InboundSenders()
	if !cfg.Notify.Enabled() || len(senders) != 1 || len(senders[0].Secret) < 16 {
		t.Fatalf("notifier: notify enabled %t, inbound senders %v: want the demo inbound webhook", cfg.Notify.Enabled(), senders)
	}
	shared, err := os.ReadFile(p.Configs["kaar-config"].File)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(shared), senders[0].Secret) {
		t.Error("the inbound webhook's secret is in the shared config file")
	}
	demo := filepath.Join(repoRoot(t), "deploy", "compose", "demo-secrets")
	for _, f := range s.EnvFiles {
		if filepath.Dir(f.Path) != demo {
			t.Errorf("notifier: env_file %s outside the demo-only deploy/compose/demo-secrets", f.Path)
		}
	}
	for name, svc := range p.Services {
		if name == "notifier" || name == "provision" {
			continue
		}
		for k := range svc.Environment {
			if strings.HasPrefix(k, "KAAR_NOTIFY_") {
				t.Errorf("%s gets the notifier's %s", name, k)
			}
		}
	}
	want, err := notifier.BusConfig(cfg)
	if err != nil || want.Notify == nil {
		t.Fatalf("notifier: bus declaration %+v: %v", want.Notify, err)
	}
	got, err := notifier.BusConfig(composeConfig(t, p, "provision"))
	if err != nil || !reflect.DeepEqual(got.Notify, want.Notify) {
		t.Errorf("provision declares the notifier's %+v (%v), the notifier binds to %+v", got.Notify, err, want.Notify)
	}
}

// checkComposeImages: the three images are built from the root Dockerfile,
// each from its context under .cache/images (deploy/hack/build-images.sh),
// the kaar image by provision alone.
func checkComposeImages(t *testing.T, p *types.Project) {
	t.Helper()
	root := repoRoot(t)
	for svc, ctx := range map[string]string{"nats": "nats", "cluster": "cluster", "provision": "kaar"} {
		b := p.Services[svc].Build
		if b == nil {
			t.Errorf("%s: no build section", svc)
			continue
		}
		dockerfile := b.Dockerfile
		if !filepath.IsAbs(dockerfile) {
			dockerfile = filepath.Join(b.Context, dockerfile)
		}
		if b.Context != filepath.Join(root, ".cache", "images", ctx) || filepath.Clean(dockerfile) != filepath.Join(root, "Dockerfile") {
			t.Errorf("%s: build context %s dockerfile %s, want .cache/images/%s and the root Dockerfile", svc, b.Context, dockerfile, ctx)
		}
	}
	for name, s := range p.Services {
		if name != "nats" && name != "cluster" && name != "provision" && s.Build != nil {
			t.Errorf("%s builds an image too (compose would build the kaar image once per service)", name)
		}
		if s.User != "65532:65532" || !s.ReadOnly {
			t.Errorf("%s: user %q read_only %t, want 65532:65532, read-only", name, s.User, s.ReadOnly)
		}
	}
}

// checkComposeCluster: the demo cluster gets the rendered manifests' roles,
// writes one kubeconfig volume per consumer, keeps its state on a tmpfs,
// publishes the API server on loopback only and is healthy only when
// ready.
func checkComposeCluster(t *testing.T, p *types.Project) {
	t.Helper()
	c := p.Services["cluster"]
	if len(c.Command) == 0 || c.Command[0] != "kaar-demo-cluster" {
		t.Errorf("cluster: command %v, want kaar-demo-cluster", c.Command)
	}
	if got := mountedConfig(t, p, "cluster", "/etc/kaar/kaar.yaml"); got != filepath.Join(repoRoot(t), "deploy", "manifests", "kaar.yaml") {
		t.Errorf("cluster: roles from %s, want deploy/manifests/kaar.yaml", got)
	}
	var vols []string
	for _, v := range c.Volumes {
		vols = append(vols, v.Source+":"+v.Target)
	}
	if want := []string{"kube-admin:/kube/admin", "kube-executor:/kube/executor", "kube-planner:/kube/planner", "kube-watcher:/kube/watcher"}; !slices.Equal(sorted(vols), want) {
		t.Errorf("cluster: volumes %v, want %v", vols, want)
	}
	if !slices.ContainsFunc(c.Tmpfs, func(m string) bool { return strings.HasPrefix(m, "/var/lib/kaar:") }) {
		t.Errorf("cluster: tmpfs %v, want its state on a tmpfs at /var/lib/kaar", c.Tmpfs)
	}
	if len(c.Ports) != 1 || c.Ports[0].HostIP != "127.0.0.1" || c.Ports[0].Target != 6443 {
		t.Errorf("cluster: ports %+v, want the API server on the host's loopback only", c.Ports)
	}
	if c.HealthCheck == nil || !slices.Contains(c.HealthCheck.Test, "http://127.0.0.1:9090/readyz") {
		t.Errorf("cluster: healthcheck %+v, want its /readyz", c.HealthCheck)
	}
}
