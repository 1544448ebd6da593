package svcmain

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
)

// fakeService is ready when its channel is closed.
type fakeService struct{ ready chan struct{} }

func (f fakeService) Run(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
func (f fakeService) Ready() <-chan struct{}        { return f.ready }

func TestOpsEndpointsFollowTheServiceAndTheBus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{DontListen: true})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	nc, err := emb.Connect(ctx, bus.ConnectOptions{Name: "t", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "kaar_test_total", Help: "t"}))
	svc := fakeService{ready: make(chan struct{})}
	srv := httptest.NewServer(OpsHandler(reg, Readiness([]Instance{{Name: "watcher", Cluster: "c", Service: svc, NATS: nc}})))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "watcher of cluster c is starting") {
		t.Errorf("/readyz before ready: %d %q", code, body)
	}
	close(svc.ready)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz when ready: %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "kaar_test_total") {
		t.Errorf("/metrics %d", code)
	}
	nc.Close()
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "NATS") {
		t.Errorf("/readyz with the bus gone: %d %q", code, body)
	}
	if code, _ := get("/nothing"); code != 404 {
		t.Errorf("unknown path %d, want 404 (probes must not hit the metrics handler by accident)", code)
	}
}

func TestHelpAndBadInput(t *testing.T) {
	var out bytes.Buffer
	c := Spec{Name: "watcher", Summary: "tests the main.", Kube: true, Build: func(context.Context, Env) (Service, error) {
		t.Fatal("built with bad input")
		return nil, nil
	}}
	if err := Run(context.Background(), "kaar-watcher", c, []string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "-kubeconfig") || !strings.Contains(out.String(), "tests the main.") {
		t.Errorf("--help: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := Run(context.Background(), "kaar-watcher", c, []string{"--bogus"}, &out); err == nil || !strings.Contains(out.String(), "bogus") {
		t.Errorf("--bogus: %v", err)
	}
	t.Setenv("KAAR_SERVER_PORT", "http")
	if err := Run(context.Background(), "kaar-watcher", c, nil, &out); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "server.port") {
		t.Errorf("bad env: %v", err)
	}
}

func TestBusConfigCarriesTheNATSSection(t *testing.T) {
	cfg := config.Default()
	cfg.Kubernetes.ClusterName = "prod"
	cfg.NATS.ExecutorAckWait.Duration = 7 * time.Second
	cfg.NATS.Replicas = 3
	b := BusConfig(cfg)
	if len(b.Clusters) != 1 || b.Clusters[0] != "prod" || b.ExecutorAckWait != 7*time.Second || b.AuditRetention != cfg.NATS.AuditRetention.Duration || b.Replicas != 3 {
		t.Errorf("bus config %+v", b)
	}
}

func TestConnectOptionsCarryTLS(t *testing.T) {
	cfg := config.Default()
	cfg.NATS.User, cfg.NATS.Password = "kaar-executor", "secret"
	cfg.NATS.TLS = config.NATSTLS{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem", VerifyClients: true}
	o := ConnectOptions(cfg, "kaar-executor", nil)
	want := bus.TLSFiles{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem"}
	if o.TLS != want || o.Name != "kaar-executor" || o.User != "kaar-executor" || o.Password != "secret" {
		t.Errorf("connect options %+v", o)
	}
}

// TestConnectOptionsFindTheRoleCredential: a service with no credential
// configured uses its role's seed from the state directory of a local
// kaar serve, and always its role's inbox prefix.
func TestConnectOptionsFindTheRoleCredential(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	dir, err := bus.DefaultCredentialsDir()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := bus.LoadOrCreateCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	o := ConnectOptions(cfg, "kaar-executor", nil)
	if o.NkeyFile != creds.SeedFile(bus.RoleExecutor) || o.InboxPrefix != bus.RoleExecutor.InboxPrefix() {
		t.Errorf("executor: nkey %q inbox %q", o.NkeyFile, o.InboxPrefix)
	}
	cfg.NATS.User, cfg.NATS.Password = "kaar-executor", "secret"
	if o := ConnectOptions(cfg, "kaar-executor", nil); o.NkeyFile != "" || o.User != "kaar-executor" {
		t.Errorf("configured user: %+v", o)
	}
}

// TestRunRefusesAnUnprovisionedBus: a service does not declare the bus;
// it stops with an error naming kaar bus provision.
func TestRunRefusesAnUnprovisionedBus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	creds, err := bus.LoadOrCreateCredentials(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{Port: bus.RandomPort, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	t.Setenv("KAAR_NATS_NKEY_FILE", creds.SeedFile(bus.RoleMCPGateway))
	c := Spec{Name: "mcpgateway", Build: func(context.Context, Env) (Service, error) {
		t.Fatal("built on an unprovisioned bus")
		return nil, nil
	}}
	var out bytes.Buffer
	err = Run(ctx, "kaar-mcpgateway", c, []string{"--nats-url", emb.ClientURL()}, &out)
	if !errors.Is(err, bus.ErrNotProvisioned) || !strings.Contains(err.Error(), "kaar bus provision") {
		t.Fatalf("Run on an unprovisioned bus: %v", err)
	}
}
