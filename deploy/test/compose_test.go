package deploytest

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/kaar-dev/kaar/pkg/config"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// TestComposeFileDefinesTheSplitDeployment loads docker-compose.yaml with
// the compose-spec loader (what `docker compose` uses) and checks the
// deployment it describes: NATS with JetStream, k3s and its demo job, the
// four services hardened, their configuration accepted by kaar's own
// loader, the MCP endpoint published on the host's loopback only, and no
// cluster credentials for the gateway.
func TestComposeFileDefinesTheSplitDeployment(t *testing.T) {
	p := loadCompose(t)
	want := []string{"demo", "executor", "k3s", "mcpgateway", "nats", "planner", "watcher"}
	if got := p.ServiceNames(); !slices.Equal(sorted(got), want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	natsSvc := p.Services["nats"]
	if !slices.Contains(natsSvc.Command, "--jetstream") || !strings.HasPrefix(natsSvc.Image, "nats:") {
		t.Errorf("nats: image %q command %v, want the official image with --jetstream", natsSvc.Image, natsSvc.Command)
	}
	if natsSvc.HealthCheck == nil || len(natsSvc.HealthCheck.Test) == 0 {
		t.Error("nats has no healthcheck; the services wait for it")
	}
	demo := p.Services["demo"]
	if dep, ok := demo.DependsOn["k3s"]; !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("demo job does not wait for a healthy k3s: %v", demo.DependsOn)
	}
	root := repoRoot(t)
	cfgFile := p.Configs["kaar-config"].File
	if cfgFile != filepath.Join(root, "deploy", "compose", "config.yaml") {
		t.Errorf("config kaar-config from %q", cfgFile)
	}
	cfgYAML, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range services {
		s := p.Services[name]
		if s.Build == nil || s.Build.Dockerfile != "Dockerfile" || s.Build.Context != root {
			t.Errorf("%s: build %+v, want the root Dockerfile", name, s.Build)
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
		if !slices.ContainsFunc(s.Configs, func(c types.ServiceConfigObjConfig) bool {
			return c.Source == "kaar-config" && c.Target == "/etc/kaar/config.yaml"
		}) {
			t.Errorf("%s: kaar-config not mounted at /etc/kaar/config.yaml: %v", name, s.Configs)
		}
		var env []string
		for k, v := range s.Environment {
			if v != nil {
				env = append(env, k+"="+*v)
			}
		}
		cfg, err := config.Load(strings.NewReader(string(cfgYAML)), env)
		if err != nil {
			t.Fatalf("%s: kaar rejects its compose configuration: %v", name, err)
		}
		if cfg.NATS.URL != "nats://nats:4222" || cfg.Kubernetes.ClusterName != "compose" {
			t.Errorf("%s: nats.url %q cluster %q", name, cfg.NATS.URL, cfg.Kubernetes.ClusterName)
		}
		hasKube := slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Source == "kubeconfig" })
		if name == "mcpgateway" {
			if hasKube || cfg.Kubernetes.Kubeconfig != "" {
				t.Error("mcpgateway gets cluster credentials; it must hold none")
			}
			if cfg.Server.Host != "0.0.0.0" || cfg.Server.Port != 8080 {
				t.Errorf("gateway listens on %s:%d inside its container, want 0.0.0.0:8080", cfg.Server.Host, cfg.Server.Port)
			}
			if len(s.Ports) != 1 || s.Ports[0].HostIP != "127.0.0.1" || s.Ports[0].Published != "8080" || s.Ports[0].Target != 8080 {
				t.Errorf("gateway ports %+v, want 127.0.0.1:8080:8080", s.Ports)
			}
			continue
		}
		if !hasKube || cfg.Kubernetes.Kubeconfig != "/kube/kubeconfig-internal.yaml" {
			t.Errorf("%s: kubeconfig %q (volume %t), want the demo job's /kube/kubeconfig-internal.yaml", name, cfg.Kubernetes.Kubeconfig, hasKube)
		}
		if dep, ok := s.DependsOn["demo"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s: does not wait for the demo job (which writes its kubeconfig): %v", name, s.DependsOn)
		}
		if len(s.Ports) != 0 {
			t.Errorf("%s publishes ports %v; only the gateway should", name, s.Ports)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestComposeDemoManifestsAcceptedByAPIServer dry-runs the compose demo's
// manifests (both revisions) on the sandbox's API server, in a namespace
// of the test's own.
func TestComposeDemoManifestsAcceptedByAPIServer(t *testing.T) {
	c := clients(t)
	ns := restrictedNamespace(t, c)
	dir := filepath.Join(repoRoot(t), "deploy", "compose", "demo")
	script, err := os.ReadFile(filepath.Join(dir, "apply.sh"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, file := range []string{"good.yaml", "broken.yaml"} {
		if !strings.Contains(string(script), "/demo/"+file) {
			t.Errorf("apply.sh does not apply %s", file)
		}
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range decodeObjects(t, string(b)) {
			if o.GetKind() == "Namespace" {
				continue
			}
			if o.GetNamespace() != "shop" {
				t.Errorf("%s %s in namespace %q, want shop", o.GetKind(), o.GetName(), o.GetNamespace())
			}
			o.SetNamespace(ns)
			r, err := c.resource(o)
			if err != nil {
				t.Fatal(err)
			}
			// Not restricted-compliant on purpose (a demo of ordinary
			// workloads), so only the API's validation is asked here:
			// Deployments are not subject to pod admission.
			if _, err := r.Create(context.Background(), o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}); err != nil {
				t.Errorf("%s: API server refuses %s %s: %v", file, o.GetKind(), o.GetName(), err)
			}
			checked++
		}
	}
	if checked != 7 {
		t.Errorf("checked %d demo objects, want 7 (4 good, 3 broken)", checked)
	}
}
