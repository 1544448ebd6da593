package watcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// A watcher announces a transition on the ISSUES stream, then records it
// in the kaar_incidents bucket (announce). One that dies between the two
// leaves an announcement its successor has no record of. If the failure
// is still there, the successor announces the same observation again and
// the stream drops it as a duplicate (same Nats-Msg-Id). If it healed
// before the successor looked, nothing would ever resolve it: every
// consumer would keep an incident open that no watcher knows. So a
// starting watcher reads its cluster's announcements of the last
// duplicate window from the stream and takes any that is newer than its
// record as the record (unrecordedAnnouncements).

// defaultUnrecordedWindow is how far back the stream is read when its
// duplicate window cannot be read (the bus's default).
const defaultUnrecordedWindow = 2 * time.Minute

// unrecordedReadTimeout bounds the read: a watcher must start even when
// the stream cannot be read (it logs why; only the rare healed case
// above is then missed).
const unrecordedReadTimeout = 10 * time.Second

// withUnrecorded returns recs with the cluster's announcements of the
// last duplicate window that are newer than their record (or have none)
// in their place, and stores those records.
func (s *Service) withUnrecorded(ctx context.Context, recs []record) []record {
	ctx, cancel := context.WithTimeout(ctx, unrecordedReadTimeout)
	defer cancel()
	found, err := s.unrecordedAnnouncements(ctx, recs)
	if err != nil {
		s.log.Warn("could not read the last announcements from the ISSUES stream; an announcement published but not recorded by a watcher that died may stay open",
			slog.Any("error", err))
	}
	if len(found) == 0 {
		return recs
	}
	byID := map[string]int{}
	for i, r := range recs {
		byID[r.Incident.ID] = i
	}
	for _, r := range found {
		if i, ok := byID[r.Incident.ID]; ok {
			recs[i] = r
		} else {
			byID[r.Incident.ID] = len(recs)
			recs = append(recs, r)
		}
		if err := s.store.put(ctx, r); err != nil {
			s.log.Warn("recording an unrecorded announcement failed", slog.String("incident", r.Incident.ID), slog.Any("error", err))
		}
		s.log.Info("took an announcement published but not recorded as the incident's record",
			slog.String("incident", r.Incident.ID), slog.String("transition", string(r.Transition)), slog.Int64("observation", r.Observation))
	}
	return recs
}

// unrecordedAnnouncements reads the cluster's ISSUES messages of the last
// duplicate window (within this watcher's namespace, if it has one) and
// returns, per incident, the newest announcement that is newer than its
// record.
func (s *Service) unrecordedAnnouncements(ctx context.Context, recs []record) ([]record, error) {
	filter, err := events.IssueFilter(s.cfg.Cluster)
	if err != nil {
		return nil, err
	}
	stream, err := s.js.Stream(ctx, events.StreamIssues)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", events.StreamIssues, err)
	}
	info := stream.CachedInfo()
	// A minute more for clock skew between the watchers' hosts and the
	// server.
	start := time.Now().Add(-cmp.Or(info.Config.Duplicates, defaultUnrecordedWindow) - time.Minute)
	if info.State.LastSeq == 0 || info.State.LastTime.Before(start) {
		return nil, nil // nothing announced within the window
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", events.StreamIssues, err)
	}
	recorded := map[string]int64{}
	for _, r := range recs {
		recorded[r.Incident.ID] = r.Observation
	}
	newest := map[string]record{}
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", events.StreamIssues, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", events.StreamIssues, err)
		}
		if r, ok := s.announcementOf(msg); ok && r.Observation > recorded[r.Incident.ID] && r.Observation > newest[r.Incident.ID].Observation {
			newest[r.Incident.ID] = r
		}
		if md.Sequence.Stream >= info.State.LastSeq || md.NumPending == 0 {
			break
		}
	}
	out := make([]record, 0, len(newest))
	for _, r := range newest {
		out = append(out, r)
	}
	return out, nil
}

// announcementOf decodes an ISSUES message of this watcher's scope as the
// record its publisher would have written.
func (s *Service) announcementOf(msg jetstream.Msg) (record, bool) {
	env, err := events.Decode(msg.Data())
	if err != nil {
		return record{}, false
	}
	ev, err := events.DecodeData[events.IncidentEvent](env)
	if err != nil {
		return record{}, false
	}
	r := record{Observation: ev.Observation, Transition: ev.Transition, PublishedAt: ev.ObservedAt, Incident: ev.Incident}
	if validRecord(r, s.cfg.Cluster) != nil || s.cfg.Namespace != "" && r.Incident.Namespace != s.cfg.Namespace {
		return record{}, false
	}
	return r, true
}
