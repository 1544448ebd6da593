package bus

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/events"
)

// TestProvisionIsIdempotentOnAThreeNodeCluster: on a real three-server
// JetStream cluster with R3 streams, the whole-configuration comparison
// finds nothing to repair on a second run (what a clustered server fills
// in by itself, such as placement, is not drift), and an injected source
// is still repaired.
func TestProvisionIsIdempotentOnAThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers")
	}
	ports := []int{testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)}
	var routes []*url.URL
	for _, p := range ports {
		u, _ := url.Parse(fmt.Sprintf("nats://127.0.0.1:%d", p))
		routes = append(routes, u)
	}
	var servers []*server.Server
	for i, p := range ports {
		servers = append(servers, runServer(t, &server.Options{ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			NoSigs: true, NoLog: true, JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "kaar", Host: "127.0.0.1", Port: p}, Routes: routes}))
	}
	ctx := testCtx(t, 2*time.Minute)
	nc, err := Connect(ctx, servers[0].ClientURL(), ConnectOptions{Name: "provisioner", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	cfg := Config{Clusters: []string{testCluster}, Replicas: 3}
	var sum Summary
	for {
		// The meta leader takes a moment to be elected.
		actx := testCtx(t, 10*time.Second)
		if _, err = Provision(actx, js, cfg); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("first Provision on the cluster: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if sum, err = Provision(ctx, js, cfg); err != nil || sum.Changed() {
		t.Fatalf("second Provision on the cluster: %s %v", sum, err)
	}
	st, err := js.Stream(ctx, events.StreamApprovals)
	if err != nil {
		t.Fatal(err)
	}
	c := st.CachedInfo().Config
	if c.Replicas != 3 {
		t.Fatalf("APPROVALS replicas %d", c.Replicas)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	c.Sources = []*jetstream.StreamSource{{Name: "EVIL"}}
	if _, err := js.UpdateStream(ctx, c); err != nil {
		t.Fatal(err)
	}
	if sum, err = Provision(ctx, js, cfg); err != nil || sum.String() != "jetstream: updated stream APPROVALS: sources removed [EVIL]" {
		t.Fatalf("after injecting a source: %s %v", sum, err)
	}
}
