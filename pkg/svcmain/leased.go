package svcmain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/lease"
)

// ErrLeaseLost ends a singleton service that lost its lease: the process
// exits, and its restart stands by as a replica (as client-go's leader
// election does), since a service runs once per process.
var ErrLeaseLost = errors.New("lost the lease to another replica; exiting so that the restarted process stands by")

// DefaultHolder is this process's identity in leases: the host name (a
// pod's name in Kubernetes) and the process id, so two replicas on one
// machine never share it, and a container restarted in its pod (pid 1
// again) takes its own lease back at once.
func DefaultHolder() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

// leased is a singleton service behind its lease.
type leased struct {
	inner  Service
	cfg    lease.Config
	ready  chan struct{}
	logger *slog.Logger
}

// Leased wraps svc so that it runs only while this replica holds the
// lease key in events.BucketLeases. A standby replica is ready (it is
// healthy and waiting); a replica whose lease was taken over (it was cut
// off from the bus for longer than the lease) stops its service and
// returns ErrLeaseLost. A record left by this same holder (holder
// identities are stable across a restart of the same instance) is taken
// back at once instead of after the lease duration.
func Leased(ctx context.Context, svc Service, nc *nats.Conn, cfg config.Config, key, holder string, logger *slog.Logger) (Service, error) {
	js, err := bus.NewJetStream(nc, cfg.NATS.JetStreamDomain)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, events.BucketLeases)
	if err != nil {
		return nil, fmt.Errorf("open the leases bucket %s: %w (%w)", events.BucketLeases, err, bus.ErrNotProvisioned)
	}
	d := cfg.NATS.LeaseDuration.Duration
	return &leased{inner: svc, ready: make(chan struct{}), logger: logger,
		cfg: lease.Config{KV: kv, Key: key, Holder: holder, Logger: logger, Duration: d, RenewDeadline: d * 2 / 3, RetryPeriod: d * 2 / 15}}, nil
}

func (l *leased) Ready() <-chan struct{} { return l.ready }

// SplitService is a singleton service with a part every replica runs
// (the notifier's HTTP endpoints, which any replica may answer) besides
// the part only the lease holder runs.
type SplitService interface {
	Service
	RunEveryReplica(ctx context.Context) error
	RunLeader(ctx context.Context) error
}

func (l *leased) Run(ctx context.Context) error {
	lead := l.inner.Run
	g, gctx := errgroup.WithContext(ctx)
	if split, ok := l.inner.(SplitService); ok {
		lead = split.RunLeader
		g.Go(func() error { return split.RunEveryReplica(gctx) })
	}
	close(l.ready)
	l.logger.Info("campaigning for the lease; standing by until it is held", slog.String("lease", l.cfg.Key), slog.String("holder", l.cfg.Holder))
	ran := false
	g.Go(func() error {
		return lease.Run(gctx, l.cfg, func(lctx context.Context) error {
			if ran {
				return ErrLeaseLost // a service runs once per process
			}
			ran = true
			err := lead(lctx)
			if err == nil && lctx.Err() != nil && gctx.Err() == nil {
				return ErrLeaseLost
			}
			return err
		})
	})
	return g.Wait()
}
