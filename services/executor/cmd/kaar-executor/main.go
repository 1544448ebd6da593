// Command kaar-executor runs kaar's executor alone against a NATS server:
// it executes approved remediation plans and verifies the workloads.
package main

import (
	"context"
	"os"

	"github.com/kaar-dev/kaar/pkg/svcmain"
	"github.com/kaar-dev/kaar/services/executor"
)

func main() {
	svcmain.Main(svcmain.Command{
		Name:    "kaar-executor",
		Summary: "executes approved kaar plans (exactly once, never after their window) and verifies the workloads.",
		Kube:    true,
		Build: func(_ context.Context, e svcmain.Env) (svcmain.Service, error) {
			cfg := executor.ConfigFrom(e.Config)
			cfg.CrashAt = os.Getenv(executor.EnvCrashAt)
			trust, err := e.Trust()
			if err != nil {
				return svcmain.Service{}, err
			}
			deps := executor.Deps{NATS: e.NATS, Kube: e.Kube, Logger: e.Logger, Registerer: e.Registry, Trust: trust}
			if cfg.AutoApprove {
				if deps.Signer, err = e.Signer(svcmain.RoleExecutor); err != nil {
					return svcmain.Service{}, err
				}
			}
			s, err := executor.New(cfg, deps)
			if err != nil {
				return svcmain.Service{}, err
			}
			return svcmain.Service{Run: s.Run, Ready: svcmain.ReadyChan(s.Ready())}, nil
		},
	})
}
