package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/bus"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMCPClientSpawnsTheStdioServer builds this command and lets the go-sdk
// client spawn it with --stdio, as an MCP client configured with
// {"command": ..., "args": ["--stdio"]} does: stdout must carry nothing but
// the protocol, logs go to stderr.
func TestMCPClientSpawnsTheStdioServer(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: it builds the kaar-mcpgateway binary; run without -short (make test) to run it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the gateway: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "kaar-mcpgateway")
	build := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// The bus authenticates every client and the gateway does not declare
	// it: the provisioner does, then the gateway logs in with its seed.
	creds, err := bus.LoadOrCreateCredentials(filepath.Join(t.TempDir(), "credentials"))
	if err != nil {
		t.Fatal(err)
	}
	emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{Port: bus.RandomPort, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	pnc, err := emb.ConnectAs(ctx, bus.RoleProvisioner, bus.ConnectOptions{Name: "provisioner"})
	if err != nil {
		t.Fatal(err)
	}
	defer pnc.Close()
	pjs, err := bus.NewJetStream(pnc, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Provision(ctx, pjs, bus.Config{Clusters: []string{"spawned"}}); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "--stdio", "--nats-url", emb.ClientURL())
	cmd.Env = append(os.Environ(), "KAAR_KUBERNETES_CLUSTER_NAME=spawned", "KAAR_NATS_NKEY_FILE="+creds.SeedFile(bus.RoleMCPGateway))
	stderr := &testutil.Buffer{}
	cmd.Stderr = stderr
	cl := sdk.NewClient(&sdk.Implementation{Name: "spawner", Version: "1"}, nil)
	cs, err := cl.Connect(ctx, &sdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect: %v\nstderr:\n%s", err, stderr.String())
	}
	defer cs.Close()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("list tools: %v\nstderr:\n%s", err, stderr.String())
	}
	if len(tools.Tools) != 13 {
		t.Errorf("%d tools, want 13", len(tools.Tools))
	}
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "test", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res.StructuredContent)
	var out struct {
		Cluster string `json:"cluster"`
		Bus     struct {
			Connected bool `json:"connected"`
			JetStream bool `json:"jetstream"`
		} `json:"bus"`
	}
	if err := json.Unmarshal(b, &out); err != nil || !out.Bus.Connected || !out.Bus.JetStream {
		t.Errorf("test tool over spawned stdio: %s (%v)", b, err)
	}
	if out.Cluster != "spawned" {
		t.Errorf("cluster %q, want the one from KAAR_KUBERNETES_CLUSTER_NAME", out.Cluster)
	}
}
