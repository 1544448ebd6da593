package watcher

import (
	"context"
	"log/slog"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
)

// forbiddenReads replaces client-go's watch error handler on the
// watcher's informers: a list or watch the API server forbids (the
// watcher's role lacks a resource) is said once per resource, as a
// structured warning naming what is not detected without it, instead of
// a klog error line at every retry. The informer keeps retrying with
// client-go's backoff, so a role granted later takes effect without a
// restart. Other errors go to client-go's default handler.
type forbiddenReads struct {
	log  *slog.Logger
	mu   sync.Mutex
	said map[string]bool
}

func newForbiddenReads(log *slog.Logger) *forbiddenReads {
	return &forbiddenReads{log: log, said: map[string]bool{}}
}

// watch sets the handler on inf (nil is skipped), before it starts:
// resource is what the role must allow (list, watch), without is what
// the watcher does not detect while it may not.
func (f *forbiddenReads) watch(inf cache.SharedIndexInformer, resource, without string) {
	if inf == nil {
		return
	}
	// An informer already started refuses a new handler; the watcher
	// sets them all before it starts any, so this cannot fail.
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		if !apierrors.IsForbidden(err) {
			cache.DefaultWatchErrorHandler(ctx, r, err)
			return
		}
		f.mu.Lock()
		first := !f.said[resource]
		f.said[resource] = true
		f.mu.Unlock()
		if first {
			f.log.Warn("the watcher may not list or watch "+resource+": "+without+" until its role allows it (retrying)",
				slog.String("resource", resource), slog.String("error", err.Error()))
		}
	})
}

// reportForbiddenReads sets the handler on every informer the watcher
// starts itself (the warnings' informers check their rights before they
// start, and say which warnings are off).
func (s *Service) reportForbiddenReads() {
	f := newForbiddenReads(s.log)
	const withoutEvents = "the causes events give (image pulls, FailedCreate, probes, claims, mounts) are not read"
	f.watch(s.cl.pods, "pods", "no failing pod is detected")
	f.watch(s.cl.rs, "replicasets", "pods are not grouped by Deployment and FailedCreate of Deployments is not detected")
	f.watch(s.cl.jobs, "jobs", "failed Jobs are not detected")
	f.watch(s.cl.deploys, "deployments", "stuck Deployment rollouts are not detected")
	f.watch(s.cl.sts, "statefulsets", "StatefulSet rollouts are not judged")
	f.watch(s.cl.ds, "daemonsets", "DaemonSet rollouts are not judged")
	f.watch(s.cl.svcs, "services", "Services without endpoints are not detected")
	f.watch(s.cl.slices, "endpointslices", "Services without ready endpoints are not detected")
	f.watch(s.cl.events, "events", withoutEvents)
	f.watch(s.cl.createEvents, "events", withoutEvents)
	f.watch(s.probes.events, "events", withoutEvents)
	f.watch(s.storage.claimEvents, "events", withoutEvents)
	f.watch(s.storage.mountEvents, "events", withoutEvents)
	f.watch(s.storage.claims, "persistentvolumeclaims", "pending claims (PVCPending) are not detected")
	f.watch(s.storage.classes, "storageclasses", "claims of a missing StorageClass are not told apart")
	f.watch(s.ingress.ingresses, "ingresses", "broken Ingresses are not detected")
	f.watch(s.ingress.classes, "ingressclasses", "Ingress classes are not judged (backends still are)")
	f.watch(s.cron.cronJobs, "cronjobs", "CronJobs that stopped scheduling are not detected")
	f.watch(s.nodes.hpas, "horizontalpodautoscalers", "HPA failures are not detected")
	f.watch(s.nodes.nodes, "nodes", "node failures are not detected")
}
