package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// SetPause stores a cluster's kill switch in kaar_control.
func SetPause(ctx context.Context, js jetstream.JetStream, cluster string, p events.Pause) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	key, err := events.PauseKey(cluster)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, events.BucketControl)
	if err != nil {
		return fmt.Errorf("open %s: %w (run Provision first)", events.BucketControl, err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// GetPause reads a cluster's kill switch; the zero Pause (not paused)
// when it was never set.
func GetPause(ctx context.Context, js jetstream.JetStream, cluster string) (events.Pause, error) {
	key, err := events.PauseKey(cluster)
	if err != nil {
		return events.Pause{}, err
	}
	kv, err := js.KeyValue(ctx, events.BucketControl)
	if err != nil {
		return events.Pause{}, fmt.Errorf("open %s: %w (run Provision first)", events.BucketControl, err)
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return events.Pause{}, nil
	}
	if err != nil {
		return events.Pause{}, fmt.Errorf("get %s: %w", key, err)
	}
	return DecodePause(e.Value())
}

// DecodePause decodes and validates a stored kill switch.
func DecodePause(b []byte) (events.Pause, error) {
	var p events.Pause
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("decode pause: %w: %w", events.ErrInvalid, err)
	}
	return p, p.Validate()
}
