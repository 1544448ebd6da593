package notifier

import (
	"context"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/svcmain"
)

// Spec is the notifier to kaar's composition root (kaar serve with a
// notify section, kaar notifier, kaar-notifier): Slack and webhooks for
// the configuration's first cluster, signing the decisions it takes with
// the notifier key. It holds no Kubernetes credentials.
func Spec() svcmain.Spec {
	return svcmain.Spec{
		Name:      "notifier",
		Summary:   "posts kaar incidents and plans to Slack and webhooks, and takes approvals from Slack and a signed webhook.",
		BusConfig: BusConfig,
		// One active notifier: replicas stand by on the lease.
		Singleton: true,
		Build: func(_ context.Context, e svcmain.Env) (svcmain.Service, error) {
			signer, err := svcmain.Signer(e.Config, svcmain.RoleNotifier, e.Logger)
			if err != nil {
				return nil, err
			}
			return New(ConfigFrom(e.Config), Deps{NATS: e.NATS, Logger: e.Logger, Registerer: e.Registerer, Signer: signer})
		},
	}
}

// BusConfig is the bus declaration of cfg with the notifier's stream,
// bucket and consumers (when notify is configured): what the provisioner
// declares and the notifier binds to.
func BusConfig(cfg config.Config) (bus.Config, error) {
	bc := svcmain.BusConfig(cfg)
	if cfg.Notify.Enabled() {
		n, err := BusDeclarations(ConfigFrom(cfg))
		if err != nil {
			return bc, err
		}
		bc.Notify = n
	}
	return bc, nil
}
