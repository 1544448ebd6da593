package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/kubeclient"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/kaar-dev/kaar/pkg/svcmain"
)

const serveHelp = `Runs everything in one process: an embedded NATS JetStream server, the watcher,
the planner, the executor and the MCP gateway (streamable HTTP at server.host:port/mcp,
the original REST API at /mcp/v1/tools, /mcp/v1/invoke/{tool} and /health).

It uses --kubeconfig, $KUBECONFIG or ~/.kube/config. With none of them (and not in a
cluster) it starts the local sandbox cluster and installs the demo workloads, unless
--no-sandbox is given.

The embedded NATS server accepts no anonymous client: on first start kaar serve creates
one nkey seed per role in ${XDG_STATE_HOME:-~/.local/state}/kaar/credentials (0700, seeds
0600) and reuses them; each service runs as its own role, provisioning runs as the
provisioner. kaar mcp --stdio, kaar plans|incidents|audit and kaar <service> on this
machine find their role's seed there (elsewhere: --creds FILE). --nats-listen off
loopback needs nats.tls.cert_file and nats.tls.key_file.`

// runServe is "kaar serve".
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", serveHelp, stderr)
	var cf commonFlags
	cf.register(fs)
	natsListen := fs.String("nats-listen", "127.0.0.1:4222", `embedded NATS client address, so "kaar mcp --stdio" and split services can join ("" = in-process only; port 0 = any free port)`)
	noSandbox := fs.Bool("no-sandbox", false, "fail instead of starting the sandbox when no kubeconfig is found")
	sandboxDir := fs.String("sandbox-state-dir", "", "sandbox state directory (default: ~/.local/state/kaar/sandbox)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if *natsListen != "" && cfg.NATS.Listen == "" {
		cfg.NATS.Listen = *natsListen
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("--nats-listen: %w", err)
		}
	}
	logger, closeLog, err := svcmain.NewLogger(cfg.Server, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = closeLog() }() // the log file: nowhere left to report a failed close
	svcmain.ApplyMemoryLimit(cfg.Server, logger)

	// The first cluster's configuration is checked here, so that a bad
	// kubeconfig or context is reported before anything starts; with none
	// at all, the sandbox's kubeconfig becomes the first cluster's.
	_, err = kubeclient.RestConfig(cfg.Kubernetes)
	if errors.Is(err, kubeclient.ErrNoCluster) && !*noSandbox {
		fmt.Fprintln(stderr, "kaar: no kubeconfig found; starting the local sandbox cluster with the demo workloads")
		cfg.Kubernetes.Kubeconfig, err = startSandbox(ctx, *sandboxDir, stderr)
	}
	if err != nil {
		return err
	}

	natsURL, connect := cfg.NATS.URL, svcmain.ConnectURL(cfg)
	var emb *bus.Embedded
	if natsURL == "" {
		if cfg.NATS.Replicas > 1 {
			return fmt.Errorf("config key \"nats.replicas\": %d needs a NATS cluster (nats.url): the embedded server is a single node", cfg.NATS.Replicas)
		}
		if cfg.NATS.JetStreamDomain != "" {
			return fmt.Errorf("config key \"nats.jetstream_domain\": %q names a central bus reached through a leaf node (nats.url); the embedded server has its own JetStream", cfg.NATS.JetStreamDomain)
		}
		if len(cfg.NATS.LeafClusters) > 0 {
			return fmt.Errorf("config key \"nats.leaf_clusters\": the embedded server accepts no leaf nodes; run the central server with kaar nats --leaf-listen")
		}
		emb, err = startEmbeddedNATS(ctx, cfg, logger)
		if err != nil {
			return err
		}
		defer emb.Shutdown()
		natsURL, connect = emb.ClientURL(), connectEmbedded(emb, cfg)
	}
	// kaar serve is its own provisioner: in process and as the
	// provisioner role on its embedded server (with an external bus, as
	// the configured credential; use "kaar bus provision" where that
	// credential may not manage streams).
	if _, err := provision(ctx, connect, cfg, logger); err != nil {
		return err
	}
	// The first kaar serve of a machine creates the installation's signing
	// keys (signing.key_dir), so that every service, the executor's trust
	// included, finds them; with signing.key_file it creates none.
	if err := svcmain.EnsureKeys(cfg, logger); err != nil {
		return err
	}
	reg := svcmain.NewRegistry()
	// The singletons' lease holder: this process is the only kaar serve
	// of its embedded bus, so its identity is stable across restarts (a
	// crash does not leave the watcher waiting for its own lease).
	holder := svcmain.DefaultHolder()
	if emb != nil {
		host, _ := os.Hostname()
		holder = "kaar-serve@" + host
	}
	insts, closeAll, err := svcmain.Instances(ctx, servicesFor(cfg), cfg, connect, holder, logger, reg)
	if err != nil {
		return err
	}
	defer closeAll()
	printBanner(stdout, cfg, natsURL, emb != nil)
	return svcmain.RunAll(ctx, insts)
}

// startEmbeddedNATS starts the in-process JetStream server with file
// storage under nats.store_dir (default: the user's state directory); its
// client port (nats.listen) requires TLS when nats.tls.cert_file is set.
// Every client authenticates: one nkey per role, created on the first
// start in the state directory's credentials/ (0700; seeds 0600) and
// reused later, each limited to its role's subjects.
func startEmbeddedNATS(ctx context.Context, cfg config.Config, logger *slog.Logger) (*bus.Embedded, error) {
	credDir, err := credentialsDir()
	if err != nil {
		return nil, err
	}
	creds, err := bus.LoadOrCreateCredentials(credDir)
	if err != nil {
		return nil, fmt.Errorf("bus credentials: %w", err)
	}
	opts := bus.EmbeddedOptions{StoreDir: cfg.NATS.StoreDir, DontListen: cfg.NATS.Listen == "", Logger: logger,
		Credentials: creds}
	opts.TLS, opts.VerifyClients = embeddedTLS(cfg)
	if opts.StoreDir == "" {
		dir, err := stateDir("nats")
		if err != nil {
			return nil, err
		}
		opts.StoreDir = dir
	}
	if cfg.NATS.Listen != "" {
		host, port, err := splitListen(cfg.NATS.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats.listen: %w", err)
		}
		opts.Host, opts.Port = host, port
	}
	return bus.StartEmbedded(ctx, opts)
}

// startSandbox starts (or reuses) the detached sandbox, installs the demo
// workloads and returns its admin kubeconfig.
func startSandbox(ctx context.Context, dir string, progress io.Writer) (string, error) {
	if dir == "" {
		d, err := sandbox.DefaultStateDir()
		if err != nil {
			return "", err
		}
		dir = d
	}
	c, err := sandbox.Up(ctx, sandbox.Options{StateDir: dir, Detached: true, Progress: progress})
	if err != nil {
		return "", fmt.Errorf("start the sandbox: %w", err)
	}
	t0 := time.Now()
	if err := sandbox.ApplyDemo(ctx, c.Clientset(), sandbox.DemoOptions{Extras: true}, progress); err != nil {
		return "", fmt.Errorf("install the demo workloads: %w", err)
	}
	fmt.Fprintf(progress, "kaar: sandbox ready (demo in %s); kubectl: KUBECONFIG=%s %s get pods -n %s; stop it with: make sandbox-down\n",
		time.Since(t0).Round(100*time.Millisecond), c.KubeconfigPath, c.Kubectl, sandbox.DefaultDemoNamespace)
	return c.KubeconfigPath, nil
}

// stateDir is ${XDG_STATE_HOME:-~/.local/state}/kaar/<name>.
func stateDir(name string) (string, error) {
	dir, err := bus.StateDir(name)
	if err != nil {
		return "", err
	}
	return dir, os.MkdirAll(dir, 0o750)
}

func printBanner(w io.Writer, cfg config.Config, natsURL string, embedded bool) {
	scheme := "http"
	if cfg.Server.TLSCertFile != "" {
		scheme = "https"
	}
	base := fmt.Sprintf("%s://%s:%d", scheme, displayHost(cfg.Server.Host), cfg.Server.Port)
	bus := natsURL
	if embedded && cfg.NATS.Listen == "" {
		bus = "embedded, in-process only"
	}
	stdio := "kaar mcp --stdio --nats-url " + natsURL
	credDir, _ := credentialsDir()
	if c := cfg.Kubernetes.ClusterName; c != config.Default().Kubernetes.ClusterName {
		stdio += " --cluster-name " + c
	}
	fmt.Fprintf(w, `kaar is running (cluster %q).
  MCP (streamable HTTP):  %s%s
  MCP (stdio):            %s
  REST (original API):    curl %s/mcp/v1/tools ; curl -X POST %s/mcp/v1/invoke/analyze_cluster -H 'Content-Type: application/json' -d '{}'
  Health, metrics:        %s/health  %s/metrics
  NATS:                   %s (one credential per role in %s)
Press Ctrl-C to stop.
`, cfg.Kubernetes.ClusterName, base, cfg.MCP.Path, stdio, base, base, base, base, bus, credDir)
	if more := cfg.Kubernetes.AdditionalClusters; len(more) > 0 {
		names := make([]string, len(more))
		for i, c := range more {
			names[i] = c.ClusterName
		}
		fmt.Fprintf(w, "Also watching and remediating clusters %s (MCP: kaar mcp --stdio --nats-url %s --cluster-name NAME).\n", strings.Join(names, ", "), natsURL)
	}
}

func displayHost(h string) string {
	if h == "0.0.0.0" || h == "::" || h == "" {
		return "127.0.0.1"
	}
	return h
}
