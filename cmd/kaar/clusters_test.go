package main_test

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/kaar-dev/kaar/pkg/svcmain"
)

// One kaar serve watches, plans for and remediates two clusters
// (kubernetes.additional_clusters; here two namespaces of the sandbox
// under two cluster names): each failing Deployment becomes an incident and
// a plan of its own cluster on the bus.
func TestOneProcessServesSeveralClusters(t *testing.T) {
	parallel(t)
	c := sandbox.ForTest(t)
	cs := c.Clientset()
	nsA, nsB := sandbox.NewNamespace(t, cs), sandbox.NewNamespace(t, cs)
	breakDeployment(t, cs, nsA, "web-a")
	breakDeployment(t, cs, nsB, "web-b")
	second := "second-" + nsB[len(nsB)-5:]
	inst := startServe(t, c, nsA, "", fmt.Sprintf("  additional_clusters:\n    - {kubeconfig: %s, namespace: %s, cluster_name: %s}", c.KubeconfigPath, nsB, second))
	m := regexp.MustCompile(`NATS: +(nats://\S+)`).FindStringSubmatch(inst.output.String())
	if m == nil {
		t.Fatalf("no NATS URL in the banner:\n%s", inst.output.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// As the CLI does: the cli role's seed from kaar serve's state directory.
	nc, err := bus.Connect(ctx, m[1], svcmain.ConnectOptions(config.Default(), "kaar-cli", slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := bus.NewJetStream(nc, "")
	if err != nil {
		t.Fatal(err)
	}
	plans, err := bus.OpenPlanStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{inst.cluster: "web-a", second: "web-b"}
	for {
		got := map[string]string{}
		list, err := plans.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range list {
			if want[p.Plan.Cluster] == p.Plan.Target.Name {
				got[p.Plan.Cluster] = p.Plan.Target.Name
			}
		}
		if len(got) == len(want) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("plans per cluster %v, want %v", got, want)
		case <-time.After(500 * time.Millisecond):
		}
	}
	if !regexp.MustCompile(`Also watching and remediating clusters ` + second).MatchString(inst.output.String()) {
		t.Errorf("the banner does not name the second cluster:\n%s", inst.output.String())
	}
}
