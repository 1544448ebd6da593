package watcher

import (
	"context"

	"github.com/kaar-dev/kaar/pkg/kubeclient"
	"github.com/kaar-dev/kaar/pkg/svcmain"
)

// Spec is the watcher to kaar's composition root (kaar serve, kaar
// watcher, kaar-watcher): one instance per cluster.
func Spec() svcmain.Spec {
	return svcmain.Spec{
		Name:    "watcher",
		Summary: "watches the cluster's pods and publishes one incident per failing workload.",
		Kube:    true,
		// One active watcher per cluster: replicas stand by on the lease.
		Singleton: true,
		Build: func(_ context.Context, e svcmain.Env) (svcmain.Service, error) {
			kube, err := kubeclient.Clientset(e.Config.Kubernetes)
			if err != nil {
				return nil, err
			}
			return New(ConfigFrom(e.Config), Deps{NATS: e.NATS, Kube: kube, Logger: e.Logger, Registerer: e.Registerer})
		},
	}
}
