package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/notifier"
)

const busHelp = `kaar bus provision [--config FILE] [--nats-url URL] [--creds FILE]
    Declares kaar's streams, buckets and durable consumers for the configuration's
    clusters (and the notifier's, when notify is configured), as the provisioner
    (user kaar-provisioner; default credential: the provisioner's seed in the kaar
    serve state directory). What exists is compared with the declaration in full
    (sources, mirrors, subjects, retention, limits, deny delete/purge, consumer
    filters and ack settings...), repaired, and every change is printed.
    Services never declare the bus themselves: run this before starting them, and
    after changing the configuration. kaar serve runs it in process.
kaar bus permissions [--jetstream-domain DOMAIN]
    Prints the NATS authorization block, one user per role, each limited to the
    subjects it uses (the content of deploy/nats/kaar-permissions.conf). With
    --jetstream-domain, the JetStream API subjects are those of that domain: the
    users of a leaf node whose services set nats.jetstream_domain. With
    --leaf-cluster NAME, the central server's leafnodes authorization for the
    leaf node of that cluster when it runs its own JetStream (nats.leaf_clusters).`

// runBus is "kaar bus provision|permissions".
func runBus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, "Usage:\n"+busHelp)
		if len(args) == 0 {
			return fmt.Errorf("bus: want a subcommand: provision or permissions")
		}
		return nil
	}
	switch args[0] {
	case "provision":
		return runBusProvision(ctx, args[1:], stdout, stderr)
	case "permissions":
		fs := newFlagSet("bus permissions", busHelp, stderr)
		domain := fs.String("jetstream-domain", "", "render the JetStream API subjects in this domain ($JS.<domain>.API.*), for the users of a leaf node whose services set nats.jetstream_domain")
		leafCluster := fs.String("leaf-cluster", "", "render the central server's leafnodes authorization for the leaf node of this cluster (its own JetStream, nats.leaf_clusters)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *leafCluster != "" {
			conf, err := bus.LeafPermissionsConf(*leafCluster)
			if err != nil {
				return fmt.Errorf("--leaf-cluster: %w", err)
			}
			fmt.Fprint(stdout, conf)
			return nil
		}
		if *domain != "" && strings.ContainsAny(*domain, ".*> \t") {
			return fmt.Errorf("--jetstream-domain: %q is not a JetStream domain (one token, no dots or wildcards)", *domain)
		}
		fmt.Fprint(stdout, bus.PermissionsConfInDomain(*domain))
		return nil
	}
	return fmt.Errorf("bus: unknown subcommand %q: want provision or permissions", args[0])
}

func runBusProvision(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bus provision", busHelp, stderr)
	var cf commonFlags
	cf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if cfg.NATS.URL == "" {
		cfg.NATS.URL = svcmain.DefaultNATSURL
	}
	logger, closeLog, err := svcmain.NewLogger(cfg.Server, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = closeLog() }() // the log file: nowhere left to report a failed close
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	sum, err := provision(cctx, svcmain.ConnectURL(cfg), cfg, logger)
	if err != nil {
		return err
	}
	if !sum.Changed() {
		fmt.Fprintln(stdout, "kaar bus provision: everything is as declared")
		return nil
	}
	for _, c := range sum.Changes {
		fmt.Fprintln(stdout, c.String())
	}
	return nil
}

// provision declares kaar's streams, buckets and consumers for cfg
// (idempotent), connected as the provisioner.
func provision(ctx context.Context, connect svcmain.Connector, cfg config.Config, logger *slog.Logger) (bus.Summary, error) {
	bc, err := notifier.BusConfig(cfg)
	if err != nil {
		return bus.Summary{}, err
	}
	nc, err := connect(ctx, "kaar-"+string(bus.RoleProvisioner), logger)
	if err != nil {
		return bus.Summary{}, err
	}
	defer nc.Close()
	js, err := bus.NewJetStream(nc, cfg.NATS.JetStreamDomain)
	if err != nil {
		return bus.Summary{}, err
	}
	// A credential that is not the provisioner's is refused the management
	// API; the server only says so asynchronously and the request would
	// wait for its deadline: ask once, briefly, and say what is wrong.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	names := js.StreamNames(pctx)
	for range names.Name() {
	}
	cancel()
	if err := names.Err(); err != nil {
		return bus.Summary{}, fmt.Errorf("provision the bus: the JetStream management API does not answer this credential (%w): "+
			"provision as %s (its seed provisioner.nk, --creds FILE, or nats.user %s with its password)", err, bus.RoleProvisioner.User(), bus.RoleProvisioner.User())
	}
	sum, err := bus.Provision(ctx, js, bc)
	if err != nil {
		return sum, fmt.Errorf("provision the bus (as %s): %w", bus.RoleProvisioner.User(), err)
	}
	if sum.Changed() {
		logger.Info("bus provisioned", slog.String("changes", sum.String()))
	}
	return sum, nil
}

// credentialsDir is where kaar serve keeps one nkey seed per role
// (bus.DefaultCredentialsDir, 0700).
func credentialsDir() (string, error) { return bus.DefaultCredentialsDir() }
