// Command kaar-watcher runs kaar's watcher alone against a NATS server: it
// watches the cluster's pods and publishes incidents.
package main

import (
	"context"

	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/watcher"
)

func main() {
	svcmain.Main(svcmain.Command{
		Name:    "kaar-watcher",
		Summary: "watches the cluster's pods and publishes one incident per failing workload.",
		Kube:    true,
		Build: func(_ context.Context, e svcmain.Env) (svcmain.Service, error) {
			s, err := watcher.New(watcher.ConfigFrom(e.Config), watcher.Deps{NATS: e.NATS, Kube: e.Kube, Logger: e.Logger, Registerer: e.Registry})
			if err != nil {
				return svcmain.Service{}, err
			}
			return svcmain.Service{Run: s.Run, Ready: s.Ready}, nil
		},
	})
}
