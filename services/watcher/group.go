package watcher

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
)

// Target is one cluster of a multi-cluster watcher: its configuration
// (Config.Cluster names it on the bus and in every event) and its client.
type Target struct {
	Config Config
	Kube   kubernetes.Interface
}

// Group is one watcher process watching several clusters (kubeconfig
// contexts): one Service per cluster, sharing the NATS connection, the
// logger and the metrics registry (their series carry a cluster label).
// Every incident, subject, state key and analyze endpoint is the
// cluster's own, exactly as with one watcher per cluster.
type Group struct {
	services []*Service
}

// NewGroup builds a watcher per target. deps.Kube is ignored (each target
// has its client); the cluster names must be distinct.
func NewGroup(targets []Target, deps Deps) (*Group, error) {
	if len(targets) == 0 {
		return nil, fmt.Errorf("%w: field \"clusters\": at least one cluster", ErrInvalidConfig)
	}
	g := &Group{}
	seen := map[string]bool{}
	for i, t := range targets {
		if seen[t.Config.Cluster] {
			return nil, fmt.Errorf("%w: field \"clusters[%d].cluster\": %q is named twice", ErrInvalidConfig, i, t.Config.Cluster)
		}
		seen[t.Config.Cluster] = true
		d := deps
		d.Kube = t.Kube
		if deps.Registerer != nil {
			d.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"cluster": t.Config.Cluster}, deps.Registerer)
		}
		svc, err := New(t.Config, d)
		if err != nil {
			return nil, fmt.Errorf("cluster %d (%q): %w", i, t.Config.Cluster, err)
		}
		g.services = append(g.services, svc)
	}
	return g, nil
}

// Run runs every cluster's watcher until ctx is done or one of them fails
// (then the others are stopped): a watcher that cannot serve one of its
// clusters says so rather than serve the others silently.
func (g *Group) Run(ctx context.Context) error {
	eg, ctx := errgroup.WithContext(ctx)
	for _, s := range g.services {
		eg.Go(func() error {
			if err := s.Run(ctx); err != nil {
				return fmt.Errorf("cluster %s: %w", s.cfg.Cluster, err)
			}
			return nil
		})
	}
	return eg.Wait()
}

// Ready reports whether every cluster's caches are synced.
func (g *Group) Ready() bool {
	for _, s := range g.services {
		if !s.Ready() {
			return false
		}
	}
	return true
}

// Clusters returns the names of the clusters, in the order of the targets
// (for bus.Provision).
func (g *Group) Clusters() []string {
	out := make([]string, len(g.services))
	for i, s := range g.services {
		out[i] = s.cfg.Cluster
	}
	return out
}
