package svcmain

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
)

// provisionedBus is an embedded bus, provisioned for the default
// configuration (cluster "default"), and a connector that connects each
// service as its role.
func provisionedBus(t *testing.T, ctx context.Context) (config.Config, Connector) {
	t.Helper()
	emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{DontListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	owner, err := emb.Connect(ctx, bus.ConnectOptions{Name: "provisioner", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	js, _ := jetstream.New(owner)
	cfg := config.Default()
	if _, err := bus.Provision(ctx, js, BusConfig(cfg)); err != nil {
		t.Fatal(err)
	}
	return cfg, func(ctx context.Context, name string, logger *slog.Logger) (*nats.Conn, error) {
		role, _ := bus.RoleOfService(name)
		return emb.ConnectAs(ctx, role, ConnectOptions(cfg, name, logger))
	}
}

// runningService counts how many of its kind run at once.
type runningService struct {
	running *atomic.Int32
	max     *atomic.Int32
	started chan string
	name    string
}

func (r runningService) Ready() <-chan struct{} { return nil }

func (r runningService) Run(ctx context.Context) error {
	n := r.running.Add(1)
	for {
		m := r.max.Load()
		if n <= m || r.max.CompareAndSwap(m, n) {
			break
		}
	}
	r.started <- r.name
	<-ctx.Done()
	r.running.Add(-1)
	return nil
}

// TestSingletonReplicasStandBy: two replicas of a singleton service
// (the watcher) built through Instances: one runs, the other stands by
// and is ready; when the active one stops, the standby takes over.
func TestSingletonReplicasStandBy(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, connect := provisionedBus(t, ctx)
	var running, most atomic.Int32
	started := make(chan string, 4)
	replica := func(name string) (Instance, context.CancelFunc, chan error) {
		spec := Spec{Name: "watcher", Singleton: true, Build: func(context.Context, Env) (Service, error) {
			return runningService{running: &running, max: &most, started: started, name: name}, nil
		}}
		insts, closeAll, err := Instances(ctx, []Spec{spec}, cfg, connect, name, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeAll)
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- RunAll(rctx, insts) }()
		return insts[0], rcancel, done
	}
	a, stopA, doneA := replica("a")
	var first string
	select {
	case first = <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("no replica started")
	}
	if first != "a" {
		t.Fatalf("%s started first", first)
	}
	b, _, _ := replica("b")
	select {
	case <-a.Service.Ready():
	default:
		t.Error("the active replica is not ready")
	}
	select {
	case <-b.Service.Ready():
	case <-time.After(5 * time.Second):
		t.Error("the standby replica is not ready: a rollout would wait for it forever")
	}
	select {
	case n := <-started:
		t.Fatalf("%s started while a held the lease", n)
	case <-time.After(3 * time.Second):
	}
	stopA()
	if err := <-doneA; err != nil {
		t.Errorf("the stopped replica: %v", err)
	}
	select {
	case n := <-started:
		if n != "b" {
			t.Errorf("%s took over, want b", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the standby did not take over after the active replica stopped")
	}
	if most.Load() != 1 {
		t.Errorf("%d replicas ran at once", most.Load())
	}
}

// splitService records which of its parts run.
type splitService struct {
	runningService
	everyReplica chan string
}

func (s splitService) RunLeader(ctx context.Context) error { return s.runningService.Run(ctx) }

func (s splitService) RunEveryReplica(ctx context.Context) error {
	s.everyReplica <- s.name
	<-ctx.Done()
	return nil
}

// TestSplitSingletonServesOnEveryReplica: a singleton with a part for
// every replica (the notifier's HTTP endpoints) runs that part on the
// standby too, and its leader part on one replica only.
func TestSplitSingletonServesOnEveryReplica(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, connect := provisionedBus(t, ctx)
	var running, most atomic.Int32
	leaders, every := make(chan string, 4), make(chan string, 4)
	for _, name := range []string{"a", "b"} {
		spec := Spec{Name: "watcher", Singleton: true, Build: func(context.Context, Env) (Service, error) {
			return splitService{runningService{running: &running, max: &most, started: leaders, name: name}, every}, nil
		}}
		insts, closeAll, err := Instances(ctx, []Spec{spec}, cfg, connect, name, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeAll)
		go func() { _ = RunAll(ctx, insts) }()
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case n := <-every:
			got[n] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("every-replica part ran on %v only", got)
		}
	}
	select {
	case <-leaders:
	case <-time.After(10 * time.Second):
		t.Fatal("no replica ran the leader part")
	}
	select {
	case n := <-leaders:
		t.Errorf("a second leader part ran (%s)", n)
	case <-time.After(2 * time.Second):
	}
}
