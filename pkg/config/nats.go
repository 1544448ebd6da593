package config

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// NATS is the bus: an external server by URL, or the embedded one.
type NATS struct {
	// URL of an external NATS server; empty runs an embedded server.
	URL string `yaml:"url"`
	// StoreDir is the embedded server's JetStream file storage.
	StoreDir string `yaml:"store_dir"`
	// Listen is the embedded server's client address ("" = in-process
	// only, "127.0.0.1:4222" to let split services connect).
	Listen string `yaml:"listen"`
	// CredsFile, NkeyFile, User, Password authenticate to an external
	// server, or to a running kaar serve's embedded one. NkeyFile is an
	// nkey seed file such as the ones kaar serve writes per role in its
	// state directory (credentials/<role>.nk).
	CredsFile string `yaml:"creds_file"`
	NkeyFile  string `yaml:"nkey_file"`
	User      string `yaml:"user"`
	Password  string `yaml:"password"`
	// AuditRetention is how long the audit stream keeps records.
	AuditRetention Duration `yaml:"audit_retention"`
	// ExecutorAckWait is how long an executor may go without signalling
	// progress on an execution before another executor resumes it (the
	// take-over time after an executor crash).
	ExecutorAckWait Duration `yaml:"executor_ack_wait"`
	// LeaseDuration is how long the active replica of the watcher or the
	// notifier may go without renewing its lease before a standby
	// replica takes over (the take-over time after a crash; a clean stop
	// hands over at once). It renews every LeaseDuration*2/15 and stops
	// acting after LeaseDuration*2/3 without a renewal.
	LeaseDuration Duration `yaml:"lease_duration"`
	// TLS secures the connections to NATS, and the embedded server's
	// client port (kaar serve with nats.listen, kaar nats).
	TLS NATSTLS `yaml:"tls"`
	// Replicas of every stream and bucket: 1, or 3 on a NATS cluster of
	// at least three JetStream servers. Every process that provisions the
	// bus must use the same value.
	Replicas int `yaml:"replicas"`
	// JetStreamDomain is the JetStream domain of a central bus that this
	// process reaches through a local leaf node (one watcher/executor
	// pair per cluster, reporting centrally), or, for the central gateway
	// of a leaf cluster (nats.leaf_clusters), that cluster's name: the
	// leaf node's own JetStream; empty uses the JetStream of the server
	// nats.url names.
	JetStreamDomain string `yaml:"jetstream_domain"`
	// LeafClusters are, on a central bus (the hub), the clusters whose
	// watcher, planner and executor run on a leaf node with its own
	// JetStream (domain = the cluster's name): the hub's streams source
	// their incidents, plan events and audit records, and capture only
	// the subjects of the hub's own clusters. Every process that
	// provisions the hub must list the same.
	LeafClusters []string `yaml:"leaf_clusters"`
}

// NATSTLS is TLS for NATS. As a client, kaar verifies the server with
// CAFile (the system roots when empty) and presents CertFile/KeyFile to a
// server that verifies clients. The embedded server listens with TLS
// using CertFile/KeyFile when they are set.
type NATSTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// VerifyClients makes the embedded server refuse clients without a
	// certificate signed by a CA of CAFile (mutual TLS). In-process
	// clients are exempt.
	VerifyClients bool `yaml:"verify_clients"`
}

// Bounds of the nats section.
const (
	minAuditRetention  = time.Hour
	minExecutorAckWait = time.Second
	maxExecutorAckWait = time.Hour
	minLeaseDuration   = 3 * time.Second
	maxLeaseDuration   = 10 * time.Minute
)

func (n NATS) validate() error {
	var p problems
	if d := n.AuditRetention.Duration; d < minAuditRetention {
		p.addf("nats.audit_retention", "%s must be at least %s", d, minAuditRetention)
	}
	if d := n.ExecutorAckWait.Duration; d < minExecutorAckWait || d > maxExecutorAckWait {
		p.addf("nats.executor_ack_wait", "%s must be between %s and %s", d, minExecutorAckWait, maxExecutorAckWait)
	}
	if d := n.LeaseDuration.Duration; d < minLeaseDuration || d > maxLeaseDuration {
		p.addf("nats.lease_duration", "%s must be between %s and %s", d, minLeaseDuration, maxLeaseDuration)
	}
	if d := n.JetStreamDomain; d != "" && !validToken(d) {
		p.addf("nats.jetstream_domain", "%q must be lower-case letters, digits, '-' and '_'", d)
	}
	for i, c := range n.LeafClusters {
		if !validToken(c) {
			p.addf(fmt.Sprintf("nats.leaf_clusters[%d]", i), "%q must be lower-case letters, digits, '-' and '_'", c)
		}
	}
	if r := n.Replicas; r != 1 && r != 3 {
		p.add(fieldErr("nats.replicas", fmt.Sprintf("%d is not allowed", r), "1", "3"))
	}
	if f := n.TLS.CAFile; f != "" {
		p.add(checkCAFile("nats.tls.ca_file", f))
	}
	p.add(checkKeyPair("nats.tls.cert_file", n.TLS.CertFile, "nats.tls.key_file", n.TLS.KeyFile))
	if n.TLS.VerifyClients && (n.TLS.CAFile == "" || n.TLS.CertFile == "") {
		p.add(fieldErr("nats.tls.verify_clients", "needs nats.tls.ca_file (the CA of client certificates) and nats.tls.cert_file, nats.tls.key_file (the server's certificate)"))
	}
	p = append(p, n.validateAccess()...)
	return p.join()
}

// validateAccess checks who may reach the bus: the embedded server's
// client port (nats.listen) and the client credentials.
func (n NATS) validateAccess() []error {
	var errs []error
	if n.Listen != "" {
		host, _, err := net.SplitHostPort(n.Listen)
		switch {
		case err != nil:
			errs = append(errs, fieldErr("nats.listen", fmt.Sprintf("%q is not host:port (%v)", n.Listen, err)))
		case !loopback(host) && (n.TLS.CertFile == "" || n.TLS.KeyFile == ""):
			errs = append(errs, fieldErr("nats.listen", fmt.Sprintf("%q is not a loopback address and the bus would cross the network in clear text: "+
				"set nats.tls.cert_file and nats.tls.key_file (the embedded server then requires TLS), or listen on 127.0.0.1", n.Listen)))
		}
	}
	set := 0
	for _, v := range []string{n.CredsFile, n.NkeyFile, n.User} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		errs = append(errs, fieldErr("nats.nkey_file", "set only one of nats.nkey_file, nats.creds_file and nats.user (with nats.password)"))
	}
	if n.User != "" && n.Password == "" {
		errs = append(errs, fieldErr("nats.password", "nats.user is set: set its password too (or KAAR_NATS_PASSWORD)"))
	}
	if f := n.NkeyFile; f != "" {
		if err := checkSeedFile(f); err != nil {
			errs = append(errs, fieldErr("nats.nkey_file", err.Error()))
		}
	}
	return errs
}

// loopback reports a host only this machine reaches.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkSeedFile: a private file holding an nkey user seed (SU...).
func checkSeedFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if !strings.HasPrefix(string(bytes.TrimSpace(b)), "SU") {
		return fmt.Errorf("%s does not hold an nkey user seed (a line starting with SU, as kaar serve writes in its state directory)", path)
	}
	return nil
}

// SetCredential makes path the bus credential, replacing any configured
// one: nats.nkey_file when it holds an nkey user seed (as kaar serve
// writes per role), nats.creds_file when it is a NATS .creds file (a user
// JWT and its seed). It is what --creds FILE does.
func (n *NATS) SetCredential(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--creds: %w", err)
	}
	n.CredsFile, n.NkeyFile, n.User, n.Password = "", "", "", ""
	switch s := string(b); {
	case strings.Contains(s, "BEGIN NATS USER JWT"):
		n.CredsFile = path
	case strings.HasPrefix(strings.TrimSpace(s), "SU"):
		n.NkeyFile = path
	default:
		return fmt.Errorf("--creds: %s is neither an nkey user seed (SU...) nor a NATS .creds file", path)
	}
	return nil
}
