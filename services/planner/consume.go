package planner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// retryDelay is the redelivery delay after the n-th failed delivery.
func retryDelay(delivered uint64) time.Duration {
	d := time.Second << min(delivered, 6)
	return min(d, time.Minute)
}

// consume reads the ISSUES stream through the planner's durable consumer
// with up to cfg.Workers messages in flight. It returns when ctx is done,
// after the in-flight messages are handled (they get their own deadline,
// not ctx).
func (s *Service) consume(ctx context.Context, cons jetstream.Consumer) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(s.cfg.Workers))
	if err != nil {
		return fmt.Errorf("consume %s: %w", events.StreamIssues, err)
	}
	defer it.Stop()
	// A message is marked in progress from the moment it is taken until
	// it is handled, every third of the ack wait: the ack wait can then
	// be short, which is how soon another replica plans the incidents
	// of a planner that died.
	every := cons.CachedInfo().Config.AckWait / 3
	sem := make(chan struct{}, s.cfg.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	work := context.WithoutCancel(ctx)
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			s.log.Warn("issue consumer", slog.Any("error", err))
			continue
		}
		stop := keepInProgress(msg, every)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			// Not started: leave it unacked, JetStream redelivers it.
			stop()
			return nil
		}
		wg.Go(func() {
			defer func() { <-sem }()
			defer stop()
			hctx, cancel := context.WithTimeout(work, s.cfg.PlanTimeout)
			defer cancel()
			s.handleIssue(hctx, msg)
		})
	}
}

// keepInProgress marks msg in progress every `every` until the returned
// stop is called (never when every is not positive).
func keepInProgress(msg jetstream.Msg, every time.Duration) (stop func()) {
	if every <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress() // best effort: at worst another replica plans it too, and the replicas converge
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// handleIssue handles one IncidentEvent: plan on detected/changed,
// obsolete the proposed plans on resolved. A warning (class warning) is
// not planned on detection or change: it is planned only when someone
// asks (the plan endpoint), and its resolution obsoletes the plans that
// were asked for. Invalid messages are terminated (never retried);
// transient failures are retried with a growing delay.
func (s *Service) handleIssue(ctx context.Context, msg jetstream.Msg) {
	log := s.log.With(slog.String("subject", msg.Subject()))
	term := func(reason string, err error) {
		log.Warn("dropping invalid issue message", slog.String("reason", reason), slog.Any("error", err))
		if terr := msg.TermWithReason(reason); terr != nil {
			log.Warn("terminate message", slog.Any("error", terr))
		}
	}
	env, err := events.Decode(msg.Data())
	if err != nil {
		term("invalid envelope", err)
		return
	}
	if !strings.HasPrefix(env.Type, "dev.kaar.incident.") {
		term("not an incident event: "+env.Type, nil)
		return
	}
	ev, err := events.DecodeData[events.IncidentEvent](env)
	if err != nil {
		term("invalid incident event", err)
		return
	}
	if env.Cluster != s.cfg.Cluster || ev.Incident.Cluster != s.cfg.Cluster {
		term(fmt.Sprintf("incident of cluster %q, this planner serves %q", ev.Incident.Cluster, s.cfg.Cluster), nil)
		return
	}
	inc := ev.Incident
	log = log.With(slog.String("namespace", inc.Namespace), slog.String("owner", inc.Owner.Kind+"/"+inc.Owner.Name),
		slog.String("incident", inc.ID), slog.String("transition", string(ev.Transition)), slog.Int64("observation", ev.Observation))
	// Under the incident's lock, so that transitions handled concurrently
	// are admitted in the order they are applied.
	unlock := s.locks.lock(inc.ID)
	defer unlock()
	if !s.seen.admit(inc.ID, ev.Observation, s.now()) {
		log.Info("skipping an older observation of the incident")
		s.ack(msg, log)
		return
	}
	switch {
	case ev.Transition == events.TransitionResolved:
		err = s.obsoleteLocked(ctx, inc, ev.ObservedAt)
	case inc.Type.IsWarning():
		s.metrics.plans.WithLabelValues(string(inc.Type), outcomeWarning).Inc()
		log.Debug("a warning: planned only on request")
	default:
		_, err = s.planLocked(ctx, inc, sourceIssue, "")
	}
	switch {
	case err == nil:
		s.ack(msg, log)
	case errors.Is(err, ErrTargetGone):
		log.Info("workload gone: nothing to plan", slog.Any("error", err))
		s.ack(msg, log)
	case errors.Is(err, events.ErrInvalid):
		term("cannot plan", err)
	default:
		delay := time.Second
		if md, merr := msg.Metadata(); merr == nil {
			delay = retryDelay(md.NumDelivered)
		}
		log.Warn("planning failed; will retry", slog.Any("error", err), slog.Duration("retry_in", delay))
		if nerr := msg.NakWithDelay(delay); nerr != nil {
			log.Warn("nak message", slog.Any("error", nerr))
		}
	}
}

func (s *Service) ack(msg jetstream.Msg, log *slog.Logger) {
	if err := msg.Ack(); err != nil {
		log.Warn("ack message", slog.Any("error", err))
	}
}

// observations remembers the highest observation of each incident the
// planner has handled, so that an older transition delivered late (a
// redelivery after a newer one) does not undo a newer decision. It is
// best effort: memory only, and entries are pruned after an hour.
type observations struct {
	mu sync.Mutex
	m  map[string]seenObs
}

type seenObs struct {
	n  int64
	at time.Time
}

const (
	observationsTTL = time.Hour
	observationsMax = 4096
)

// admit records observation n of an incident and reports whether it is
// not older than the newest one seen (a redelivery of the same one is
// admitted: handling is idempotent).
func (o *observations) admit(id string, n int64, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]seenObs{}
	}
	if len(o.m) >= observationsMax {
		for k, v := range o.m {
			if now.Sub(v.at) > observationsTTL {
				delete(o.m, k)
			}
		}
	}
	if prev, ok := o.m[id]; ok && n < prev.n {
		return false
	}
	o.m[id] = seenObs{n: n, at: now}
	return true
}
