package bus

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/events"
)

// TestProvisionAcceptsBucketsMadeByCreateKeyValue: a bus provisioned by
// an earlier kaar (buckets made with nats.go's CreateKeyValue, the
// notifier's bucket included) is not "repaired": BucketStream is the
// stream CreateKeyValue makes.
func TestProvisionAcceptsBucketsMadeByCreateKeyValue(t *testing.T) {
	_, _, js := startJS(t)
	ctx := testCtx(t, 30*time.Second)
	cfg := Config{Clusters: []string{testCluster}, Notify: &NotifyConfig{Cluster: testCluster, StreamMaxAge: time.Hour, StateMaxAge: 30 * time.Second}}
	buckets, err := Buckets(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range buckets {
		if _, err := js.CreateKeyValue(ctx, b); err != nil {
			t.Fatalf("CreateKeyValue %s: %v", b.Bucket, err)
		}
	}
	sum, err := Provision(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range sum.Changes {
		if c.Kind == "kv" {
			t.Errorf("bucket made by CreateKeyValue changed: %s", c)
		}
	}
	// And what Provision made, CreateKeyValue accepts as the same bucket.
	for _, b := range buckets {
		if _, err := js.CreateOrUpdateKeyValue(ctx, b); err != nil {
			t.Errorf("CreateOrUpdateKeyValue %s after Provision: %v", b.Bucket, err)
		}
	}
	if sum, err := Provision(ctx, js, cfg); err != nil || sum.Changed() {
		t.Fatalf("after CreateOrUpdateKeyValue: %s %v", sum, err)
	}
}

// TestProvisionDeletesRelayConsumers: a consumer on a kaar stream that
// delivers onto another subject (here the plans bucket onto a subject of
// the audit trail) is deleted by provisioning, which says so; a key watch
// (delivering to an inbox) is left alone.
func TestProvisionDeletesRelayConsumers(t *testing.T) {
	_, _, js := startJS(t)
	ctx := testCtx(t, 30*time.Second)
	cfg := Config{Clusters: []string{testCluster}}
	provision(t, js, cfg)
	st, err := js.Stream(ctx, "KV_"+events.BucketPlans)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Name: "relay", DeliverSubject: "kaar." + testCluster + ".audit.step_started",
		AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, events.BucketPlans)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	sum := provision(t, js, cfg)
	want := "deleted consumer KV_kaar_plans/relay: it delivered KV_kaar_plans to kaar." + testCluster + ".audit.step_started (a push consumer may deliver only to an inbox)"
	if len(sum.Changes) != 1 || sum.Changes[0].String() != want {
		t.Fatalf("changes: %s, want %s", sum, want)
	}
	if _, err := st.Consumer(ctx, "relay"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("relay consumer: %v", err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Consumers != 1 {
		t.Fatalf("the key watch's consumer should remain: %+v %v", info, err)
	}
}

// TestRelayConsumerStopsAtProvisioning: what a relay consumer delivers
// onto a subject of another stream (the plans bucket onto the audit trail)
// is stored there once anything subscribes to that subject (no kaar role
// may subscribe to stream subjects, an operator's "nats sub" might), so
// a role allowed to create consumers could write records it may not
// publish. Provisioning deletes the relay, and nothing more arrives.
func TestRelayConsumerStopsAtProvisioning(t *testing.T) {
	_, nc, js := startJS(t)
	ctx := testCtx(t, 30*time.Second)
	cfg := Config{Clusters: []string{testCluster}}
	provision(t, js, cfg)
	st, err := js.Stream(ctx, "KV_"+events.BucketPlans)
	if err != nil {
		t.Fatal(err)
	}
	subject := "kaar." + testCluster + ".audit.step_started"
	if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "relay", DeliverSubject: subject, AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, events.BucketPlans)
	if err != nil {
		t.Fatal(err)
	}
	audit, err := js.Stream(ctx, events.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	auditMsgs := func() uint64 {
		t.Helper()
		info, err := audit.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	if _, err := kv.Put(ctx, "forged-1", []byte(`{"kind":"step_started"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("the relay delivered nothing: %v", err)
	}
	// The stream stores the relayed delivery asynchronously to the
	// subscriber's copy: give it a moment.
	for deadline := time.Now().Add(5 * time.Second); auditMsgs() == 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if n := auditMsgs(); n != 1 {
		t.Fatalf("AUDIT holds %d messages; the relay's delivery was expected there (if NATS stops storing relayed deliveries, say so in drift.go)", n)
	}
	sum := provision(t, js, cfg)
	if len(sum.Changes) != 1 || sum.Changes[0].Action != "deleted" {
		t.Fatalf("provisioning: %s", sum)
	}
	if _, err := kv.Put(ctx, "forged-2", []byte(`{"kind":"step_started"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(time.Second); err == nil {
		t.Fatal("the relay still delivers after provisioning")
	}
	if n := auditMsgs(); n != 1 {
		t.Fatalf("AUDIT holds %d messages after provisioning", n)
	}
}
