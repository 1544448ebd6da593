package notifier

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of what the notifier declares on the bus (at start-up,
// idempotently, like the other services' consumers).
const (
	// StreamPrefix + cluster is the notification stream: it sources the
	// cluster's subjects of ISSUES, PLAN_EVENTS and AUDIT, so Slack and
	// every webhook receiver read the events in one order.
	StreamPrefix = "NOTIFY_"
	// BucketState holds Slack message state (channel, ts, what the
	// message shows), so a restarted notifier updates its messages
	// instead of posting new ones.
	BucketState = "kaar_notifier"
)

// StreamName is the notification stream of a cluster.
func StreamName(cluster string) string { return StreamPrefix + cluster }

// SlackConsumer is the durable consumer of the Slack notifier.
func SlackConsumer(cluster string) string { return "slack-" + cluster }

// WebhookConsumer is the durable consumer of one webhook receiver.
func WebhookConsumer(cluster, receiver string) string { return "webhook-" + cluster + "-" + receiver }

// DefaultSubjects are the subjects a receiver gets when it names none:
// every incident, plan and audit event of the cluster.
func DefaultSubjects(cluster string) []string {
	i, _ := events.IssueFilter(cluster)
	p, _ := events.PlanEventFilter(cluster)
	a, _ := events.AuditFilter(cluster)
	return []string{i, p, a}
}

// ensureStream creates the notification stream if it is missing. Its
// sources start at creation time: the notifier does not replay history
// into Slack or into receivers that did not exist yet. An existing stream
// is left as it is (its sources keep their position).
func ensureStream(ctx context.Context, js jetstream.JetStream, cluster string, maxAge time.Duration) error {
	name := StreamName(cluster)
	_, err := js.Stream(ctx, name)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("open stream %s: %w", name, err)
	}
	subj := DefaultSubjects(cluster)
	var sources []*jetstream.StreamSource
	for i, stream := range []string{events.StreamIssues, events.StreamPlanEvents, events.StreamAudit} {
		// Start after what the source holds now (a sequence, not a time:
		// a start time raced with messages published meanwhile).
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return fmt.Errorf("open source stream %s: %w", stream, err)
		}
		sources = append(sources, &jetstream.StreamSource{Name: stream, FilterSubject: subj[i], OptStartSeq: st.CachedInfo().State.LastSeq + 1})
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "kaar notifications of cluster " + cluster + " (sources ISSUES, PLAN_EVENTS, AUDIT)",
		Sources:     sources,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      maxAge,
		Storage:     jetstream.FileStorage,
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create stream %s: %w", name, err)
	}
	return nil
}

// orderedConsumer declares a durable pull consumer that hands out one
// message at a time (MaxAckPending 1): the next event is not delivered
// before this one is acknowledged, so a retried event keeps its place.
// MaxDeliver is unlimited: nothing is dropped while the receiver is down.
func orderedConsumer(ctx context.Context, js jetstream.JetStream, cluster, durable, desc string, subjects []string, ackWait time.Duration) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   desc,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: 1,
	}
	if len(subjects) == 1 {
		cfg.FilterSubject = subjects[0]
	} else {
		cfg.FilterSubjects = subjects
	}
	c, err := js.CreateOrUpdateConsumer(ctx, StreamName(cluster), cfg)
	if err != nil {
		return nil, fmt.Errorf("declare consumer %s/%s: %w", StreamName(cluster), durable, err)
	}
	return c, nil
}

// ensureStateBucket creates or updates the Slack state bucket.
func ensureStateBucket(ctx context.Context, js jetstream.JetStream, maxAge time.Duration) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketState,
		Description: "kaar notifier Slack message state",
		History:     1,
		TTL:         maxAge,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("declare kv %s: %w", BucketState, err)
	}
	return kv, nil
}

// backoff is the delay before delivery attempt n+1 after n failures.
func backoff(base, maxDelay time.Duration, n uint64) time.Duration {
	d := base
	for i := uint64(1); i < n && d < maxDelay; i++ {
		d *= 2
	}
	return min(d, maxDelay)
}

// consume hands the consumer's messages to handle one at a time until ctx
// ends. handle acks, naks or terminates the message itself.
func consume(ctx context.Context, c jetstream.Consumer, handle func(context.Context, jetstream.Msg)) error {
	for {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := c.Next(jetstream.FetchContext(fctx))
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.Canceled) {
				continue
			}
			// Transient bus trouble (reconnecting): wait a little.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		handle(ctx, m)
	}
}
