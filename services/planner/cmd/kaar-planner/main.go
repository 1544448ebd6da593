// Command kaar-planner runs kaar's planner alone against a NATS server: it
// turns incidents into evidence-backed, dry-run remediation plans.
package main

import (
	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/planner"
)

// main is "kaar planner": the same flags, defaults and composition (svcmain.Run).
func main() { svcmain.Main(planner.Spec()) }
