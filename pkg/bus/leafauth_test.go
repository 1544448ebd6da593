package bus

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/events"
)

// TestLeafNodeRolesInTheCentralDomain: a leaf node that authenticates its
// local services with the role users in the central JetStream domain
// (Permissions.InDomain, "kaar bus permissions --jetstream-domain"): the
// executor on the leaf binds to its consumer on the central bus, pulls and
// acks a decision and watches the kill switch; the watcher on the leaf is
// refused a stream update in the central domain.
func TestLeafNodeRolesInTheCentralDomain(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	leafPort := testutil.FreePort(t)
	hub := runServer(t, &server.Options{ServerName: "central", Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, JetStreamDomain: "central", StoreDir: t.TempDir(),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: leafPort}})
	creds := testCreds(t)
	remote, _ := url.Parse(fmt.Sprintf("nats-leaf://127.0.0.1:%d", leafPort))
	leaf := runServer(t, &server.Options{ServerName: "cluster-a-leaf", Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		Nkeys:    creds.nkeyUsers("central"),
		LeafNode: server.LeafNodeOpts{Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{remote}}}}})
	deadline := time.Now().Add(10 * time.Second)
	for leaf.NumLeafNodes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the leaf node did not connect to the hub")
		}
		time.Sleep(50 * time.Millisecond)
	}
	central, err := Connect(ctx, hub.ClientURL(), ConnectOptions{Name: "central", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(central.Close)
	hubJS, _ := NewJetStream(central, "")
	cfg := Config{Clusters: []string{testCluster}}
	if _, err := Provision(ctx, hubJS, cfg); err != nil {
		t.Fatal(err)
	}
	onLeaf := func(r Role) (*nats.Conn, <-chan error) {
		errs := make(chan error, 16)
		auth, err := creds.option(r)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := Connect(ctx, leaf.ClientURL(), ConnectOptions{Name: "kaar-" + string(r), Logger: testLogger(t), InboxPrefix: r.InboxPrefix(),
			Extra: []nats.Option{auth, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })}})
		if err != nil {
			t.Fatalf("%s on the leaf: %v", r, err)
		}
		t.Cleanup(nc.Close)
		return nc, errs
	}

	exec, _ := onLeaf(RoleExecutor)
	ejs, _ := NewJetStream(exec, "central")
	if err := CheckBound(ctx, ejs, RoleExecutor, cfg); err != nil {
		t.Fatalf("executor on the leaf binds to the central bus: %v", err)
	}
	p := newPlan(t)
	subject, _ := events.ApprovalSubject(testCluster, p.ID)
	if _, err := hubJS.Publish(ctx, subject, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	name, _ := events.ExecutorConsumer(testCluster)
	cons, err := ejs.Consumer(ctx, events.StreamApprovals, name)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next()
	if err != nil {
		t.Fatalf("the executor on the leaf pulls the decision: %v", err)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatalf("the executor on the leaf acks: %v", err)
	}
	if _, err := GetPause(ctx, ejs, testCluster); err != nil {
		t.Fatalf("the executor on the leaf reads the kill switch: %v", err)
	}

	watcher, werrs := onLeaf(RoleWatcher)
	refusedSubject := "$JS.central.API.STREAM.UPDATE." + events.StreamApprovals
	if err := watcher.Publish(refusedSubject, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	_ = watcher.Flush()
	select {
	case err := <-werrs:
		if !strings.Contains(err.Error(), refusedSubject) {
			t.Fatalf("watcher on the leaf: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the watcher on the leaf could update a central stream")
	}
}
