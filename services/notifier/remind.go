package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/events"
)

// tickLoop runs tick every Config.Tick until ctx ends.
func (s *Service) tickLoop(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.tick(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("slack reminders", slog.Any("error", err))
			}
		}
	}
}

// tick sends what quiet hours held back (first posts, and replies about
// changes people were not told of) and repeats the notification of
// incidents still open after the repeat interval (Alertmanager's
// repeat_interval). Nothing is sent in quiet hours.
func (s *Service) tick(ctx context.Context) error {
	if s.cfg.Slack.Quiet.Active(s.now()) {
		return nil
	}
	lister, err := s.state.ListKeysFiltered(ctx, s.cfg.Cluster+".t.>")
	if err != nil {
		return fmt.Errorf("list slack state: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, strings.TrimPrefix(k, s.cfg.Cluster+".t."))
	}
	_ = lister.Stop()
	var errs []error
	for _, key := range keys {
		err := s.updateThread(ctx, key, func(t *thread) change {
			switch {
			case t.Pending:
				return change{dirty: true}
			case !t.posted():
				return change{}
			}
			if r := incidentReply(t); r != "" {
				return change{dirty: true, reply: r}
			}
			if iv := s.cfg.Slack.RepeatInterval; iv > 0 && t.open() && !t.warning() && s.now().Sub(t.LastNotified) >= iv {
				return change{dirty: true, reply: stillFailing(t)}
			}
			return change{}
		})
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// warning reports a thread about a warning (one that exists because
// someone asked for its plan): it is never repeated.
func (t *thread) warning() bool { return t.Incident != nil && t.Incident.Type.IsWarning() }

func waiting(t *thread) string {
	if t.Plan != nil && t.Status == StatusProposed && !t.Plan.DiagnosticOnly && t.Plan.State == events.PlanProposed {
		return " A plan is waiting for approval above."
	}
	return ""
}

// stillFailing is the repeated notification of an incident still open.
func stillFailing(t *thread) string {
	in := t.Incident
	return fmt.Sprintf(":repeat: Still failing: %s (`%s`), %d pod(s), seen %d times.%s",
		events.DisplayObject(in.Owner.Kind, in.Namespace, in.Owner.Name), in.Reason, in.PodCount, in.Count, waiting(t))
}
