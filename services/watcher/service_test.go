package watcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

// embeddedBus starts an embedded NATS JetStream for one test, provisioned
// when provision is true.
func embeddedBus(t *testing.T, provision bool) *nats.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{DontListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := emb.Connect(ctx, bus.ConnectOptions{Name: "watcher-unit"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if provision {
		js, _ := jetstream.New(nc)
		if _, err := bus.Provision(ctx, js, bus.Config{Clusters: []string{"unit"}}); err != nil {
			t.Fatal(err)
		}
	}
	return nc
}

func TestNewValidatesConfig(t *testing.T) {
	nc := embeddedBus(t, false)
	kube := fake.NewClientset()
	good := Config{Cluster: "prod"}
	for _, tc := range []struct {
		mutate func(*Config)
		field  string
	}{
		{func(c *Config) { c.Cluster = "" }, "cluster"},
		{func(c *Config) { c.Cluster = "Prod.EU" }, "cluster"},
		{func(c *Config) { c.Workers = 1000 }, "workers"},
		{func(c *Config) { c.Debounce = -time.Second }, "debounce"},
		{func(c *Config) { c.StateRetention = time.Minute }, "state_retention"},
	} {
		cfg := good
		tc.mutate(&cfg)
		_, err := New(cfg, Deps{NATS: nc, Kube: kube})
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), `"`+tc.field+`"`) {
			t.Errorf("config %+v: error %v, want ErrInvalidConfig naming %q", cfg, err, tc.field)
		}
	}
	if _, err := New(good, Deps{Kube: kube}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("no NATS: %v", err)
	}
	if _, err := New(good, Deps{NATS: nc, Kube: kube}); err != nil {
		t.Errorf("good config: %v", err)
	}
	reg := prometheus.NewRegistry()
	if _, err := New(good, Deps{NATS: nc, Kube: kube, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(good, Deps{NATS: nc, Kube: kube, Registerer: reg}); err == nil {
		t.Errorf("a second watcher on the same registry must fail to register its metrics")
	}
}

func TestConfigFrom(t *testing.T) {
	c := config.Default()
	c.Kubernetes.ClusterName, c.Kubernetes.Namespace = "eu-1", "shop"
	c.Policy.ExcludeNamespaces = []string{"sandbox"}
	got := ConfigFrom(c)
	if got.Cluster != "eu-1" || got.Namespace != "shop" || got.ExcludeNamespaces[0] != "sandbox" ||
		len(got.ProtectedNamespaces) != 3 || got.Classify != DefaultClassifyOptions() {
		t.Errorf("ConfigFrom(config.Default()) = %+v, want the watcher's defaults", got)
	}
	c.Watcher = config.Watcher{RestartThreshold: 4, PendingGrace: config.Duration{Duration: 2 * time.Minute}}
	want := ClassifyOptions{RestartThreshold: 4, PendingGrace: 2 * time.Minute}
	if got := ConfigFrom(c).Classify; got != want {
		t.Errorf("ConfigFrom(watcher section) = %+v, want %+v (zero durations disable)", got, want)
	}
	if _, err := got.withDefaults(); err != nil {
		t.Errorf("ConfigFrom(config.Default()) does not validate: %v", err)
	}
	if want := (Timing{GroupInterval: 30 * time.Second, ResolveWait: 10 * time.Second}); got.Timing != want {
		t.Errorf("ConfigFrom(config.Default()).Timing = %+v, want %+v", got.Timing, want)
	}
	c.Watcher.GroupWait, c.Watcher.GroupInterval, c.Watcher.ResolveWait = config.Duration{Duration: time.Second},
		config.Duration{Duration: time.Minute}, config.Duration{Duration: 2 * time.Minute}
	if got, want := ConfigFrom(c).Timing, (Timing{GroupWait: time.Second, GroupInterval: time.Minute, ResolveWait: 2 * time.Minute}); got != want {
		t.Errorf("ConfigFrom(watcher timing) = %+v, want %+v", got, want)
	}
}

func TestRunNeedsAProvisionedBus(t *testing.T) {
	svc, err := New(Config{Cluster: "unit"}, Deps{NATS: embeddedBus(t, false), Kube: fake.NewClientset()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := svc.Run(ctx); err == nil || !strings.Contains(err.Error(), events.BucketIncidents) {
		t.Errorf("Run on an unprovisioned bus = %v, want an error naming %s", err, events.BucketIncidents)
	}
	if err := svc.Run(ctx); !errors.Is(err, ErrAlreadyRun) {
		t.Errorf("second Run = %v, want ErrAlreadyRun", err)
	}
}

// TestPodStormIsCoalesced feeds a 50-replica crash and then 500 status
// updates through the informers: the watcher evaluates the owner a few
// times, not 550, and announces one incident with 50 pods. The fake
// clientset stands in for the API server here because this is about the
// watcher's own queueing; the sandbox tests cover real informers.
func TestPodStormIsCoalesced(t *testing.T) {
	nc := embeddedBus(t, true)
	kube := fake.NewClientset()
	ctx := t.Context()
	yes := true
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "payments-api-7d9f", UID: "uid-rs",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "payments-api", UID: "uid-dep", Controller: &yes}}}}
	if _, err := kube.AppsV1().ReplicaSets("shop").Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tmpl := loadPod(t, "sandbox-crash-exit-1")
	pod := func(i int, restarts int32) *corev1.Pod {
		p := tmpl.DeepCopy()
		p.Namespace, p.Name, p.UID = "shop", fmt.Sprintf("payments-api-7d9f-%02d", i), types.UID(fmt.Sprintf("uid-%04d", i))
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}}
		p.Status.ContainerStatuses[0].RestartCount = restarts
		return p
	}

	// The 50 crashing pods exist before the watcher starts: its informers
	// deliver them as 50 adds at once, and the first announcement (held
	// for the group wait) has them all. Created while it ran, the fake
	// clientset under -race on 2 busy cores made 31 of them in the 3 s
	// group wait, and the announcement had 31.
	start := time.Now()
	for i := range 50 {
		if _, err := kube.CoreV1().Pods("shop").Create(ctx, pod(i, 3), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	svc, err := New(Config{Cluster: "unit", Timing: Timing{GroupWait: 3 * time.Second, GroupInterval: time.Second, ResolveWait: 500 * time.Millisecond},
		Debounce: 300 * time.Millisecond}, Deps{NATS: nc, Kube: kube, Registerer: reg, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	runService(t, svc)

	js, _ := jetstream.New(nc)
	filter, _ := events.IssueFilter("unit")
	cons, err := js.OrderedConsumer(ctx, events.StreamIssues, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan events.IncidentEvent, 100)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		env, err := events.Decode(m.Data())
		if err != nil {
			t.Errorf("decode: %v", err)
			return
		}
		ev, err := events.DecodeData[events.IncidentEvent](env)
		if err != nil {
			t.Errorf("decode data: %v", err)
			return
		}
		got <- ev
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()

	next := func(what string) events.IncidentEvent {
		t.Helper()
		select {
		case ev := <-got:
			return ev
		case <-time.After(20 * time.Second):
			t.Fatalf("no %s announcement", what)
		}
		return events.IncidentEvent{}
	}
	ev := next("detected")
	if ev.Transition != events.TransitionDetected || ev.Incident.PodCount != 50 || len(ev.Incident.Pods) != events.MaxIncidentPods ||
		ev.Incident.Owner.Name != "payments-api" {
		t.Fatalf("first announcement = %s %+v, want detected with 50 pods", ev.Transition, ev.Incident)
	}
	// The storm: every pod restarts ten more times.
	for r := int32(4); r < 14; r++ {
		for i := range 50 {
			if _, err := kube.CoreV1().Pods("shop").UpdateStatus(ctx, pod(i, r), metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 10*time.Second, "the storm to be evaluated", func() (bool, string) {
		resp, _ := query(svc.tracker, events.AnalyzeRequest{}, "unit", time.Now())
		return resp.Total == 1 && resp.Incidents[0].RestartCount == 13, fmt.Sprintf("%+v", resp.Incidents)
	})
	// Without coalescing every event is an evaluation. With it, at most
	// one evaluation starts per debounce window (and one more for events
	// that arrive during it), plus the group wait's.
	elapsed := time.Since(start)
	bound := 2*uint64(elapsed/svc.cfg.Debounce) + 5
	if n := handlingCount(t, reg); n > bound {
		t.Errorf("%d evaluations in %s for 550 pod events of one owner, want at most %d", n, elapsed.Round(time.Millisecond), bound)
	} else {
		t.Logf("%d evaluations in %s for 550 pod events (bound %d)", n, elapsed.Round(time.Millisecond), bound)
	}
	// Every pod goes: resolved.
	for i := range 50 {
		if err := kube.CoreV1().Pods("shop").Delete(ctx, pod(i, 0).Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if ev := next("resolved"); ev.Transition != events.TransitionResolved || ev.Observation != 2 {
		t.Errorf("after the storm and the deletions: %s (observation %d), want resolved 2: restart counts alone are not announced", ev.Transition, ev.Observation)
	}
}

func handlingCount(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "kaar_watcher_event_handling_duration_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatal("no handling histogram")
	return 0
}

func TestNamespacePolicy(t *testing.T) {
	for _, tc := range []struct {
		cfg     Config
		watched map[string]bool
	}{
		{Config{}, map[string]bool{"shop": true, "kube-system": true}},
		{Config{Namespace: "shop"}, map[string]bool{"shop": true, "ops": false}},
		{Config{IncludeNamespaces: []string{"shop", "ops"}}, map[string]bool{"shop": true, "ops": true, "dev": false}},
		{Config{ExcludeNamespaces: []string{"dev"}}, map[string]bool{"shop": true, "dev": false}},
		{Config{IncludeNamespaces: []string{"shop", "dev"}, ExcludeNamespaces: []string{"dev"}}, map[string]bool{"shop": true, "dev": false, "ops": false}},
	} {
		f := newNSFilter(tc.cfg)
		for ns, want := range tc.watched {
			if got := f.watched(ns); got != want {
				t.Errorf("%+v: watched(%s) = %v, want %v", tc.cfg, ns, got, want)
			}
		}
	}
	f := newNSFilter(ConfigFrom(config.Default()))
	if !f.isProtected("kube-system") || f.isProtected("shop") || !f.watched("kube-system") {
		t.Errorf("protected namespaces are watched and flagged, others are not flagged")
	}
}

// runService runs svc until the test ends or stop is called, whichever
// comes first; Run must then return nil within 30 s.
func runService(t *testing.T, svc *Service) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v, want nil on shutdown", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return 30s after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
