// Command kaar is Kubernetes analysis and remediation for AI assistants.
// "kaar serve" runs the whole pipeline in one process; "kaar --help" lists
// the other commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kaar-dev/kaar/cmd/kaar/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
