// Package cli is the kaar command: it parses flags and configuration and
// composes the services' constructors. It holds no pipeline logic.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/svcmain"
)

// Version is set at build time with -ldflags "-X ...cli.Version=v1.2.3".
var Version = "dev"

const usage = `kaar: Kubernetes analysis and remediation for AI assistants.

Usage:
  kaar serve [flags]         everything in one process: embedded NATS JetStream, watcher,
                             planner, executor and the MCP gateway (HTTP). With no kubeconfig
                             it starts the local sandbox cluster with demo failures.
  kaar mcp --stdio [flags]   the MCP gateway over stdio, for MCP clients that spawn their
                             servers; it joins the bus of a running "kaar serve" (--nats-url)
  kaar watcher|planner|executor|mcpgateway|notifier --nats-url URL [flags]
                             run one service alone against an external NATS server
  kaar plans list|show|approve|reject [PLAN] [--yes]
                             review and decide remediation plans on the bus (--nats-url)
  kaar incidents [--all]     the open incidents on the bus
  kaar audit PLAN            a plan's audit trail
  kaar bus provision [flags]  declare kaar's streams, buckets and consumers (and repair
                             drift), as the provisioner; kaar serve does it itself
  kaar bus permissions       print the NATS authorization (one user per role) for nats-server
  kaar keys init|show        the signing keys of plans and decisions (signing.key_dir): create
                             the missing ones, print the public keys the executor trusts
  kaar nats [--listen ADDR] [--store-dir DIR]
                             run a NATS JetStream server with kaar's streams declared
  kaar sandbox up|down|status|kubeconfig [--demo]
                             the local sandbox cluster (real control plane, kwok nodes)
  kaar version

Common flags (every command that runs a service):
  --config FILE        YAML configuration (the original config.yaml shape is accepted)
  --nats-url URL       external NATS server (default: embedded for serve)
  --creds FILE         NATS credential: an nkey seed (nats.nkey_file, as kaar serve writes per
                       role in ~/.local/state/kaar/credentials) or a .creds file (nats.creds_file).
                       Default: the command's role's seed from that directory.
  --kubeconfig FILE    kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)
  --context NAME       kubeconfig context
Every configuration key can also be set as KAAR_<SECTION>_<KEY>, e.g. KAAR_SERVER_PORT=9090.

Connect an MCP client to "kaar serve" at http://127.0.0.1:8000/mcp (streamable HTTP), or
spawn "kaar mcp --stdio --nats-url nats://127.0.0.1:4222".
`

// Main runs the kaar command with args (without the program name) and
// returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = runServe(ctx, rest, stdout, stderr)
	case "mcp":
		err = runMCPStdio(ctx, rest, stdin, stdout, stderr)
	case "watcher", "planner", "executor", "mcpgateway", "notifier":
		err = runOne(ctx, cmd, rest, stderr)
	case "plans":
		err = runPlans(ctx, rest, stdin, stdout, stderr)
	case "incidents":
		err = runIncidents(ctx, rest, stdout, stderr)
	case "audit":
		err = runAudit(ctx, rest, stdout, stderr)
	case "nats":
		err = runNATS(ctx, rest, stdout, stderr)
	case "bus":
		err = runBus(ctx, rest, stdout, stderr)
	case "keys":
		err = runKeys(ctx, rest, stdout, stderr)
	case "sandbox":
		err = runSandbox(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "kaar", Version)
	default:
		err = fmt.Errorf("unknown command %q: want serve, mcp, watcher, planner, executor, mcpgateway, notifier, plans, incidents, audit, bus, keys, nats, sandbox or version (see kaar --help)", cmd)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "kaar:", err)
		return 1
	}
	return 0
}

// commonFlags are the flags of every command that runs a service or
// talks to the bus: svcmain's, so that kaar <service> and the
// kaar-<service> binaries cannot drift apart.
type commonFlags struct{ svcmain.Flags }

func (c *commonFlags) register(fs *flag.FlagSet) { c.Register(fs, true) }

// load reads the configuration and applies the flags over it; flags win
// over the file and the environment.
func (c *commonFlags) load() (config.Config, error) { return c.Load() }

func newFlagSet(name, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("kaar "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: kaar %s [flags]\n\n%s\n\nFlags:\n", name, strings.TrimSpace(help))
		fs.PrintDefaults()
	}
	return fs
}
