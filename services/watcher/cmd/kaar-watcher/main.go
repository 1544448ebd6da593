// Command kaar-watcher runs kaar's watcher alone against a NATS server: it
// watches the cluster's pods and publishes incidents.
package main

import (
	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/watcher"
)

// main is "kaar watcher": the same flags, defaults and composition (svcmain.Run).
func main() { svcmain.Main(watcher.Spec()) }
