package cli

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
)

// TestNATSLeafFlags: kaar nats is the central server or a leaf node,
// never both, and each flag is refused without the mode it belongs to.
func TestNATSLeafFlags(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		leaves []string
		want   string // error substring; empty: accepted
	}{
		{"hub", []string{"--leaf-listen", "127.0.0.1:7422", "--leaf-tls-cert", "c", "--leaf-tls-key", "k"}, []string{"edge"}, ""},
		{"leaf", []string{"--leaf-remote", "tls://hub:7422", "--leaf-remote-ca", "ca"}, nil, ""},
		{"both", []string{"--leaf-listen", "127.0.0.1:7422", "--leaf-remote", "tls://hub:7422"}, []string{"edge"}, "either the central one or a leaf node"},
		{"hub without leaf clusters", []string{"--leaf-listen", "127.0.0.1:7422"}, nil, "nats.leaf_clusters"},
		{"leaf clusters without a leaf port", nil, []string{"edge"}, "--leaf-listen"},
		{"random leaf port", []string{"--leaf-listen", "127.0.0.1:0"}, []string{"edge"}, "fixed port"},
		{"hub TLS without a leaf port", []string{"--leaf-tls-cert", "c"}, nil, "need --leaf-listen"},
		{"advertise without a leaf port", []string{"--leaf-advertise", "hub:7422"}, nil, "need --leaf-listen"},
		{"leaf TLS without a remote", []string{"--leaf-remote-ca", "ca"}, nil, "need --leaf-remote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("nats", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			f := leafFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			cfg := config.Default()
			cfg.Kubernetes.ClusterName = "edge"
			cfg.NATS.LeafClusters = tc.leaves
			dir := t.TempDir()
			var o bus.EmbeddedOptions
			err := f.apply(&o, cfg, dir)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			seed := filepath.Join(dir, bus.LeafSeedFileName("edge"))
			if fi, err := os.Stat(seed); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("the leaf seed %s: %v", seed, err)
			}
			switch tc.name {
			case "hub":
				if o.LeafNodes.Port != 7422 || o.LeafNodes.Seeds["edge"] == "" || o.LeafNodes.VerifyClients {
					t.Errorf("hub options: %+v", o.LeafNodes)
				}
			case "leaf":
				if o.JetStreamDomain != bus.LeafDomain("edge") || o.LeafRemote.SeedFile != seed || o.LeafRemote.TLS.CAFile != "ca" {
					t.Errorf("leaf options: domain %q, %+v", o.JetStreamDomain, o.LeafRemote)
				}
			}
		})
	}
}

// TestLeafClustersNeedALeafPort: kaar serve's embedded server and a kaar
// nats without --leaf-listen refuse nats.leaf_clusters (their streams
// would wait for leaves that cannot connect), naming the key.
func TestLeafClustersNeedALeafPort(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	dir := t.TempDir()
	// A kubeconfig that parses (nothing connects to it before the check).
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\n"+
		"users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("kubernetes:\n  kubeconfig: "+kubeconfig+"\nnats:\n  leaf_clusters: [edge]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"serve", "--config", cfg, "--no-sandbox"},
		{"nats", "--config", cfg, "--listen", "127.0.0.1:0", "--store-dir", t.TempDir()},
	} {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		code := Main(ctx, args, strings.NewReader(""), &out, &out)
		cancel()
		if code == 0 || !strings.Contains(out.String(), "nats.leaf_clusters") {
			t.Errorf("kaar %v: exit %d\n%s", args, code, out.String())
		}
	}
}
