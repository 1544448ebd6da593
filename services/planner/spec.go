package planner

import (
	"context"

	"github.com/kaar-dev/kaar/pkg/kubeclient"
	"github.com/kaar-dev/kaar/pkg/svcmain"
)

// Spec is the planner to kaar's composition root (kaar serve, kaar
// planner, kaar-planner): one instance per cluster, signing its plans
// with the planner key.
func Spec() svcmain.Spec {
	return svcmain.Spec{
		Name:    "planner",
		Summary: "turns kaar incidents into evidence-backed remediation plans, dry-run on the API server.",
		Kube:    true,
		Build: func(_ context.Context, e svcmain.Env) (svcmain.Service, error) {
			kube, err := kubeclient.Clientset(e.Config.Kubernetes)
			if err != nil {
				return nil, err
			}
			signer, err := svcmain.Signer(e.Config, svcmain.RolePlanner, e.Logger)
			if err != nil {
				return nil, err
			}
			return New(ConfigFrom(e.Config), Deps{NATS: e.NATS, Kube: kube, Logger: e.Logger, Registerer: e.Registerer, Signer: signer})
		},
	}
}
