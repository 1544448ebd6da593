package watcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// stateStore keeps the last announcement of every incident of one cluster
// in the kaar_incidents bucket.
type stateStore struct {
	kv      jetstream.KeyValue
	cluster string
	log     *slog.Logger
}

// load returns every record of the cluster. A record that does not decode
// or validate is logged and skipped: it must not stop the watcher.
func (s *stateStore) load(ctx context.Context) ([]record, error) {
	w, err := s.kv.Watch(ctx, s.cluster+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("load incident state: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var out []record
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("load incident state: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("load incident state: watcher closed")
			}
			if e == nil { // initial values delivered
				return out, nil
			}
			var r record
			if err := json.Unmarshal(e.Value(), &r); err != nil {
				s.log.Warn("skipping undecodable incident record", slog.String("key", e.Key()), slog.Any("error", err))
				continue
			}
			if err := validRecord(r, s.cluster); err != nil {
				s.log.Warn("skipping invalid incident record", slog.String("key", e.Key()), slog.Any("error", err))
				continue
			}
			out = append(out, r)
		}
	}
}

func validRecord(r record, cluster string) error {
	if err := r.Transition.Validate(); err != nil {
		return err
	}
	if r.Observation < 1 {
		return fmt.Errorf("observation %d: %w", r.Observation, events.ErrInvalid)
	}
	if r.Incident.Cluster != cluster {
		return fmt.Errorf("cluster %q, want %q: %w", r.Incident.Cluster, cluster, events.ErrInvalid)
	}
	return r.Incident.Validate()
}

// put stores the record of an announcement.
func (s *stateStore) put(ctx context.Context, r record) error {
	key, err := events.IncidentStateKey(s.cluster, r.Incident.ID)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode incident record %s: %w", r.Incident.ID, err)
	}
	if _, err := s.kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("store incident record %s: %w", r.Incident.ID, err)
	}
	return nil
}

// purge removes the record of an incident.
func (s *stateStore) purge(ctx context.Context, id string) error {
	key, err := events.IncidentStateKey(s.cluster, id)
	if err != nil {
		return err
	}
	if err := s.kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("purge incident record %s: %w", id, err)
	}
	return nil
}
