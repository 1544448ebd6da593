// Package lease elects one active replica of a kaar service (the watcher
// of a cluster, the notifier) over a JetStream key-value bucket.
//
// Why the bus and not a Kubernetes Lease: the notifier holds no
// Kubernetes credentials (by design), and the bus is what every kaar
// service already trusts and needs; a KV key updated with compare-and-set
// gives the same guarantees as client-go's leader election, and with
// nats.replicas 3 it survives the loss of a NATS node.
//
// The algorithm is client-go's: the holder renews its record every
// RetryPeriod with an update conditioned on the revision it last wrote;
// a candidate that sees the record unchanged (same revision) for a whole
// Duration, by its own clock, takes it over with an update conditioned on
// that revision, so exactly one candidate wins. The holder stops leading
// when it has not renewed for RenewDeadline (shorter than Duration), so
// it has stopped before anyone else may start; it releases the key (a
// conditioned delete) when it stops, so a successor starts within one
// RetryPeriod instead of a Duration.
//
// Leading is not fencing: a process paused longer than Duration could
// still act once after resuming. kaar's services tolerate that by
// design: incidents are deduplicated by message id and observation
// number, and everything they write is a CAS on the bus.
package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults, as client-go's leader election.
const (
	DefaultDuration      = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Config says what is elected and how fast.
type Config struct {
	// KV is the bucket holding the lease records (required).
	KV jetstream.KeyValue
	// Key is the lease's key, e.g. "watcher.prod" (required).
	Key string
	// Holder is this candidate's identity, unique among the live
	// candidates (required). A candidate finding a record of its own
	// holder takes it back at once: keep the identity stable across a
	// restart of the same instance (a pod's name, a state directory) and
	// never shared by two live processes.
	Holder string
	// Duration is how long a record must stay unchanged before a
	// candidate takes it over; RenewDeadline is how long the holder keeps
	// leading without a successful renewal (< Duration); RetryPeriod is
	// how often the holder renews and a candidate looks (< RenewDeadline).
	Duration, RenewDeadline, RetryPeriod time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnChange, if set, is called when this candidate starts (true) and
	// stops (false) leading.
	OnChange func(leading bool)
}

// Record is the value of a lease key: who holds it, since when and when
// it was renewed (informational: candidates decide by revision and
// their own clock, never by another machine's).
type Record struct {
	Holder     string    `json:"holder"`
	AcquiredAt time.Time `json:"acquired_at"`
	RenewedAt  time.Time `json:"renewed_at"`
}

// ErrInvalid is returned for a Config that cannot work.
var ErrInvalid = errors.New("lease: invalid configuration")

func (c Config) withDefaults() (Config, error) {
	if c.KV == nil || c.Key == "" || c.Holder == "" {
		return c, fmt.Errorf("%w: KV, Key and Holder are required", ErrInvalid)
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = DefaultRetryPeriod
	}
	if c.RetryPeriod <= 0 || c.RenewDeadline <= c.RetryPeriod || c.Duration <= c.RenewDeadline {
		return c, fmt.Errorf("%w: want 0 < retry period (%s) < renew deadline (%s) < duration (%s)", ErrInvalid, c.RetryPeriod, c.RenewDeadline, c.Duration)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Run campaigns for the lease until ctx ends. Whenever this candidate
// holds it, Run calls lead with a context that is cancelled when the
// lease is lost (or ctx ends), waits for lead to return, and campaigns
// again. An error from lead ends Run with that error; so does ctx (nil).
func Run(ctx context.Context, cfg Config, lead func(ctx context.Context) error) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	c := &candidate{cfg: cfg, log: cfg.Logger.With(slog.String("lease", cfg.Key), slog.String("holder", cfg.Holder))}
	for {
		rev, err := c.acquire(ctx)
		if err != nil {
			return nil // ctx ended
		}
		if err := c.leadWhileHeld(ctx, rev, lead); err != nil || ctx.Err() != nil {
			return err
		}
	}
}

type candidate struct {
	cfg Config
	log *slog.Logger
	// observed is the last revision seen of another holder's record and
	// when (by this clock) it was first seen.
	observedRev uint64
	observedAt  time.Time
}

// acquire waits until this candidate holds the lease and returns the
// revision of its record; an error means ctx ended.
func (c *candidate) acquire(ctx context.Context) (uint64, error) {
	t := time.NewTicker(c.cfg.RetryPeriod)
	defer t.Stop()
	for {
		if rev, ok := c.tryAcquire(ctx); ok {
			return rev, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

// tryAcquire creates the record when there is none, or takes over one
// that has not changed for a whole Duration.
func (c *candidate) tryAcquire(ctx context.Context) (uint64, bool) {
	now := c.cfg.Now()
	val := c.record(now, now)
	e, err := c.cfg.KV.Get(ctx, c.cfg.Key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// No record, or a released one (a delete marker): Create
		// succeeds for one candidate only.
		rev, err := c.cfg.KV.Create(ctx, c.cfg.Key, val)
		if err != nil {
			c.log.Debug("lease create lost", slog.Any("error", err))
			return 0, false
		}
		return rev, true
	case err != nil:
		c.log.Warn("lease read failed", slog.Any("error", err))
		return 0, false
	}
	var prev Record
	_ = json.Unmarshal(e.Value(), &prev)
	if prev.Holder == c.cfg.Holder {
		// Our own record, left by this instance before a restart (its
		// identity is stable across one): nobody else may hold it, so
		// take it back at once.
		rev, err := c.cfg.KV.Update(ctx, c.cfg.Key, val, e.Revision())
		if err != nil {
			return 0, false
		}
		c.log.Info("took back this holder's lease after a restart")
		return rev, true
	}
	if e.Revision() != c.observedRev {
		c.observedRev, c.observedAt = e.Revision(), now
		return 0, false
	}
	if now.Sub(c.observedAt) < c.cfg.Duration {
		return 0, false
	}
	rev, err := c.cfg.KV.Update(ctx, c.cfg.Key, val, e.Revision())
	if err != nil {
		c.log.Debug("lease takeover lost", slog.Any("error", err))
		return 0, false
	}
	c.log.Info("took over an expired lease", slog.String("previous_holder", prev.Holder), slog.Duration("unchanged_for", now.Sub(c.observedAt)))
	return rev, true
}

func (c *candidate) record(acquired, renewed time.Time) []byte {
	b, _ := json.Marshal(Record{Holder: c.cfg.Holder, AcquiredAt: acquired.UTC(), RenewedAt: renewed.UTC()})
	return b
}

// leadWhileHeld runs lead while renewing; it returns lead's error, or nil
// when the lease was lost or ctx ended (then lead has returned too).
func (c *candidate) leadWhileHeld(ctx context.Context, rev uint64, lead func(context.Context) error) error {
	acquired := c.cfg.Now()
	c.log.Info("leading")
	if c.cfg.OnChange != nil {
		c.cfg.OnChange(true)
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- lead(lctx) }()

	lastRenew := acquired
	t := time.NewTicker(c.cfg.RetryPeriod)
	defer t.Stop()
	var leadErr error
	lost := false
loop:
	for {
		select {
		case leadErr = <-done:
			done = nil
			break loop
		case <-ctx.Done():
			break loop
		case <-t.C:
			now := c.cfg.Now()
			rctx, rcancel := context.WithTimeout(ctx, c.cfg.RetryPeriod)
			nrev, err := c.cfg.KV.Update(rctx, c.cfg.Key, c.record(acquired, now), rev)
			rcancel()
			if err == nil {
				rev, lastRenew = nrev, now
				continue
			}
			if errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err) {
				// The revision moved. An earlier renewal whose reply
				// was lost (it timed out here but the server applied
				// it) moves it too: only another holder's record
				// means the lease is lost.
				held, nrev, renewed, gerr := c.heldByThis(ctx, acquired)
				switch {
				case gerr == nil && held:
					c.log.Debug("lease renewal found its own earlier write applied", slog.Uint64("revision", nrev))
					rev, lastRenew = nrev, renewed
					continue
				case gerr == nil:
					c.log.Warn("lease lost: another candidate holds it", slog.Any("error", err))
					lost = true
					break loop
				}
				err = gerr
			}
			if now.Sub(lastRenew) >= c.cfg.RenewDeadline {
				c.log.Warn("lease lost: not renewed within the renew deadline", slog.Duration("renew_deadline", c.cfg.RenewDeadline), slog.Any("error", err))
				lost = true
				break loop
			}
			c.log.Debug("lease renewal failed, retrying", slog.Any("error", err))
		}
	}
	cancel()
	if done != nil {
		leadErr = <-done
	}
	if !lost {
		// Release, so a successor need not wait a whole Duration. A
		// fresh context: ctx may be over.
		rctx, rcancel := context.WithTimeout(context.Background(), c.cfg.RetryPeriod)
		if err := c.cfg.KV.Delete(rctx, c.cfg.Key, jetstream.LastRevision(rev)); err != nil {
			c.log.Debug("lease release failed (a successor waits for it to expire)", slog.Any("error", err))
		}
		rcancel()
	}
	c.observedRev, c.observedAt = 0, time.Time{}
	c.log.Info("stopped leading", slog.Bool("lost", lost))
	if c.cfg.OnChange != nil {
		c.cfg.OnChange(false)
	}
	if errors.Is(leadErr, context.Canceled) {
		leadErr = nil
	}
	return leadErr
}

// heldByThis reads the lease record after a renewal found its revision
// moved: held is true when the record is this holder's of this term (the
// same acquisition time), which a renewal applied by the server whose
// reply never arrived leaves; then rev is its revision and renewed when
// it was written. An error means the record could not be read.
func (c *candidate) heldByThis(ctx context.Context, acquired time.Time) (held bool, rev uint64, renewed time.Time, err error) {
	gctx, cancel := context.WithTimeout(ctx, c.cfg.RetryPeriod)
	defer cancel()
	e, err := c.cfg.KV.Get(gctx, c.cfg.Key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, 0, time.Time{}, nil
	}
	if err != nil {
		return false, 0, time.Time{}, err
	}
	var r Record
	if json.Unmarshal(e.Value(), &r) != nil || r.Holder != c.cfg.Holder || !r.AcquiredAt.Equal(acquired.UTC()) {
		return false, 0, time.Time{}, nil
	}
	return true, e.Revision(), r.RenewedAt, nil
}

// isWrongSequence reports the error of an update whose expected revision
// is not the key's last one (a replicated stream reports it with its own
// code).
func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}
