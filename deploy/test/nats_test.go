package deploytest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startAuthorizedNATS runs a real nats-server (JetStream on) whose
// authorization is deploy/nats/kaar-permissions.conf, with each service's
// password in the server's environment as the file expects.
func startAuthorizedNATS(t *testing.T) (url string, passwords map[string]string) {
	t.Helper()
	dir := t.TempDir()
	perms, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "nats", "kaar-permissions.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kaar-permissions.conf"), perms, 0o600); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf("listen: \"127.0.0.1:-1\"\njetstream { store_dir: %q }\ninclude ./kaar-permissions.conf\n", filepath.Join(dir, "js"))
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	passwords = map[string]string{}
	for _, r := range bus.Roles() {
		passwords[string(r)] = "pw-" + string(r) + "-for-test"
		t.Setenv(r.PasswordEnv(), passwords[string(r)])
	}
	opts, err := natsserver.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("nats-server rejects kaar-permissions.conf: %v", err)
	}
	if len(opts.Users) != len(bus.Roles()) {
		t.Fatalf("%d users configured, want one per role (%d)", len(opts.Users), len(bus.Roles()))
	}
	s, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return s.ClientURL(), passwords
}

// refused publishes to subject as nc and waits for the server's permission
// violation (the wait is bounded only to fail rather than hang).
func refused(t *testing.T, nc *nats.Conn, errs <-chan error, op, subject string) {
	t.Helper()
	var err error
	if op == "publish" {
		err = nc.Publish(subject, []byte(`{}`))
	} else {
		_, err = nc.SubscribeSync(subject)
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		t.Fatalf("%s %s: %v", op, subject, err)
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case got := <-errs:
			if strings.Contains(strings.ToLower(got.Error()), "permissions violation") && strings.Contains(got.Error(), subject) {
				return
			}
			t.Logf("%s %s: meanwhile the server said %v", op, subject, got)
		case <-deadline:
			t.Errorf("%s %s as %s was not refused", op, subject, nc.Opts.Name)
			return
		}
	}
}

// TestNATSPermissionsLimitEachService: with deploy/nats/kaar-permissions.conf
// the provisioner declares kaar's bus (pkg/bus.Provision) and nobody else
// can: each service user is refused a stream update (sources added
// included), a stream delete or purge, the deletion of another service's
// durable consumer and the creation of a durable consumer. Each service
// still does its normal work (checkRolesWork) and publishes what it owns,
// and the server refuses what belongs to another service: the watcher
// cannot approve a plan, the gateway cannot forge incidents or audit
// records, only the gateway, the notifier, the CLI and the executor's
// auto-approval publish decisions and no service subscribes to them, and
// only the gateway can flip the kill switch in kaar_control, which the
// executor reads and watches.
func TestNATSPermissionsLimitEachService(t *testing.T) {
	url, pw := startAuthorizedNATS(t)
	const cluster = "prod"
	conns := map[string]*nats.Conn{}
	errs := map[string]<-chan error{}
	roleConns := map[bus.Role]*nats.Conn{}
	for _, r := range bus.Roles() {
		conns[string(r)], errs[string(r)] = roleConn(t, url, r, pw[string(r)])
		roleConns[r] = conns[string(r)]
	}
	provisionAs(t, conns["provisioner"], cluster)
	checkRolesWork(t, roleConns, cluster)
	checkKillSwitch(t, conns["mcpgateway"], conns["executor"], cluster)

	pauseKey := "$KV.kaar_control." + cluster + ".paused"
	forbidden := []struct{ svc, op, subject string }{
		{"watcher", "publish", pauseKey},
		{"planner", "publish", pauseKey},
		{"executor", "publish", pauseKey},
		{"notifier", "publish", pauseKey},
		{"cli", "publish", pauseKey},
		{"watcher", "publish", "kaar.prod.approval.0b0c2d64-5d6e-4a57-a0b6-4c1b54c7a1f1"},
		{"watcher", "publish", "kaar.prod.audit.step_started"},
		{"watcher", "publish", "$KV.kaar_plans.0b0c2d64-5d6e-4a57-a0b6-4c1b54c7a1f1"},
		{"planner", "publish", "kaar.prod.approval.0b0c2d64-5d6e-4a57-a0b6-4c1b54c7a1f1"},
		{"planner", "publish", "kaar.prod.issue.shop.OOMKilled"},
		{"executor", "publish", "kaar.prod.issue.shop.OOMKilled"},
		{"mcpgateway", "publish", "kaar.prod.issue.shop.OOMKilled"},
		{"mcpgateway", "publish", "kaar.prod.audit.step_started"},
		{"mcpgateway", "publish", "$KV.kaar_plans.0b0c2d64-5d6e-4a57-a0b6-4c1b54c7a1f1"},
		{"notifier", "publish", "$KV.kaar_plans.0b0c2d64-5d6e-4a57-a0b6-4c1b54c7a1f1"},
		{"cli", "publish", "$KV.kaar_plans.0b0c2d64-5d6e-4a57-a0b6-4c1b54c7a1f1"},
		{"provisioner", "publish", "kaar.prod.approval.0b0c2d64-5d6e-4a57-a0b6-4c1b54c7a1f1"},
		{"mcpgateway", "subscribe", "kaar.prod.svc.watcher.analyze"},
		{"watcher", "subscribe", "kaar.prod.approval.>"},
		{"mcpgateway", "subscribe", "kaar.prod.approval.>"},
		{"planner", "subscribe", "kaar.prod.approval.>"},
		{"planner", "subscribe", "_INBOX.>"},
		{"watcher", "subscribe", bus.RoleExecutor.InboxPrefix() + ".>"},
	}
	for _, m := range managementRefused(cluster) {
		forbidden = append(forbidden, struct{ svc, op, subject string }{string(m.role), "publish", m.subject})
	}
	for _, f := range forbidden {
		t.Run(f.svc+" "+f.op+" "+f.subject, func(t *testing.T) {
			refused(t, conns[f.svc], errs[f.svc], f.op, f.subject)
		})
	}
	// What was refused did not happen: the provisioner finds the bus as
	// declared.
	js, _ := jetstream.New(conns["provisioner"])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if sum, err := bus.Provision(ctx, js, bus.Config{Clusters: []string{cluster}, Notify: notifyDecl(cluster)}); err != nil || sum.Changed() {
		t.Fatalf("after the refused requests: %s %v", sum, err)
	}
}

// checkKillSwitch: the gateway pauses and resumes remediation through
// pkg/bus (as its pause_remediation tool does) and the executor, watching
// the key as it does in service, sees both changes and reads the switch.
func checkKillSwitch(t *testing.T, gateway, executor *nats.Conn, cluster string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gjs, err := jetstream.New(gateway)
	if err != nil {
		t.Fatal(err)
	}
	ejs, err := jetstream.New(executor)
	if err != nil {
		t.Fatal(err)
	}
	key, err := events.PauseKey(cluster)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := ejs.KeyValue(ctx, events.BucketControl)
	if err != nil {
		t.Fatalf("kaar-executor cannot open %s: %v", events.BucketControl, err)
	}
	w, err := kv.Watch(ctx, key)
	if err != nil {
		t.Fatalf("kaar-executor cannot watch %s: %v", key, err)
	}
	defer func() { _ = w.Stop() }()
	next := func() jetstream.KeyValueEntry {
		t.Helper()
		for {
			select {
			case e := <-w.Updates():
				if e != nil {
					return e
				}
			case <-ctx.Done():
				t.Fatalf("kaar-executor's watch of %s saw no change", key)
			}
		}
	}
	for _, paused := range []bool{true, false} {
		p := events.Pause{Paused: paused, By: "alice@example.com", Via: events.ViaMCP, Reason: "deploy test", At: time.Now().UTC()}
		if err := bus.SetPause(ctx, gjs, cluster, p); err != nil {
			t.Fatalf("kaar-mcpgateway cannot set the kill switch (paused=%t): %v", paused, err)
		}
		got, err := bus.DecodePause(next().Value())
		if err != nil || got.Paused != paused || got.By != p.By {
			t.Fatalf("executor watched %+v (%v), want paused=%t by %s", got, err, paused, p.By)
		}
		read, err := bus.GetPause(ctx, ejs, cluster)
		if err != nil || read.Paused != paused {
			t.Fatalf("kaar-executor reads the kill switch: %+v, %v; want paused=%t", read, err, paused)
		}
	}
}
