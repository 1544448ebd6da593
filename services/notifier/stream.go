package notifier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of what the notifier uses on the bus. "kaar bus provision"
// declares them (BusDeclarations); the notifier only binds to them, with
// its role's permissions (pkg/bus RoleNotifier), which allow no stream or
// consumer management.
const (
	// BucketState holds Slack message state (channel, ts, what the
	// message shows), so a restarted notifier updates its messages
	// instead of posting new ones.
	BucketState = bus.NotifyBucket
)

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

// slackAckWait is how long the Slack consumer waits for an event's ack
// before it delivers the event again: to this replica after a lost ack,
// or to the replica that took the lease over from one that died
// mid-event. Every event waits behind the one in flight (MaxAckPending
// 1), so this is how long Slack stalls after a failover, beyond the
// lease; consume extends it while an event is being handled.
const slackAckWait = 15 * time.Second

// webhookAckWait is how long one webhook delivery may take.
func webhookAckWait(c Config) time.Duration { return c.DeliveryTimeout + 20*time.Second }

// BusDeclarations are the notification stream, the state bucket and the
// durable consumers (Slack, one per webhook receiver) that cfg needs, for
// bus.Config.Notify: "kaar bus provision" declares them.
func BusDeclarations(cfg Config) (*bus.NotifyConfig, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &bus.NotifyConfig{Cluster: cfg.Cluster, StreamMaxAge: cfg.StreamMaxAge, StateMaxAge: cfg.StateMaxAge}
	if cfg.Slack.Enabled() {
		n.Consumers = append(n.Consumers, consumerConfig(SlackConsumer(cfg.Cluster), "kaar Slack notifier", DefaultSubjects(cfg.Cluster), slackAckWait))
	}
	for _, w := range cfg.Webhooks {
		subjects := w.Subjects
		if len(subjects) == 0 {
			subjects = DefaultSubjects(cfg.Cluster)
		}
		n.Consumers = append(n.Consumers, consumerConfig(WebhookConsumer(cfg.Cluster, w.Name), "kaar webhook "+w.Name+" "+w.URL, subjects, webhookAckWait(cfg)))
	}
	return n, nil
}

// ensureStream checks that the notification stream exists.
func ensureStream(ctx context.Context, js jetstream.JetStream, _ string, _ time.Duration) error {
	if _, err := js.Stream(ctx, bus.NotifyStream); err != nil {
		return fmt.Errorf("open stream %s: %w (%w)", bus.NotifyStream, err, bus.ErrNotProvisioned)
	}
	return nil
}

// consumerConfig is a durable pull consumer that hands out one message at
// a time (MaxAckPending 1): the next event is not delivered before this
// one is acknowledged, so a retried event keeps its place. MaxDeliver is
// unlimited: nothing is dropped while the receiver is down.
func consumerConfig(durable, desc string, subjects []string, ackWait time.Duration) jetstream.ConsumerConfig {
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
	return cfg
}

// orderedConsumer binds to a durable consumer the provisioner declared
// (consumerConfig): the notifier may not create or change consumers.
func orderedConsumer(ctx context.Context, js jetstream.JetStream, _ string, durable, _ string, _ []string, _ time.Duration) (jetstream.Consumer, error) {
	c, err := js.Consumer(ctx, bus.NotifyStream, durable)
	if err != nil {
		return nil, fmt.Errorf("bind consumer %s/%s: %w (%w)", bus.NotifyStream, durable, err, bus.ErrNotProvisioned)
	}
	return c, nil
}

// ensureStateBucket binds to the Slack state bucket.
func ensureStateBucket(ctx context.Context, js jetstream.JetStream, _ time.Duration) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, BucketState)
	if err != nil {
		return nil, fmt.Errorf("open kv %s: %w (%w)", BucketState, err, bus.ErrNotProvisioned)
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
// ends. handle acks, naks or terminates the message itself; while it
// runs, the message's ack wait is extended every third of it, so that a
// slow event is not delivered again while it is being handled.
func consume(ctx context.Context, c jetstream.Consumer, handle func(context.Context, jetstream.Msg)) error {
	ackWait := c.CachedInfo().Config.AckWait
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
		handleExtending(ctx, m, ackWait, handle)
	}
}

// handleExtending runs handle(m), telling the server the message is in
// progress every ackWait/3 until handle returns.
func handleExtending(ctx context.Context, m jetstream.Msg, ackWait time.Duration, handle func(context.Context, jetstream.Msg)) {
	if ackWait <= 0 {
		handle(ctx, m)
		return
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = m.InProgress() // best effort: at worst the event is delivered again, and handling it is idempotent
			}
		}
	})
	handle(ctx, m)
	close(done)
	wg.Wait()
}
