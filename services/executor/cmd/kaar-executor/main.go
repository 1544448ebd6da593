// Command kaar-executor runs kaar's executor alone against a NATS server:
// it executes approved remediation plans and verifies the workloads.
package main

import (
	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/executor"
)

// main is "kaar executor": the same flags, defaults and composition (svcmain.Run).
func main() { svcmain.Main(executor.Spec()) }
