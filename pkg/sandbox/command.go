package sandbox

import (
	"context"
	"fmt"
	"io"
	"time"
)

// RunCommand runs one command of kaar-sandbox (and `kaar sandbox`): up,
// down, status, kubeconfig or build. Results go to out, progress to
// opts.Progress.
func RunCommand(ctx context.Context, cmd string, opts Options, demo bool, out io.Writer) error {
	if opts.StateDir == "" {
		d, err := DefaultStateDir()
		if err != nil {
			return err
		}
		opts.StateDir = d
	}
	switch cmd {
	case "up":
		return UpCommand(ctx, opts, demo, out)
	case "down":
		return Down(ctx, opts.StateDir)
	case "status":
		s, err := StatusOf(ctx, opts.StateDir)
		fmt.Fprint(out, s)
		return err
	case "kubeconfig":
		s, err := StatusOf(ctx, opts.StateDir)
		if err != nil {
			return err
		}
		if s.Kubeconfig == "" {
			return fmt.Errorf("%w in %s: run kaar-sandbox up", ErrNotRunning, s.StateDir)
		}
		fmt.Fprintln(out, s.Kubeconfig)
		return nil
	case "build":
		b, err := EnsureBinaries(ctx, opts)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, b.Dir)
		return nil
	}
	return fmt.Errorf("unknown command %q: want up, down, status, kubeconfig or build (see --help)", cmd)
}

// UpCommand is `kaar-sandbox up` (and `kaar sandbox up`): it starts the
// sandbox, installs the demo workloads if asked, and prints how to use it
// on out.
func UpCommand(ctx context.Context, opts Options, demo bool, out io.Writer) error {
	c, err := Up(ctx, opts)
	if err != nil {
		return err
	}
	if demo {
		t0 := time.Now()
		if err := ApplyDemo(ctx, c.Clientset(), DemoOptions{Extras: true}, opts.Progress); err != nil {
			return err
		}
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "demo ready in %s\n", time.Since(t0).Round(100*time.Millisecond))
		}
	}
	fmt.Fprintf(out, `
The sandbox is running (state: %s).

  export KUBECONFIG=%s
  alias kubectl=%s
  kubectl get nodes
`, c.StateDir, c.KubeconfigPath, c.Kubectl)
	if demo {
		fmt.Fprintf(out, "  kubectl get pods -n %s\n", DefaultDemoNamespace)
	}
	fmt.Fprintf(out, `
Service users (no permissions until you grant them): %v,
one context each in that kubeconfig (kubectl --context kaar-watcher ...).
Stop it with: kaar-sandbox down
`, ServiceUsers)
	return nil
}
