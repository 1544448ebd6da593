package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
)

var listeningRE = regexp.MustCompile(`NATS JetStream listening on (\S+)`)

// TestNATSClusterOfThreeDeclaresR3: three "kaar nats" servers joined by
// routes form one JetStream cluster, and with nats.replicas 3 every
// stream and bucket is declared with three replicas; the services' roles
// work on any node.
func TestNATSClusterOfThreeDeclaresR3(t *testing.T) {
	if testing.Short() {
		t.Skip("three clustered NATS servers; run without -short")
	}
	t.Parallel()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("kubernetes:\n  cluster_name: prod\nnats:\n  replicas: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "credentials")
	var routes []string
	var routePorts []int
	for range 3 {
		p := testutil.FreePort(t)
		routePorts = append(routePorts, p)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	outs := make([]*testutil.Buffer, 3)
	done := make(chan error, 3)
	for i := range 3 {
		outs[i] = &testutil.Buffer{}
		args := []string{"--listen", "127.0.0.1:0", "--store-dir", filepath.Join(dir, fmt.Sprintf("n%d", i)), "--credentials-dir", creds,
			"--config", cfgFile, "--server-name", fmt.Sprintf("n%d", i), "--route-listen", fmt.Sprintf("127.0.0.1:%d", routePorts[i]),
			"--routes", strings.Join(routes, ",")}
		go func() { done <- runNATS(ctx, args, outs[i], io.Discard) }()
	}
	var urls []string
	for i := range 3 {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if m := listeningRE.FindStringSubmatch(outs[i].String()); m != nil {
				urls = append(urls, m[1])
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("server n%d did not come up", i)
			}
			select {
			case err := <-done:
				t.Fatalf("a server stopped: %v", err)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	seeds, err := bus.LoadOrCreateCredentials(creds)
	if err != nil {
		t.Fatal(err)
	}
	for i, url := range urls {
		nc, err := bus.Connect(ctx, url, bus.ConnectOptions{Name: "kaar-executor", NkeyFile: seeds.SeedFile(bus.RoleExecutor),
			InboxPrefix: bus.RoleExecutor.InboxPrefix(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("executor on n%d: %v", i, err)
		}
		js, _ := jetstream.New(nc)
		kv, err := js.KeyValue(ctx, events.BucketPlans)
		if err != nil {
			t.Fatalf("n%d: %v", i, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas; r != 3 {
			t.Errorf("n%d: %s has %d replicas, want 3", i, events.BucketPlans, r)
		}
		if _, err := kv.Put(ctx, fmt.Sprintf("p%d", i), []byte("x")); err != nil {
			t.Errorf("executor writes a plan through n%d: %v", i, err)
		}
		nc.Close()
	}
	cancel()
	for range 3 {
		<-done
	}
}
