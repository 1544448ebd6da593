package planner

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/bus"
)

// An incident whose planning outlasts the consumer's ack wait is not
// handed to another replica meanwhile: keepInProgress extends the ack
// wait, which is what lets it be short (how soon the incidents of a
// planner that died are planned by another).
func TestKeepInProgressHoldsASlowIncident(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{DontListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := emb.Connect(ctx, bus.ConnectOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SLOW", Subjects: []string{"slow.>"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "planner", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "slow.1", []byte("incident")); err != nil {
		t.Fatal(err)
	}
	for _, extend := range []bool{false, true} {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		every := time.Duration(0)
		if extend {
			every = time.Second / 3
		}
		stop := keepInProgress(m, every)
		// Another replica pulls while this one plans for 3 ack waits.
		other, err := c.Next(jetstream.FetchMaxWait(3 * time.Second))
		stop()
		switch {
		case extend && err == nil:
			md, _ := other.Metadata()
			t.Fatalf("another replica got the incident (delivery %d) while it was being planned", md.NumDelivered)
		case !extend && err != nil:
			// The control: without the extension the message does go to
			// the other replica; otherwise this test proves nothing.
			t.Fatalf("without keepInProgress, the other replica got nothing after 3 ack waits: %v", err)
		case !extend:
			_ = other.Nak() // back for the extended round
		default:
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
