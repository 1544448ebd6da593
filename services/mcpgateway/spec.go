package mcpgateway

import (
	"context"
	"flag"
	"os"

	"github.com/kaar-dev/kaar/pkg/svcmain"
)

// Spec is the gateway to kaar's composition root (kaar serve, kaar
// mcpgateway, kaar-mcpgateway): MCP over streamable HTTP and the original
// REST API for the configuration's first cluster, or MCP over stdio with
// --stdio. It holds no Kubernetes credentials.
func Spec() svcmain.Spec {
	var stdio bool
	return svcmain.Spec{
		Name:    "mcpgateway",
		Summary: "serves kaar's MCP tools (streamable HTTP, or stdio) and the original REST API.",
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&stdio, "stdio", false, "serve MCP on stdin/stdout instead of HTTP (logs go to stderr)")
		},
		Build: func(_ context.Context, e svcmain.Env) (svcmain.Service, error) {
			signer, err := svcmain.Signer(e.Config, svcmain.RoleGateway, e.Logger)
			if err != nil {
				return nil, err
			}
			gw, err := New(ConfigFrom(e.Config), Deps{NATS: e.NATS, Logger: e.Logger, Registerer: e.Registerer, Gatherer: e.Gatherer, Signer: signer})
			if err != nil || !stdio {
				return gw, err
			}
			return stdioService{gw}, nil
		},
	}
}

// stdioService serves the gateway on the process's stdin and stdout.
type stdioService struct{ *Service }

func (s stdioService) Run(ctx context.Context) error { return s.ServeStdio(ctx, os.Stdin, os.Stdout) }
