// Command kaar-planner runs kaar's planner alone against a NATS server: it
// turns incidents into evidence-backed, dry-run remediation plans.
package main

import (
	"context"

	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/planner"
)

func main() {
	svcmain.Main(svcmain.Command{
		Name:    "kaar-planner",
		Summary: "turns kaar incidents into evidence-backed remediation plans, dry-run on the API server.",
		Kube:    true,
		Build: func(_ context.Context, e svcmain.Env) (svcmain.Service, error) {
			signer, err := e.Signer(svcmain.RolePlanner)
			if err != nil {
				return svcmain.Service{}, err
			}
			s, err := planner.New(planner.ConfigFrom(e.Config), planner.Deps{NATS: e.NATS, Kube: e.Kube, Logger: e.Logger, Registerer: e.Registry, Signer: signer})
			if err != nil {
				return svcmain.Service{}, err
			}
			return svcmain.Service{Run: s.Run, Ready: svcmain.ReadyChan(s.Ready())}, nil
		},
	})
}
