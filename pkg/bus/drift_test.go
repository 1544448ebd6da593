package bus

import (
	"testing"
	"time"
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
