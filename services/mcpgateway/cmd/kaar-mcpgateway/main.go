// Command kaar-mcpgateway runs kaar's MCP gateway alone against a NATS
// server: MCP over streamable HTTP (or stdio) and the original REST API.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/mcpgateway"
)

func main() {
	var stdio bool
	svcmain.Main(svcmain.Command{
		Name:    "kaar-mcpgateway",
		Summary: "serves kaar's MCP tools (streamable HTTP, or stdio) and the original REST API.",
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&stdio, "stdio", false, "serve MCP on stdin/stdout instead of HTTP (logs go to stderr)")
		},
		Build: func(_ context.Context, e svcmain.Env) (svcmain.Service, error) {
			signer, err := e.Signer(svcmain.RoleGateway)
			if err != nil {
				return svcmain.Service{}, err
			}
			gw, err := mcpgateway.New(mcpgateway.ConfigFrom(e.Config), mcpgateway.Deps{NATS: e.NATS, Logger: e.Logger, Registerer: e.Registry, Gatherer: e.Registry, Signer: signer})
			if err != nil {
				return svcmain.Service{}, err
			}
			run := gw.Run
			if stdio {
				run = func(ctx context.Context) error { return gw.ServeStdio(ctx, os.Stdin, os.Stdout) }
			}
			return svcmain.Service{Run: run, Ready: svcmain.ReadyChan(gw.Ready())}, nil
		},
	})
}
