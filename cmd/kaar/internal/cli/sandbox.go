package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/kaar-dev/kaar/pkg/sandbox"
)

const sandboxHelp = `The local sandbox: a real Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) with kwok simulating the nodes. The first
"up" builds the binaries (~12 minutes on 2 cores, printed as it goes), then they
are cached. Subcommands: up [--demo], down, status, kubeconfig.`

// runSandbox is "kaar sandbox up|down|status|kubeconfig".
func runSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("sandbox: want a subcommand: up, down, status or kubeconfig (see kaar sandbox --help)")
	}
	sub := args[0]
	fs := newFlagSet("sandbox "+sub, sandboxHelp, stderr)
	demo := fs.Bool("demo", false, "install the demo workloads (broken Deployments and healthy neighbours)")
	opts := sandbox.Options{Detached: true, Progress: stderr, Logger: slog.New(slog.DiscardHandler)}
	fs.IntVar(&opts.Nodes, "nodes", sandbox.DefaultNodes, "number of kwok nodes")
	fs.StringVar(&opts.StateDir, "state-dir", "", "state directory (default: $KAAR_SANDBOX_STATE_DIR or ~/.local/state/kaar/sandbox)")
	if sub == "-h" || sub == "--help" {
		fs.Usage()
		return nil
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if opts.StateDir == "" {
		d, err := sandbox.DefaultStateDir()
		if err != nil {
			return err
		}
		opts.StateDir = d
	}
	switch sub {
	case "up":
		return sandbox.UpCommand(ctx, opts, *demo, stdout)
	case "down":
		return sandbox.Down(ctx, opts.StateDir)
	case "status":
		s, err := sandbox.StatusOf(ctx, opts.StateDir)
		fmt.Fprint(stdout, s)
		return err
	case "kubeconfig":
		s, err := sandbox.StatusOf(ctx, opts.StateDir)
		if err == nil && s.Kubeconfig == "" {
			err = fmt.Errorf("%w in %s: run kaar sandbox up", sandbox.ErrNotRunning, s.StateDir)
		}
		fmt.Fprintln(stdout, s.Kubeconfig)
		return err
	}
	return fmt.Errorf("sandbox: unknown subcommand %q: want up, down, status or kubeconfig", sub)
}
