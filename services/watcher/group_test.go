package watcher

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestOneProcessWatchesSeveralClusters: a Group watches two clusters with
// one NATS connection and one metrics registry; the same failing pod in
// each is two incidents, each carrying its cluster in its id, its event,
// its subject and its analyze endpoint.
func TestOneProcessWatchesSeveralClusters(t *testing.T) {
	nc := embeddedBus(t, false)
	ctx := t.Context()
	js, _ := jetstream.New(nc)
	if _, err := bus.Provision(ctx, js, bus.Config{Clusters: []string{"eu", "us"}}); err != nil {
		t.Fatal(err)
	}
	kube := map[string]*fake.Clientset{"eu": fake.NewClientset(), "us": fake.NewClientset()}
	target := func(cluster string) Target {
		return Target{Config: Config{Cluster: cluster, Timing: unitTiming, Debounce: 100 * time.Millisecond}, Kube: kube[cluster]}
	}
	reg := prometheus.NewRegistry()
	deps := Deps{NATS: nc, Registerer: reg, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	if _, err := NewGroup([]Target{target("eu"), target("eu")}, Deps{NATS: nc}); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "clusters[1]") {
		t.Errorf("a cluster named twice: %v, want ErrInvalidConfig naming clusters[1]", err)
	}
	g, err := NewGroup([]Target{target("eu"), target("us")}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if got := g.Clusters(); len(got) != 2 || got[0] != "eu" || got[1] != "us" {
		t.Errorf("Clusters() = %v", got)
	}

	got := make(chan jetstream.Msg, 10)
	cons, err := js.OrderedConsumer(ctx, events.StreamIssues, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"kaar.eu.issue.>", "kaar.us.issue.>"}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { got <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, 10*time.Second, "both clusters to sync", func() (bool, string) { return g.Ready(), "not ready" })

	for _, cs := range kube {
		if _, err := cs.CoreV1().Pods("shop").Create(ctx, barePod(t, "sandbox-crash-exit-1", "shop", "api"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ids := map[string]string{}
	for range 2 {
		var m jetstream.Msg
		select {
		case m = <-got:
		case <-time.After(15 * time.Second):
			t.Fatal("fewer than two detections")
		}
		env, err := events.Decode(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.DecodeData[events.IncidentEvent](env)
		if err != nil {
			t.Fatal(err)
		}
		cluster := ev.Incident.Cluster
		want, _ := events.IssueSubject(cluster, "shop", events.IssueCrashLoopBackOff)
		if ev.Transition != events.TransitionDetected || env.Cluster != cluster || m.Subject() != want ||
			ev.Incident.ID != events.IncidentID(cluster, "shop", "Pod", "api", "app", events.IssueCrashLoopBackOff) {
			t.Errorf("announcement on %s: envelope cluster %q, %s %+v", m.Subject(), env.Cluster, ev.Transition, ev.Incident)
		}
		ids[cluster] = ev.Incident.ID
	}
	if len(ids) != 2 || ids["eu"] == ids["us"] {
		t.Fatalf("incidents by cluster = %v, want one per cluster with distinct ids", ids)
	}
	for cluster, id := range ids {
		subject, _ := events.ServiceSubject(cluster, events.ServiceWatcher, events.VerbAnalyze)
		body, _ := json.Marshal(events.AnalyzeRequest{})
		msg, err := nc.Request(subject, body, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := events.DecodeReply[events.AnalyzeResponse](msg.Data, msg.Header.Get(events.HeaderError))
		if err != nil || resp.Total != 1 || resp.Incidents[0].ID != id || resp.Incidents[0].Cluster != cluster {
			t.Errorf("analyze on %s = %+v, %v; want only its own incident", subject, resp, err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "kaar_watcher_detections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cluster" && m.GetCounter().GetValue() == 1 {
					series[l.GetValue()] = true
				}
			}
		}
	}
	if !series["eu"] || !series["us"] {
		t.Errorf("detections by cluster label = %v, want eu and us", series)
	}
}
