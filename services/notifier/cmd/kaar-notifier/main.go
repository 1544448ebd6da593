// Command kaar-notifier runs kaar's notifier alone against a NATS server:
// Slack messages, outbound webhooks, the Slack interactivity endpoint and
// the inbound approval webhook (the notify section of the config).
package main

import (
	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/notifier"
)

// main is "kaar notifier": the same flags, defaults and composition (svcmain.Run).
func main() { svcmain.Main(notifier.Spec()) }
