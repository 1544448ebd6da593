// Command kaar-notifier runs kaar's notifier alone against a NATS server:
// Slack messages, outbound webhooks, the Slack interactivity endpoint and
// the inbound approval webhook (the notify section of the config).
package main

import (
	"context"

	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/notifier"
)

func main() {
	svcmain.Main(svcmain.Command{
		Name:    "kaar-notifier",
		Summary: "posts kaar incidents and plans to Slack and webhooks, and takes approvals from Slack and a signed webhook.",
		Build: func(_ context.Context, e svcmain.Env) (svcmain.Service, error) {
			signer, err := e.Signer(svcmain.RoleNotifier)
			if err != nil {
				return svcmain.Service{}, err
			}
			s, err := notifier.New(notifier.ConfigFrom(e.Config), notifier.Deps{NATS: e.NATS, Logger: e.Logger, Registerer: e.Registry, Signer: signer})
			if err != nil {
				return svcmain.Service{}, err
			}
			return svcmain.Service{Run: s.Run, Ready: svcmain.ReadyChan(s.Ready())}, nil
		},
	})
}
