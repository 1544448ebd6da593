package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/svcmain"
)

// natsLeafFlags are kaar nats's leaf node flags: a central server (the
// hub) listens for the leaf nodes of nats.leaf_clusters, a cluster's leaf
// node connects to it.
type natsLeafFlags struct {
	domain                          *string
	listen, advertise               *string
	tlsCert, tlsKey, tlsCA          *string
	remote                          *string
	remoteCA, remoteCert, remoteKey *string
}

func leafFlags(fs *flag.FlagSet) natsLeafFlags {
	return natsLeafFlags{
		domain:     fs.String("jetstream-domain", "", "this server's JetStream domain (default: the cluster's name with --leaf-remote; none otherwise); clients of other servers reach it as $JS.<domain>.API"),
		listen:     fs.String("leaf-listen", "", "central server: accept the leaf nodes of nats.leaf_clusters on this host:port, over TLS (--leaf-tls-cert, --leaf-tls-key); each authenticates with its seed leaf-<cluster>.nk of --credentials-dir (created when missing: copy it to the leaf)"),
		advertise:  fs.String("leaf-advertise", "", "central server: the host:port leaf nodes reach --leaf-listen at, told to them for their reconnections (default: --leaf-listen)"),
		tlsCert:    fs.String("leaf-tls-cert", "", "central server: the leaf port's certificate (PEM)"),
		tlsKey:     fs.String("leaf-tls-key", "", "central server: the leaf port's key (PEM)"),
		tlsCA:      fs.String("leaf-tls-ca", "", "central server: require leaf nodes to present a certificate signed by this CA (PEM)"),
		remote:     fs.String("leaf-remote", "", "leaf node of cluster --cluster-name: connect to the central server at tls://host:port, authenticated with leaf-<cluster>.nk of --credentials-dir"),
		remoteCA:   fs.String("leaf-remote-ca", "", "leaf node: verify the central server with this CA (PEM; default: the system roots)"),
		remoteCert: fs.String("leaf-remote-cert", "", "leaf node: the certificate presented to a central server that verifies leaf nodes (PEM)"),
		remoteKey:  fs.String("leaf-remote-key", "", "leaf node: the key of --leaf-remote-cert (PEM)"),
	}
}

// apply sets the leaf node options of o for cfg; credDir holds the leaf
// seeds.
func (f natsLeafFlags) apply(o *bus.EmbeddedOptions, cfg config.Config, credDir string) error {
	o.JetStreamDomain = *f.domain
	leaves := cfg.NATS.LeafClusters
	switch {
	case *f.listen != "" && *f.remote != "":
		return fmt.Errorf("--leaf-listen and --leaf-remote: a server is either the central one or a leaf node")
	case *f.listen == "" && (*f.tlsCert != "" || *f.tlsKey != "" || *f.tlsCA != "" || *f.advertise != ""):
		return fmt.Errorf("--leaf-tls-cert, --leaf-tls-key, --leaf-tls-ca and --leaf-advertise need --leaf-listen")
	case *f.remote == "" && (*f.remoteCA != "" || *f.remoteCert != "" || *f.remoteKey != ""):
		return fmt.Errorf("--leaf-remote-ca, --leaf-remote-cert and --leaf-remote-key need --leaf-remote")
	case *f.listen != "":
		if len(leaves) == 0 {
			return fmt.Errorf("--leaf-listen: config key \"nats.leaf_clusters\" names no leaf cluster")
		}
		host, port, err := splitListen(*f.listen)
		if err != nil || port == bus.RandomPort {
			return fmt.Errorf("--leaf-listen %q: want host:port with a fixed port (the leaf nodes' --leaf-remote names it)", *f.listen)
		}
		seeds := map[string]string{}
		for _, c := range leaves {
			_, pub, err := bus.LoadOrCreateLeafSeed(credDir, c)
			if err != nil {
				return fmt.Errorf("the leaf seed of cluster %s: %w", c, err)
			}
			seeds[c] = pub
		}
		o.LeafNodes = bus.LeafNodeOptions{Host: host, Port: port, Advertise: *f.advertise, Clusters: leaves, Seeds: seeds,
			TLS: bus.TLSFiles{CAFile: *f.tlsCA, CertFile: *f.tlsCert, KeyFile: *f.tlsKey}, VerifyClients: *f.tlsCA != ""}
	case *f.remote != "":
		cluster := cfg.Kubernetes.ClusterName
		seed, _, err := bus.LoadOrCreateLeafSeed(credDir, cluster)
		if err != nil {
			return fmt.Errorf("the leaf seed of cluster %s: %w", cluster, err)
		}
		if o.JetStreamDomain == "" {
			o.JetStreamDomain = bus.LeafDomain(cluster)
		}
		o.LeafRemote = bus.LeafRemoteOptions{URL: *f.remote, SeedFile: seed,
			TLS: bus.TLSFiles{CAFile: *f.remoteCA, CertFile: *f.remoteCert, KeyFile: *f.remoteKey}}
	case len(leaves) > 0:
		return fmt.Errorf("config key \"nats.leaf_clusters\": a central server accepts its leaf nodes on --leaf-listen")
	}
	return nil
}

// resumeLeafSources watches the leaf connections of the central server
// emb and, after each new one, restarts the sources of the leaf streams
// that have not delivered yet (bus.ResumeLeafSources), until ctx ends.
func resumeLeafSources(ctx context.Context, emb *bus.Embedded, connect svcmain.Connector, bc bus.Config, logger *slog.Logger) {
	nc, err := connect(ctx, "kaar-"+string(bus.RoleProvisioner), logger)
	if err != nil {
		logger.Error("leaf sources: cannot connect as the provisioner", slog.Any("error", err))
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		logger.Error("leaf sources", slog.Any("error", err))
		return
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	seen := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n := emb.Server().NumLeafNodes()
		if n <= seen {
			seen = n
			continue
		}
		seen = n
		// Let the new leaf's subscriptions reach this server first.
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		resumed, err := bus.ResumeLeafSources(rctx, js, bc)
		cancel()
		switch {
		case err != nil:
			logger.Warn("leaf sources: resume after a leaf connected", slog.Any("error", err))
		case resumed > 0:
			logger.Info("leaf sources resumed after a leaf connected", slog.Int("sources", resumed))
		}
	}
}
