package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Header names set by Publish.
const (
	// HeaderContentType is "application/cloudevents+json": the body is a
	// structured-mode CloudEvent.
	HeaderContentType = "Content-Type"
	// HeaderEventType repeats the envelope type, so subscribers can filter
	// without decoding the body.
	HeaderEventType = "Kaar-Event-Type"
)

// Publisher is what Publish needs; jetstream.JetStream is one.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Publish validates env, checks that subject is a kaar subject of env's
// cluster, and publishes it to JetStream with Nats-Msg-Id msgID (required:
// use the events.*MsgID helpers). duplicate is true when the stream had
// already stored a message with that id within its duplicate window: the
// message was dropped, which is success for an idempotent publisher.
func Publish(ctx context.Context, js Publisher, subject string, env events.Envelope, msgID string) (duplicate bool, err error) {
	if err := env.Validate(); err != nil {
		return false, fmt.Errorf("publish to %s: %w", subject, err)
	}
	if msgID == "" {
		return false, fmt.Errorf("publish to %s: msg id required: %w", subject, events.ErrInvalid)
	}
	if prefix := events.SubjectRoot + "." + env.Cluster + "."; !strings.HasPrefix(subject, prefix) {
		return false, fmt.Errorf("publish to %s: subject is not under %s> (cluster of the envelope): %w", subject, prefix, events.ErrInvalid)
	}
	body, err := json.Marshal(env)
	if err != nil {
		return false, fmt.Errorf("publish to %s: encode envelope: %w", subject, err)
	}
	msg := nats.NewMsg(subject)
	msg.Data = body
	msg.Header.Set(HeaderContentType, events.ContentTypeCloudEvents)
	msg.Header.Set(HeaderEventType, env.Type)
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID))
	if err != nil {
		return false, fmt.Errorf("publish %s to %s: %w", env.Type, subject, err)
	}
	return ack.Duplicate, nil
}
