package bus

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/events"
)

// natsCluster is a 3-node JetStream cluster of embedded servers on
// loopback, each with its own store directory and the same role users.
type natsCluster struct {
	t       *testing.T
	creds   *Credentials
	opts    []EmbeddedOptions
	servers []*Embedded
}

func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	creds, err := LoadOrCreateCredentials(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for range 6 {
		ports = append(ports, testutil.FreePort(t))
	}
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+i]))
	}
	c := &natsCluster{t: t, creds: creds}
	for i := range 3 {
		c.opts = append(c.opts, EmbeddedOptions{
			ServerName:  fmt.Sprintf("n%d", i+1),
			StoreDir:    filepath.Join(t.TempDir(), fmt.Sprintf("n%d", i+1)),
			Port:        ports[i],
			Credentials: creds,
			// Under load a node may wait a while for its peers.
			ReadyTimeout: 30 * time.Second,
			Cluster:      ClusterOptions{Name: "kaar-test", Port: ports[3+i], Routes: routes},
		})
	}
	c.servers = make([]*Embedded, 3)
	errs := make(chan error, 3)
	for i := range 3 {
		go func() { errs <- c.start(i) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			if s != nil {
				s.Shutdown()
			}
		}
	})
	return c
}

func (c *natsCluster) start(i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	s, err := StartEmbedded(ctx, c.opts[i])
	if err != nil {
		return fmt.Errorf("node %d: %w", i+1, err)
	}
	c.servers[i] = s
	return nil
}

// urls are the client URLs of the running nodes.
func (c *natsCluster) urls() string {
	var u []string
	for _, s := range c.servers {
		if s != nil {
			u = append(u, s.ClientURL())
		}
	}
	return strings.Join(u, ",")
}

// connect connects as role to any node (the client fails over between
// them).
func (c *natsCluster) connect(role Role) (*nats.Conn, jetstream.JetStream) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := Connect(ctx, c.urls(), ConnectOptions{Name: "kaar-" + string(role), NkeyFile: c.creds.SeedFile(role), InboxPrefix: role.InboxPrefix(),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	return nc, js
}

// eventually retries f until it succeeds or the time is up.
func eventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestR3ClusterSurvivesTheLossOfAStreamLeader: on three clustered nodes
// every stream and bucket is declared at R3; killing the node that leads
// the plans bucket loses no key, writes go on through the other two, and
// the node catches up when it comes back.
func TestR3ClusterSurvivesTheLossOfAStreamLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("three clustered NATS servers and a node restart; run without -short")
	}
	t.Parallel()
	c := startNATSCluster(t)
	_, pjs := c.connect(RoleProvisioner)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute) // under load the cluster forms slowly; each wait below has its own bound
	defer cancel()
	cfg := Config{Clusters: []string{"prod"}, Replicas: 3}
	eventually(t, 60*time.Second, "provision at R3 (the meta leader is elected)", func() error {
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		defer acancel()
		_, err := Provision(actx, pjs, cfg)
		return err
	})
	streams, err := Streams(cfg)
	if err != nil {
		t.Fatal(err)
	}
	buckets, err := Buckets(cfg)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, s := range streams {
		names = append(names, s.Name)
	}
	for _, b := range buckets {
		names = append(names, "KV_"+b.Bucket)
	}
	for _, name := range names {
		st, err := pjs.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}

	_, ejs := c.connect(RoleExecutor)
	plans, err := ejs.KeyValue(ctx, events.BucketPlans)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := plans.Put(ctx, fmt.Sprintf("plan-%02d", i), []byte("v1")); err != nil {
			t.Fatal(err)
		}
	}
	var leader string
	eventually(t, 10*time.Second, "the plans bucket has a leader", func() error {
		st, err := pjs.Stream(ctx, "KV_"+events.BucketPlans)
		if err != nil {
			return err
		}
		info := st.CachedInfo()
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return fmt.Errorf("no leader yet")
		}
		leader = info.Cluster.Leader
		return nil
	})
	idx := int(leader[1]-'0') - 1
	t.Logf("killing %s, the leader of KV_%s", leader, events.BucketPlans)
	c.servers[idx].Shutdown()
	c.servers[idx] = nil

	for i := range 20 {
		key := fmt.Sprintf("plan-%02d", i)
		eventually(t, 20*time.Second, "read "+key+" without its leader", func() error {
			// Each attempt its own bound: a request while the stream has
			// no leader gets no answer and would wait for ctx (the
			// test's 4 minutes), never trying again.
			actx, acancel := context.WithTimeout(ctx, 3*time.Second)
			defer acancel()
			e, err := plans.Get(actx, key)
			if err != nil {
				return err
			}
			if string(e.Value()) != "v1" {
				return fmt.Errorf("%s = %q", key, e.Value())
			}
			return nil
		})
	}
	eventually(t, 20*time.Second, "write with two nodes of three", func() error {
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		defer acancel()
		_, err := plans.Put(actx, "plan-after", []byte("v2"))
		return err
	})

	if err := c.start(idx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, leader+" catches up", func() error {
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		defer acancel()
		st, err := pjs.Stream(actx, "KV_"+events.BucketPlans)
		if err != nil {
			return err
		}
		info := st.CachedInfo()
		if info.Cluster == nil {
			return fmt.Errorf("no cluster info")
		}
		for _, r := range info.Cluster.Replicas {
			if r.Name == leader && (!r.Current || r.Offline) {
				return fmt.Errorf("%s is not current yet", leader)
			}
		}
		if info.Cluster.Leader != leader && !containsReplica(info.Cluster.Replicas, leader) {
			return fmt.Errorf("%s is not a replica again", leader)
		}
		return nil
	})
}

func containsReplica(rs []*jetstream.PeerInfo, name string) bool {
	for _, r := range rs {
		if r.Name == name {
			return true
		}
	}
	return false
}
