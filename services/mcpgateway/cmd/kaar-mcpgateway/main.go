// Command kaar-mcpgateway runs kaar's MCP gateway alone against a NATS
// server: MCP over streamable HTTP (or stdio) and the original REST API.
package main

import (
	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/mcpgateway"
)

// main is "kaar mcpgateway": the same flags, defaults and composition (svcmain.Run).
func main() { svcmain.Main(mcpgateway.Spec()) }
