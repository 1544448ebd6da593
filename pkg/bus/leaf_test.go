package bus

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/events"
)

// A watcher/executor pair of one cluster runs against a local leaf node
// (no JetStream of its own) that reports to the central bus, whose
// JetStream has the domain "central": with NewJetStream(nc, "central") the
// leaf's clients use the central streams and buckets, and a decision
// published centrally reaches the executor's consumer on the leaf.
func TestLeafNodeClientsUseTheCentralJetStreamDomain(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	leafPort := testutil.FreePort(t)
	hub := runServer(t, &server.Options{ServerName: "central", Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, JetStreamDomain: "central", StoreDir: t.TempDir(),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: leafPort}})
	remote, _ := url.Parse(fmt.Sprintf("nats-leaf://127.0.0.1:%d", leafPort))
	leaf := runServer(t, &server.Options{ServerName: "cluster-a-leaf", Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
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
	local, err := Connect(ctx, leaf.ClientURL(), ConnectOptions{Name: "executor-on-leaf", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(local.Close)
	hubJS, err := NewJetStream(central, "")
	if err != nil {
		t.Fatal(err)
	}
	leafJS, err := NewJetStream(local, "central")
	if err != nil {
		t.Fatal(err)
	}

	// The leaf's clients declare and use the central bus.
	if _, err := Provision(ctx, leafJS, Config{Clusters: []string{testCluster}}); err != nil {
		t.Fatalf("provision from the leaf: %v", err)
	}
	leafPlans, err := OpenPlanStore(ctx, leafJS)
	if err != nil {
		t.Fatal(err)
	}
	p := newPlan(t)
	if _, err := leafPlans.Create(ctx, p, time.Hour); err != nil {
		t.Fatalf("create a plan from the leaf: %v", err)
	}
	hubPlans, err := OpenPlanStore(ctx, hubJS)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := hubPlans.Get(ctx, p.ID); err != nil || got.Digest != p.Digest {
		t.Fatalf("the plan is not in the central bucket: %v", err)
	}

	// A decision published centrally reaches the executor's durable
	// consumer, pulled from the leaf.
	d := events.Decision{PlanID: p.ID, Digest: p.Digest, Decision: events.DecisionApproved, DecidedBy: "alice", Via: events.ViaMCP, At: time.Now().UTC()}
	env, err := events.New(events.DecisionApproved.EventType(), events.SourceMCPGateway, testCluster, p.ID, d)
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := events.ApprovalSubject(testCluster, p.ID)
	if _, err := Publish(ctx, hubJS, subject, env, events.DecisionMsgID(p.ID, p.Digest, events.DecisionApproved)); err != nil {
		t.Fatalf("publish the decision centrally: %v", err)
	}
	name, _ := events.ExecutorConsumer(testCluster)
	cons, err := leafJS.Consumer(ctx, events.StreamApprovals, name)
	if err != nil {
		t.Fatalf("the executor's consumer from the leaf: %v", err)
	}
	msg, err := cons.Next()
	if err != nil {
		t.Fatalf("the decision did not reach the leaf: %v", err)
	}
	if msg.Subject() != subject {
		t.Fatalf("got %s, want %s", msg.Subject(), subject)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatalf("ack from the leaf: %v", err)
	}

	// The kill switch set centrally is seen by a key watch on the leaf.
	kv, err := leafJS.KeyValue(ctx, events.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := events.PauseKey(testCluster)
	w, err := kv.Watch(ctx, key)
	if err != nil {
		t.Fatalf("watch from the leaf: %v", err)
	}
	defer func() { _ = w.Stop() }() // the test is over; its checks are above
	if e := <-w.Updates(); e != nil {
		t.Fatalf("unexpected initial value %v", e)
	}
	if err := SetPause(ctx, hubJS, testCluster, events.Pause{Paused: true, By: "ops", Via: events.ViaCLI, At: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-w.Updates():
		if p, err := DecodePause(e.Value()); err != nil || !p.Paused {
			t.Fatalf("pause seen on the leaf: %+v %v", p, err)
		}
	case <-ctx.Done():
		t.Fatal("the leaf's watch did not see the central kill switch")
	}
}

func runServer(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats-server %s not ready", o.ServerName)
	}
	return s
}
