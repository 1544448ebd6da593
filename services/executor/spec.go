package executor

import (
	"context"
	"os"

	"github.com/kaar-dev/kaar/pkg/kubeclient"
	"github.com/kaar-dev/kaar/pkg/svcmain"
)

// Spec is the executor to kaar's composition root (kaar serve, kaar
// executor, kaar-executor): one instance per cluster, trusting the keys
// of svcmain.Trust, signing its own approvals only with
// remediation.auto_approve.
func Spec() svcmain.Spec {
	return svcmain.Spec{
		Name:    "executor",
		Summary: "executes approved kaar plans (exactly once, never after their window) and verifies the workloads.",
		Kube:    true,
		Build: func(_ context.Context, e svcmain.Env) (svcmain.Service, error) {
			kube, err := kubeclient.Clientset(e.Config.Kubernetes)
			if err != nil {
				return nil, err
			}
			cfg := ConfigFrom(e.Config)
			cfg.CrashAt = os.Getenv(EnvCrashAt)
			trust, err := svcmain.Trust(e.Config)
			if err != nil {
				return nil, err
			}
			deps := Deps{NATS: e.NATS, Kube: kube, Logger: e.Logger, Registerer: e.Registerer, Trust: trust}
			if cfg.AutoApprove {
				if deps.Signer, err = svcmain.Signer(e.Config, svcmain.RoleExecutor, e.Logger); err != nil {
					return nil, err
				}
			}
			return New(cfg, deps)
		},
	}
}
