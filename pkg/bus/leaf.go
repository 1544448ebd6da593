package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/kaar-dev/kaar/pkg/events"
)

// A leaf cluster is a Kubernetes cluster whose watcher, planner and
// executor run on a NATS leaf node with its own JetStream (its domain is
// the cluster's name, LeafDomain): detection, planning and execution go
// on while the link to the central bus is down. The central bus (the hub)
// holds the gateway, the notifier and the people's decisions:
//
//   - the hub's ISSUES, PLAN_EVENTS and AUDIT source the leaf's (through
//     $JS.<cluster>.API), so every incident, plan event and audit record
//     arrives centrally exactly once, after a cut-off too;
//   - the gateway of the leaf cluster runs centrally with
//     nats.jetstream_domain set to the leaf's domain: it reads the plans
//     and executions on the leaf and its decisions are stored by the
//     leaf's APPROVALS (the hub's streams do not capture a leaf cluster's
//     subjects), so a decision is taken only when the leaf acknowledged it;
//   - the leaf authenticates to the hub with its own nkey (LeafSeedFileName),
//     whose permissions (LeafPermissions) confine it to its cluster.

// LeafDomain is the JetStream domain of the leaf node of cluster.
func LeafDomain(cluster string) string { return cluster }

// LeafRelayPrefix is where a leaf node delivers what the hub sources from
// it: kaar.<cluster>.relay (the deliver subjects are <prefix>.S.<id>).
func LeafRelayPrefix(cluster string) string {
	return events.SubjectRoot + "." + cluster + ".relay"
}

// LeafSeedFileName is the file of the leaf node's seed of cluster in a
// credentials directory: the hub reads its public key, the leaf signs
// with it.
func LeafSeedFileName(cluster string) string { return "leaf-" + cluster + ".nk" }

// LoadOrCreateLeafSeed returns the path and public key of the leaf seed
// of cluster in dir, creating it (0600) when missing.
func LoadOrCreateLeafSeed(dir, cluster string) (path, public string, err error) {
	if err := events.ValidateClusterName(cluster); err != nil {
		return "", "", fmt.Errorf("leaf cluster: %w", err)
	}
	path = filepath.Join(dir, LeafSeedFileName(cluster))
	kp, err := readSeed(path)
	if errors.Is(err, fs.ErrNotExist) {
		kp, err = createSeed(path)
	}
	if err != nil {
		return "", "", err
	}
	public, err = kp.PublicKey()
	return path, public, err
}

// centralInboxRoles are the roles that run centrally and ask a leaf's
// services and JetStream: the leaf may answer them.
var centralInboxRoles = []Role{RoleMCPGateway, RoleMCPStdio, RoleCLI, RoleNotifier}

// LeafPermissions are the hub's permissions for the leaf node of
// cluster, as nats-server applies them to a leaf connection: Publish is
// what the leaf may send into the hub, Subscribe what the hub sends to
// the leaf. The leaf sends only answers (to the central roles' inboxes
// and to the hub's JetStream requests) and the copies the hub sources
// from it; it receives its cluster's decisions and service requests, the
// JetStream API of its own domain and flow control. A leaf can neither
// publish into the hub's streams nor see another cluster's subjects.
func LeafPermissions(cluster string) Permissions {
	var g grants
	g.publish(LeafRelayPrefix(cluster)+".>", "$JSC.R.>")
	for _, r := range centralInboxRoles {
		g.publish(r.InboxPrefix() + ".>")
	}
	approvals, _ := events.ApprovalFilter(cluster)
	g.subscribe(approvals, events.SubjectRoot+"."+cluster+".svc.>", "$SRV.>",
		"$JS."+LeafDomain(cluster)+".API.>", "$JS.FC.>")
	return Permissions{Publish: dedup(g.pub), Subscribe: dedup(g.sub)}
}

// LeafNodeOptions make an embedded server a hub: it accepts leaf nodes
// (always over TLS) of the clusters named in Clusters.
type LeafNodeOptions struct {
	// Host and Port are where leaf nodes connect (Host defaults to
	// 127.0.0.1); no listener when Port is 0.
	Host string
	Port int
	// Advertise is the host:port leaf nodes are told to reconnect to
	// (the address they reach this server at, behind a load balancer or
	// a NAT); default: the listener's address.
	Advertise string
	// TLS is the leaf port's certificate (required); TLS.CAFile with
	// VerifyClients also requires leaf nodes to present a certificate it
	// signed.
	TLS           TLSFiles
	VerifyClients bool
	// Clusters are the leaf clusters accepted, each authenticated by the
	// public key of its seed (LoadOrCreateLeafSeed) in Seeds.
	Clusters []string
	// Seeds maps a leaf cluster to its public nkey.
	Seeds map[string]string
}

// LeafRemoteOptions make an embedded server a leaf node of a hub.
type LeafRemoteOptions struct {
	// URL is the hub's leaf node address (tls://host:7422).
	URL string
	// TLS verifies the hub (TLS.CAFile; the system roots when empty) and
	// presents TLS.CertFile/KeyFile to a hub that verifies leaf nodes.
	TLS TLSFiles
	// SeedFile is the leaf's nkey seed (LeafSeedFileName).
	SeedFile string
}

// apply sets the hub side of opts: the leaf listener and the leaf users.
func (l LeafNodeOptions) apply(opts *server.Options) error {
	if l.Port == 0 {
		if len(l.Clusters) > 0 {
			return errors.New("leaf nodes: clusters named without a leaf port")
		}
		return nil
	}
	if l.TLS.CertFile == "" || l.TLS.KeyFile == "" {
		return errors.New("leaf nodes: the leaf port requires TLS: set a cert file and a key file")
	}
	if l.VerifyClients && l.TLS.CAFile == "" {
		return errors.New("leaf nodes: verifying leaf certificates needs a CA file")
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: l.TLS.CertFile, KeyFile: l.TLS.KeyFile, CaFile: l.TLS.CAFile, Verify: l.VerifyClients})
	if err != nil {
		return fmt.Errorf("leaf nodes: tls: %w", err)
	}
	host := l.Host
	if host == "" {
		host = "127.0.0.1"
	}
	opts.LeafNode.Host, opts.LeafNode.Port, opts.LeafNode.Advertise = host, l.Port, l.Advertise
	opts.LeafNode.TLSConfig, opts.LeafNode.TLSTimeout = tc, 5
	for _, c := range l.Clusters {
		if err := events.ValidateClusterName(c); err != nil {
			return fmt.Errorf("leaf nodes: %w", err)
		}
		pub := l.Seeds[c]
		if !nkeys.IsValidPublicUserKey(pub) {
			return fmt.Errorf("leaf nodes: no public key for the leaf of cluster %q", c)
		}
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: pub, Permissions: LeafPermissions(c).server(),
			// A leaf's key connects leaf nodes, not clients
			// (jwt.ConnectionTypeLeafnode).
			AllowedConnectionTypes: map[string]struct{}{"LEAFNODE": {}}})
	}
	return nil
}

// apply sets the leaf side of opts: the remote to the hub.
func (r LeafRemoteOptions) apply(opts *server.Options) error {
	if r.URL == "" {
		return nil
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return fmt.Errorf("leaf remote %q: %w", r.URL, err)
	}
	if u.Scheme != "tls" {
		return fmt.Errorf("leaf remote %q: the link to the hub must use TLS (tls://host:port)", r.URL)
	}
	if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
		return errors.New("leaf remote: a client certificate needs both a cert file and a key file")
	}
	kp, err := readSeed(r.SeedFile)
	if err != nil {
		return fmt.Errorf("leaf remote: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return fmt.Errorf("leaf remote: %w", err)
	}
	tc, err := r.TLS.clientConfig(u.Hostname())
	if err != nil {
		return fmt.Errorf("leaf remote: tls: %w", err)
	}
	opts.LeafNode.Remotes = append(opts.LeafNode.Remotes, &server.RemoteLeafOpts{
		URLs: []*url.URL{u}, TLS: true, TLSConfig: tc, TLSTimeout: 5, Nkey: string(seed),
	})
	return nil
}

// clientConfig is the TLS configuration of a client of host: the server
// is verified with f.CAFile (the system roots when empty) and must be
// named host in its certificate; f.CertFile/KeyFile, when set, are
// presented to a server that verifies clients.
func (f TLSFiles) clientConfig(host string) (*tls.Config, error) {
	tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", f.CAFile)
		}
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// inLeafDomains extends the permissions of the central roles among users
// (the hub's role users of c) to the JetStream API of every leaf
// cluster's domain, as well as the hub's: the gateway of a leaf cluster
// runs centrally with nats.jetstream_domain set to the leaf's.
func (c *Credentials) inLeafDomains(users []*server.NkeyUser, clusters []string) {
	central := map[string]Role{}
	for _, r := range centralInboxRoles {
		central[c.PublicKey(r)] = r
	}
	for _, u := range users {
		r, ok := central[u.Nkey]
		if !ok || len(clusters) == 0 {
			continue
		}
		p := r.Permissions()
		pub := slices.Clone(p.Publish)
		for _, cl := range clusters {
			pub = append(pub, p.InDomain(LeafDomain(cl)).Publish...)
		}
		p.Publish = dedup(pub)
		u.Permissions = p.server()
	}
}

// withLeaves is the hub's streams for its clusters and leaves: each of
// ISSUES, PLAN_EVENTS, APPROVALS and AUDIT captures the subjects of
// clusters only (a decision for a leaf cluster crosses to the leaf and is
// stored there, never centrally as well), and ISSUES, PLAN_EVENTS and
// AUDIT source each leaf's stream through its domain's API, delivered
// under the leaf's relay prefix, the one subject the leaf may publish
// into the hub for them.
func withLeaves(streams []jetstream.StreamConfig, clusters, leaves []string) []jetstream.StreamConfig {
	kinds := map[string]string{events.StreamIssues: "issue", events.StreamPlanEvents: "plan", events.StreamApprovals: "approval", events.StreamAudit: "audit"}
	out := make([]jetstream.StreamConfig, len(streams))
	for i, st := range streams {
		out[i] = st
		kind, ok := kinds[st.Name]
		if !ok {
			continue
		}
		out[i].Subjects = nil
		for _, c := range clusters {
			out[i].Subjects = append(out[i].Subjects, events.SubjectRoot+"."+c+"."+kind+".>")
		}
		if st.Name == events.StreamApprovals {
			continue
		}
		out[i].Sources = nil
		for _, l := range leaves {
			out[i].Sources = append(out[i].Sources, &jetstream.StreamSource{
				Name:          st.Name,
				FilterSubject: events.SubjectRoot + "." + l + "." + kind + ".>",
				External:      &jetstream.ExternalStream{APIPrefix: "$JS." + LeafDomain(l) + ".API", DeliverPrefix: LeafRelayPrefix(l)},
			})
		}
	}
	return out
}

// ResumeLeafSources restarts the hub's sources of leaf streams that have
// not delivered since the hub started (SourceInfo.Active < 0), and says
// how many it restarted. The server sets a source up when a stream is
// created or recovered; a hub that starts before its leaves connect asks
// a leaf that is not there yet and waits half a minute for the answer
// before it asks again. Call it when a leaf connects: the source resumes
// where the stream's copies end (nats-server finds the last sourced
// sequence in the stream), so nothing is copied twice.
func ResumeLeafSources(ctx context.Context, js jetstream.JetStream, cfg Config) (int, error) {
	if len(cfg.Leaves) == 0 {
		return 0, nil
	}
	streams, err := Streams(cfg)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, want := range streams {
		if !slices.ContainsFunc(want.Sources, func(s *jetstream.StreamSource) bool { return s.External != nil }) {
			continue
		}
		st, err := js.Stream(ctx, want.Name)
		if err != nil {
			return n, fmt.Errorf("resume the leaf sources of %s: %w", want.Name, err)
		}
		info := st.CachedInfo()
		idle := map[string]bool{}
		for _, si := range info.Sources {
			if si.External != nil && si.Active < 0 {
				idle[si.FilterSubject] = true
			}
		}
		if len(idle) == 0 {
			continue
		}
		without := info.Config
		without.Sources = slices.DeleteFunc(slices.Clone(info.Config.Sources), func(s *jetstream.StreamSource) bool {
			return s.External != nil && idle[s.FilterSubject]
		})
		if _, err := js.UpdateStream(ctx, without); err != nil {
			return n, fmt.Errorf("resume the leaf sources of %s: %w", want.Name, err)
		}
		if _, err := js.UpdateStream(ctx, info.Config); err != nil {
			return n, fmt.Errorf("resume the leaf sources of %s (the stream lacks them until the next provisioning): %w", want.Name, err)
		}
		n += len(idle)
	}
	return n, nil
}

// LeafPermissionsConf renders the central nats-server's user for the
// leaf node of cluster: one entry of the users list of its authorization
// block (kaar-permissions.conf), its password read from the environment
// (LeafPasswordEnv), with LeafPermissions.
func LeafPermissionsConf(cluster string) (string, error) {
	if err := events.ValidateClusterName(cluster); err != nil {
		return "", err
	}
	p := LeafPermissions(cluster)
	var b strings.Builder
	fmt.Fprintf(&b, `    # The leaf node of cluster %q, with its own JetStream (domain %q).
    # GENERATED by "kaar bus permissions --leaf-cluster %s" from pkg/bus/leaf.go:
    # add it to the users list of the central server's authorization block
    # (kaar-permissions.conf; a server has one). publish: what the leaf may
    # send to the central bus; subscribe: what the central bus sends to it.
    # The password is read from the environment; the leaf's remote URL
    # carries it (tls://leaf-%s:<password>@host:7422).
    {
      user: leaf-%s
      password: $%s
      permissions: {
`, cluster, LeafDomain(cluster), cluster, cluster, cluster, LeafPasswordEnv(cluster))
	fmt.Fprintf(&b, "        publish: { allow: %s }\n", confList(p.Publish, "        "))
	fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", confList(p.Subscribe, "        "))
	b.WriteString("      }\n    }\n")
	return b.String(), nil
}

// LeafPasswordEnv is the nats-server environment variable with the
// password of the leaf node of cluster (KAAR_LEAF_PROD_EU_PASSWORD).
func LeafPasswordEnv(cluster string) string {
	return "KAAR_LEAF_" + strings.ToUpper(strings.NewReplacer("-", "_").Replace(cluster)) + "_PASSWORD"
}
