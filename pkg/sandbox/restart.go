package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ErrNotOwned is returned by operations that need a sandbox started by this
// program (Up), not one found with Attach.
var ErrNotOwned = errors.New("sandbox not started by this program")

// RestartAPIServer stops the kube-apiserver (SIGTERM, SIGKILL after 10 s),
// leaves it down for downFor, then starts it again with the same flags and
// waits until it is ready. etcd keeps the cluster's state; every client
// (kwok, the controllers, the code under test) sees its watches fail and
// must resume them, which is what the outage is for: robustness tests of
// watchers against an unavailable API server and, once it is back, watch
// expiry (410 Gone: the restarted API server's watch cache starts at the
// current etcd revision).
//
// Only a sandbox started by this program can be restarted (ErrNotOwned
// otherwise: a shared sandbox belongs to others). It must not run
// concurrently with Down.
func (c *Cluster) RestartAPIServer(ctx context.Context, downFor time.Duration) error {
	if c.attached || c.StateDir == "" {
		return fmt.Errorf("restart kube-apiserver: %w", ErrNotOwned)
	}
	idx := -1
	for i, p := range c.owned {
		if p.Name == "kube-apiserver" {
			idx = i
		}
	}
	if idx < 0 {
		return fmt.Errorf("restart kube-apiserver: %w", ErrNotOwned)
	}
	old := c.owned[idx]
	stopProcess(ctx, old.ProcessState, stopGrace, c.logger)
	select {
	case <-old.done:
	case <-ctx.Done():
		return fmt.Errorf("restart kube-apiserver: %w", ctx.Err())
	}
	select {
	case <-time.After(downFor):
	case <-ctx.Done():
		return fmt.Errorf("restart kube-apiserver: %w", ctx.Err())
	}
	p, err := startProcess(old.Name, old.Binary, old.args, old.Log, old.detached)
	if err != nil {
		return fmt.Errorf("restart kube-apiserver: %w: %w", ErrStart, err)
	}
	c.owned[idx] = p
	c.logger.Info("restarted sandbox process", slog.String("component", p.Name), slog.Int("pid", p.PID))
	if st, err := readState(c.StateDir); err == nil {
		for i := range st.Processes {
			if st.Processes[i].Name == p.Name {
				st.Processes[i] = p.ProcessState
			}
		}
		if err := writeState(c.StateDir, st); err != nil {
			return fmt.Errorf("restart kube-apiserver: %w", err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, apiServerTimeout)
	defer cancel()
	for {
		if p.exited() {
			return fmt.Errorf("restart kube-apiserver: %w: exited (%v); last lines of %s:\n%s", ErrStart, p.err, p.Log, logTail(p.Log, 20))
		}
		if err := c.ready(rctx); err == nil {
			return nil
		} else if rctx.Err() != nil {
			return fmt.Errorf("restart kube-apiserver: %w: not ready: %w", ErrStart, err)
		}
		select {
		case <-rctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}
