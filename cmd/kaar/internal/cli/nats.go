package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/svcmain"
)

// runNATS runs a standalone NATS JetStream server with kaar's streams,
// buckets and consumers declared, for split deployments and tests.
func runNATS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("nats", "Runs a NATS JetStream server (file storage) and declares kaar's streams, buckets and consumers. Clients authenticate as a role (an nkey seed of --credentials-dir), each limited to its role's subjects. "+
		"With --leaf-remote it is the leaf node of a cluster (its own JetStream domain, the cluster's name) linked to a central server over TLS; with --leaf-listen and nats.leaf_clusters, that central server.", stderr)
	listen := fs.String("listen", "127.0.0.1:4222", "client listen address (port 0 picks a free port)")
	storeDir := fs.String("store-dir", "", "JetStream storage directory (default: a temporary directory)")
	cluster := fs.String("cluster-name", "", "kaar cluster name the streams and consumers are declared for (default: kubernetes.cluster_name of --config, else \"default\")")
	credDir := fs.String("credentials-dir", "", "directory of the role credentials (one nkey seed per role, created when missing; default: ~/.local/state/kaar/credentials)")
	configFile := fs.String("config", "", "kaar configuration whose nats section (audit_retention, executor_ack_wait, replicas; tls for the server's client port) the declarations follow")
	serverName := fs.String("server-name", "", "this server's name (unique in a NATS cluster; default kaar-embedded)")
	routeListen := fs.String("route-listen", "", "join a NATS cluster: listen for routes on this host:port (with --routes)")
	routes := fs.String("routes", "", "comma-separated route URLs of the NATS cluster's servers (nats-route://host:port), this one's may be among them")
	natsCluster := fs.String("nats-cluster", "kaar", "the NATS cluster's name (the same on every server)")
	leaf := leafFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadFile(*configFile, os.Environ())
	if err != nil {
		return err
	}
	if *cluster != "" {
		cfg.Kubernetes.ClusterName = *cluster
	}
	// The same rule as nats.listen: off loopback only with TLS.
	cfg.NATS.Listen = *listen
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("--listen, --cluster-name or --config: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	host, port, err := splitListen(*listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	dir := *credDir
	if dir == "" {
		if dir, err = credentialsDir(); err != nil {
			return err
		}
	}
	creds, err := bus.LoadOrCreateCredentials(dir)
	if err != nil {
		return fmt.Errorf("bus credentials: %w", err)
	}
	opts := bus.EmbeddedOptions{StoreDir: *storeDir, Host: host, Port: port, Logger: logger, Credentials: creds, ServerName: *serverName}
	clustered := *routeListen != ""
	if clustered {
		if *routes == "" || *serverName == "" {
			return fmt.Errorf("--route-listen needs --routes and --server-name (a NATS cluster of servers with distinct names)")
		}
		rhost, rport, err := splitListen(*routeListen)
		if err != nil || rport == bus.RandomPort {
			return fmt.Errorf("--route-listen %q: want host:port with a fixed port (the other servers' --routes name it)", *routeListen)
		}
		opts.Cluster = bus.ClusterOptions{Name: *natsCluster, Host: rhost, Port: rport, Routes: strings.Split(*routes, ",")}
		// A clustered server waits for its peers before it serves.
		opts.ReadyTimeout = time.Minute
	} else if cfg.NATS.Replicas > 1 {
		return fmt.Errorf("config key \"nats.replicas\": %d needs a NATS cluster (--route-listen, --routes)", cfg.NATS.Replicas)
	}
	opts.TLS, opts.VerifyClients = embeddedTLS(cfg)
	if err := leaf.apply(&opts, cfg, dir); err != nil {
		return err
	}
	emb, err := bus.StartEmbedded(ctx, opts)
	if err != nil {
		return err
	}
	defer emb.Shutdown()
	// This server is the bus: its own JetStream, whatever domain leaf
	// clients are configured with.
	cfg.NATS.JetStreamDomain = ""
	if err := provisionWhenReady(ctx, connectEmbedded(emb, cfg), cfg, logger, clustered); err != nil {
		return err
	}
	if len(cfg.NATS.LeafClusters) > 0 {
		go resumeLeafSources(ctx, emb, connectEmbedded(emb, cfg), svcmain.BusConfig(cfg), logger)
	}
	fmt.Fprintf(stdout, "NATS JetStream listening on %s (clients authenticate with a role's nkey seed from %s)\n", emb.ClientURL(), creds.Dir())
	<-ctx.Done()
	return nil
}

// embeddedTLS is the embedded server's TLS from nats.tls: none unless
// cert_file is set (ca_file alone is a client setting).
func embeddedTLS(cfg config.Config) (bus.TLSFiles, bool) {
	t := cfg.NATS.TLS
	if t.CertFile == "" {
		return bus.TLSFiles{}, false
	}
	return bus.TLSFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile}, t.VerifyClients
}

// connectEmbedded connects in-process to the embedded server, each
// service (named "kaar-<role>") as its own role, as if it ran alone.
func connectEmbedded(emb *bus.Embedded, cfg config.Config) svcmain.Connector {
	return func(ctx context.Context, name string, logger *slog.Logger) (*nats.Conn, error) {
		role, ok := bus.RoleOfService(name)
		if !ok {
			return nil, fmt.Errorf("no bus role for %q", name)
		}
		return emb.ConnectAs(ctx, role, svcmain.ConnectOptions(cfg, name, logger))
	}
}

// splitListen parses host:port; port 0 means a random free port.
func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number in 0-65535", p)
	}
	if port == 0 {
		port = bus.RandomPort
	}
	return host, port, nil
}

// provisionWhenReady declares the bus; on a cluster it retries (for up to
// two minutes) while the cluster elects its meta leader and the other
// servers declare the same things.
func provisionWhenReady(ctx context.Context, connect svcmain.Connector, cfg config.Config, logger *slog.Logger, clustered bool) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := provision(actx, connect, cfg, logger)
		cancel()
		if err == nil || !clustered || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		logger.Info("provisioning the cluster: waiting for it to form", slog.Any("error", err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
