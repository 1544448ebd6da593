package notifier

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// An event whose handling outlasts the consumer's ack wait (a slow Slack
// call) is not delivered again meanwhile: consume extends the ack wait
// while the handler runs, which is what lets the ack wait be short
// enough for a quick hand-over after the active notifier dies.
func TestAHandlerSlowerThanTheAckWaitIsNotRedelivered(t *testing.T) {
	_, js := startBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SLOW", Subjects: []string{"slow.>"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.CreateOrUpdateConsumer(ctx, consumerConfig("slow", "slow handler", []string{"slow.>"}, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "slow.1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	handled := make(chan uint64, 10)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- consume(cctx, c, func(_ context.Context, m jetstream.Msg) {
			md, _ := m.Metadata()
			handled <- md.NumDelivered
			time.Sleep(2500 * time.Millisecond) // 2.5 ack waits
			_ = m.Ack()
		})
	}()
	select {
	case n := <-handled:
		if n != 1 {
			t.Fatalf("first handling is delivery %d", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not handled within 10s")
	}
	// Another replica pulls meanwhile (one that took the lease over, or
	// a second process during a rollout): it must get nothing.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		m, err := c.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if err == nil {
			md, _ := m.Metadata()
			t.Fatalf("another consumer got the event (delivery %d) while its first handling ran", md.NumDelivered)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-handled:
		t.Fatalf("the event was handled again (delivery %d) while its first handling ran", n)
	default:
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 || info.NumAckPending != 0 {
		t.Fatalf("consumer: %d redelivered, %d pending; want 0 and 0", info.NumRedelivered, info.NumAckPending)
	}
}
