package deploytest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/services/mcpgateway"
	"github.com/kaar-dev/kaar/services/notifier"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var plainNATS struct {
	sync.Once
	url string
	err error
}

// plainNATSURL is a NATS server without authentication for the whole test
// run: mcpgateway.New wants a connection, which it does not use before
// serving.
func plainNATSURL(t *testing.T) string {
	t.Helper()
	plainNATS.Do(func() {
		s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
		if err != nil {
			plainNATS.err = err
			return
		}
		go s.Start()
		if !s.ReadyForConnections(30 * time.Second) {
			plainNATS.err = errors.New("nats-server did not start")
			return
		}
		plainNATS.url = s.ClientURL()
	})
	if plainNATS.err != nil {
		t.Fatal(plainNATS.err)
	}
	return plainNATS.url
}

// newGateway builds the gateway from cfg exactly as kaar-mcpgateway does
// (mcpgateway.ConfigFrom, then mcpgateway.New, which validates the
// configuration, reads mcp.token_file and refuses a non-loopback host
// without tokens).
func newGateway(t *testing.T, cfg config.Config) error {
	t.Helper()
	nc, err := nats.Connect(plainNATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	signer, err := events.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	_, err = mcpgateway.New(mcpgateway.ConfigFrom(cfg), mcpgateway.Deps{NATS: nc, Signer: signer})
	return err
}

// checkGatewayAuth checks the gateway's effective configuration: with
// localTokenFile standing for the mounted mcp.token_file (empty: none is
// mounted), the gateway must start; it must hold tokens unless it listens
// on loopback only; and the same configuration without tokens on 0.0.0.0
// must be refused, so the check above is the gateway's own and live.
func checkGatewayAuth(t *testing.T, where string, cfg config.Config, localTokenFile string, wantLoopback bool) {
	t.Helper()
	if (cfg.MCP.TokenFile == "") != (localTokenFile == "") {
		t.Fatalf("%s: mcp.token_file %q, mounted file %q", where, cfg.MCP.TokenFile, localTokenFile)
	}
	if wantLoopback {
		if cfg.Server.Host != "127.0.0.1" {
			t.Errorf("%s: a loopback-only gateway listens on %q", where, cfg.Server.Host)
		}
	} else if cfg.MCP.TokenFile == "" && len(cfg.MCP.Tokens) == 0 {
		t.Errorf("%s: the gateway listens on %q with no tokens", where, cfg.Server.Host)
	}
	local := cfg
	local.MCP.TokenFile = localTokenFile
	if err := newGateway(t, local); err != nil {
		t.Errorf("%s: the gateway refuses its configuration (listening on %s): %v", where, cfg.Server.Host, err)
	}
	if localTokenFile != "" {
		b, err := os.ReadFile(localTokenFile)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "role: admin") {
			t.Errorf("%s: no admin token: nobody could pause remediation", where)
		}
	}
	open := cfg
	open.Server.Host, open.MCP.TokenFile, open.MCP.Tokens = "0.0.0.0", "", nil
	if err := newGateway(t, open); err == nil || !strings.Contains(err.Error(), "mcp.tokens") {
		t.Errorf("%s: the gateway without tokens on 0.0.0.0: %v, want refused for mcp.tokens", where, err)
	}
}

// checkBusAsServices connects to url as the provisioner and as each
// service with its effective configuration (nats.user, nats.password:
// what kaar bus provision and kaar-<service> pass to pkg/bus.Connect,
// with the role's inbox prefix): the provisioner declares the bus, each
// service binds to it (bus.CheckBound) without being allowed to declare
// it, and the kill switch works: the gateway writes it, the executor
// watches it, the watcher cannot. A wrong password and no credentials are
// refused.
func checkBusAsServices(t *testing.T, url string, cfgs map[string]config.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conns := map[string]*nats.Conn{}
	login := func(name string) *nats.Conn {
		cfg, ok := cfgs[name]
		if !ok {
			t.Fatalf("no configuration for %s", name)
		}
		role, _ := bus.RoleOfService(name)
		if cfg.NATS.User != role.User() || cfg.NATS.Password == "" {
			t.Errorf("%s: nats.user %q (password set: %t), want %s with a password", name, cfg.NATS.User, cfg.NATS.Password != "", role.User())
		}
		// Permission violations are expected (the watcher's write of the
		// kill switch below) and checked where they matter.
		nc, err := nats.Connect(url, nats.UserInfo(cfg.NATS.User, cfg.NATS.Password), nats.Name("kaar-"+name), nats.CustomInboxPrefix(role.InboxPrefix()),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatalf("%s cannot log in to NATS as %q: %v", name, cfg.NATS.User, err)
		}
		t.Cleanup(nc.Close)
		conns[name] = nc
		return nc
	}
	pjs, err := jetstream.New(login("provisioner"))
	if err != nil {
		t.Fatal(err)
	}
	cluster := cfgs["provisioner"].Kubernetes.ClusterName
	// What the provisioner declares from its own configuration (the
	// notifier's stream and consumers when notify is configured), as
	// kaar bus provision does.
	decl, err := notifier.BusConfig(cfgs["provisioner"])
	if err != nil {
		t.Fatalf("provisioner: bus declaration: %v", err)
	}
	if _, err := bus.Provision(ctx, pjs, decl); err != nil {
		t.Fatalf("kaar-provisioner cannot declare the bus: %v", err)
	}
	svcs := services
	if _, ok := cfgs["notifier"]; ok {
		svcs = append(slices.Clone(services), "notifier")
	}
	for _, svc := range svcs {
		js, err := jetstream.New(login(svc))
		if err != nil {
			t.Fatal(err)
		}
		role, _ := bus.RoleOfService(svc)
		bound := bus.Config{Clusters: []string{cfgs[svc].Kubernetes.ClusterName}}
		if svc == "notifier" {
			// Its stream, bucket and consumers, from its own configuration.
			if bound, err = notifier.BusConfig(cfgs[svc]); err != nil || bound.Notify == nil {
				t.Fatalf("notifier: bus declaration %+v: %v", bound.Notify, err)
			}
		}
		if err := bus.CheckBound(ctx, js, role, bound); err != nil {
			t.Errorf("%s cannot bind to the provisioned bus: %v", svc, err)
		}
		short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
		if _, err := bus.Provision(short, js, bus.Config{Clusters: []string{"other"}}); err == nil {
			t.Errorf("%s could declare streams and consumers", svc)
		}
		cancelShort()
	}
	if nc, err := nats.Connect(url, nats.UserInfo("kaar-watcher", cfgs["watcher"].NATS.Password+"x")); err == nil {
		nc.Close()
		t.Error("NATS accepts kaar-watcher with a wrong password")
	}
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Error("NATS accepts a client without credentials")
	}
	checkKillSwitch(t, conns["mcpgateway"], conns["executor"], cluster)
	wjs, _ := jetstream.New(conns["watcher"])
	p := events.Pause{Paused: false, By: "watcher", Via: events.ViaAuto, At: time.Now().UTC()}
	short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
	defer cancelShort()
	if err := bus.SetPause(short, wjs, cluster, p); err == nil {
		t.Error("kaar-watcher could write the kill switch")
	}
}

// writeTemp writes content to a file named name in a fresh directory.
func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
