package cli

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/notifier"
)

// startServeBus starts kaar serve's bus as kaar serve does
// (startEmbeddedNATS with nats.listen, then provisioning in process as
// the provisioner), with the state directory in a temporary directory.
func startServeBus(t *testing.T) (*bus.Embedded, config.Config) {
	t.Helper()
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	cfg := config.Default()
	cfg.NATS.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	emb, err := startEmbeddedNATS(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	if _, err := provision(ctx, connectEmbedded(emb, cfg), cfg, logger); err != nil {
		t.Fatalf("kaar serve's provisioning: %v", err)
	}
	return emb, cfg
}

// TestServeBusRefusesAnonymousClients: kaar serve's embedded server
// (listening on TCP for kaar mcp --stdio, the CLI and split services)
// refuses a client without credentials; the credentials it made are one
// private seed per role in its state directory, and the CLI finds its own
// there.
func TestServeBusRefusesAnonymousClients(t *testing.T) {
	emb, cfg := startServeBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := bus.Connect(ctx, emb.ClientURL(), bus.ConnectOptions{Name: "anonymous", Logger: slog.New(slog.DiscardHandler)}); err == nil ||
		!strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("anonymous client on kaar serve's bus: %v, want an authorization violation", err)
	}
	dir := filepath.Join(os.Getenv("XDG_STATE_HOME"), "kaar", "credentials")
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("credentials dir %s: %v %v", dir, fi, err)
	}
	for _, r := range bus.Roles() {
		fi, err := os.Stat(filepath.Join(dir, bus.SeedFileName(r)))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("seed of %s: %v %v", r, fi, err)
		}
	}
	// The CLI, as the cli role with its seed from the state directory.
	var out bytes.Buffer
	if code := Main(ctx, []string{"plans", "list", "--nats-url", emb.ClientURL()}, strings.NewReader(""), &out, &out); code != 0 {
		t.Fatalf("kaar plans list on kaar serve's bus: %d\n%s", code, out.String())
	}
	// A second kaar serve reuses the credentials.
	creds, err := bus.LoadOrCreateCredentials(dir)
	if err != nil || creds.PublicKey(bus.RoleCLI) != emb.Credentials().PublicKey(bus.RoleCLI) {
		t.Fatalf("credentials not reused: %v", err)
	}
	_ = cfg
}

// TestServeBusRefusesWhatARoleDoesNotHold: on kaar serve's bus the
// watcher's credential cannot approve a plan or flip the kill switch,
// and the gateway's cannot change a stream; each refusal is the server's.
func TestServeBusRefusesWhatARoleDoesNotHold(t *testing.T) {
	emb, cfg := startServeBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		role    bus.Role
		subject string
	}{
		{bus.RoleWatcher, "kaar.default.approval.0b0c2d64-5d6e-4a57-a0b6-4c1b54c7a1f1"},
		{bus.RoleWatcher, "$KV.kaar_control.default.paused"},
		{bus.RoleMCPStdio, "$JS.API.STREAM.UPDATE." + events.StreamApprovals},
		{bus.RoleCLI, "$JS.API.STREAM.PURGE." + events.StreamAudit},
	} {
		errs := make(chan error, 8)
		o := svcmain.ConnectOptions(cfg, "kaar-"+string(c.role), slog.New(slog.DiscardHandler))
		o.Extra = []nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })}
		nc, err := bus.Connect(ctx, emb.ClientURL(), o)
		if err != nil {
			t.Fatalf("%s over TCP with its seed: %v", c.role, err)
		}
		if err := nc.Publish(c.subject, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		_ = nc.Flush()
		select {
		case err := <-errs:
			if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") || !strings.Contains(err.Error(), c.subject) {
				t.Errorf("%s publish %s: %v", c.role, c.subject, err)
			}
		case <-ctx.Done():
			t.Errorf("%s publish %s was not refused", c.role, c.subject)
		}
		nc.Close()
	}
	// Nothing changed: the provisioner finds the bus as declared.
	nc, err := emb.ConnectAs(ctx, bus.RoleProvisioner, bus.ConnectOptions{Name: "check"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	bc, _ := notifier.BusConfig(cfg)
	if sum, err := bus.Provision(ctx, js, bc); err != nil || sum.Changed() {
		t.Fatalf("after the refused requests: %s %v", sum, err)
	}
}

// TestBusOffLoopbackNeedsTLS: kaar serve --nats-listen and kaar nats
// --listen refuse a non-loopback address without TLS, naming what to set.
func TestBusOffLoopbackNeedsTLS(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	for _, args := range [][]string{
		{"serve", "--nats-listen", "0.0.0.0:4222", "--no-sandbox"},
		{"nats", "--listen", "0.0.0.0:0"},
	} {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		code := Main(ctx, args, strings.NewReader(""), &out, &out)
		cancel()
		if code == 0 || !strings.Contains(out.String(), "nats.listen") || !strings.Contains(out.String(), "nats.tls.cert_file") {
			t.Errorf("kaar %v: exit %d\n%s", args, code, out.String())
		}
	}
}

// TestBusProvisionNeedsTheProvisioner: kaar bus provision with another
// role's credential is refused quickly, naming the provisioner; with the
// provisioner's (found in the state directory) it reports the bus as
// declared.
func TestBusProvisionNeedsTheProvisioner(t *testing.T) {
	emb, _ := startServeBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if code := Main(ctx, []string{"bus", "provision", "--nats-url", emb.ClientURL()}, strings.NewReader(""), &out, &out); code != 0 ||
		!strings.Contains(out.String(), "everything is as declared") {
		t.Fatalf("kaar bus provision as the provisioner: %d\n%s", code, out.String())
	}
	out.Reset()
	seed := emb.Credentials().SeedFile(bus.RoleWatcher)
	start := time.Now()
	if code := Main(ctx, []string{"bus", "provision", "--nats-url", emb.ClientURL(), "--creds", seed}, strings.NewReader(""), &out, &out); code == 0 ||
		!strings.Contains(out.String(), "provision as kaar-provisioner") {
		t.Fatalf("kaar bus provision as the watcher: %d\n%s", code, out.String())
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the refusal took %s", d)
	}
}
