package watcher

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestUsageKeyLayout(t *testing.T) {
	for _, tc := range []struct {
		k    usageKey
		want string
	}{
		{usageKey{ownerKey{"shop", "Deployment", "web"}, "app"}, "prod.shop.Deployment.app.web"},
		// Names may hold dots: they come last.
		{usageKey{ownerKey{"shop", "StatefulSet", "db.v2"}, "postgres"}, "prod.shop.StatefulSet.postgres.db.v2"},
		{usageKey{ownerKey{"shop", "Deployment", "web"}, ownerSeries}, "prod.shop.Deployment._.web"},
	} {
		got, ok := tc.k.kvKey("prod")
		if !ok || got != tc.want {
			t.Errorf("%+v: key %q %v, want %q", tc.k, got, ok, tc.want)
			continue
		}
		back, ok := parseUsageKey("prod", got)
		if !ok || back != tc.k {
			t.Errorf("parse %q = %+v %v, want %+v", got, back, ok, tc.k)
		}
	}
	for _, bad := range []usageKey{
		{ownerKey{"shop", "Deployment", "web"}, "a.b"},
		{ownerKey{"shop", "Deployment", "web*"}, "app"},
		{ownerKey{"", "Deployment", "web"}, "app"},
	} {
		if k, ok := bad.kvKey("prod"); ok {
			t.Errorf("%+v made key %q", bad, k)
		}
	}
	for _, bad := range []string{"other.shop.Deployment.app.web", "prod.shop.Deployment.app", "prod.shop.Deployment.app.web.", "prod.shop..app.web"} {
		if k, ok := parseUsageKey("prod", bad); ok {
			t.Errorf("parsed %q as %+v", bad, k)
		}
	}
}

// defaultLimits are the defaults of watcher.warnings.
var defaultLimits = usageLimits{interval: time.Minute, memoryWindow: time.Hour, restartWindow: 24 * time.Hour, dipWindow: time.Hour}

// A series round-trips, and a full default window (one sample a minute
// over an hour of a half-gigabyte working set) is under 300 bytes.
func TestUsageSeriesEncoding(t *testing.T) {
	h := newUsageHistory(defaultLimits)
	k := usageKey{ownerKey{"shop", "Deployment", "web"}, "app"}
	for i := range 120 {
		h.addSample(k, t0.Add(time.Duration(i)*time.Minute), int64(400*mi+i*7*mi/3), 512*mi)
	}
	for i := range 5 {
		h.addEvent(k, t0.Add(time.Duration(100+i)*time.Minute), true)
	}
	s := h.owners[k.owner][k.container]
	if len(s.mem) != 61 {
		t.Fatalf("kept %d samples, want the hour's 60 and the one before", len(s.mem))
	}
	b := s.encode()
	t.Logf("a full default window: %d samples, %d restarts, %d bytes", len(s.mem), len(s.restarts), len(b))
	if len(b) > 300 {
		t.Errorf("a full window is %d bytes, want at most 300", len(b))
	}
	got, err := decodeSeries(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.limitKiB != s.limitKiB || !reflect.DeepEqual(got.mem, s.mem) || !reflect.DeepEqual(got.restarts, s.restarts) || len(got.dips) != 0 {
		t.Errorf("round trip changed the series:\n got %+v\nwant %+v", got, s)
	}
	for _, bad := range [][]byte{nil, {2}, b[:len(b)-1], append(append([]byte{}, b...), 0)} {
		if _, err := decodeSeries(bad); err == nil {
			t.Errorf("decoded %d bytes of garbage", len(bad))
		}
	}
	// A window of a week at one sample a minute is thinned to
	// maxMemSamples: a value stays small whatever the configuration.
	long := newUsageHistory(usageLimits{interval: time.Minute, memoryWindow: 7 * 24 * time.Hour, restartWindow: time.Hour, dipWindow: time.Hour})
	for i := range 14 * 24 * 60 {
		long.addSample(k, t0.Add(time.Duration(i)*time.Minute), int64(400*mi+i), 512*mi)
	}
	ls := long.owners[k.owner][k.container]
	if n := len(ls.mem); n > maxMemSamples {
		t.Errorf("a week's window keeps %d samples, want at most %d", n, maxMemSamples)
	}
	if n := len(ls.encode()); n > maxMemSamples*6 {
		t.Errorf("a week's window is %d bytes", n)
	}
}

// The write budget: each key is written at most once per usage_interval,
// only when it changed. At the defaults that is one write a minute per
// workload container with a memory limit: 10,000 of them are about 167
// writes a second of under 300 bytes (about 50 KB/s) into one bucket
// that keeps only the last value of each key.
func TestUsageWriteBudget(t *testing.T) {
	h := newUsageHistory(defaultLimits)
	const keys = 1000
	key := func(i int) usageKey { return usageKey{ownerKey{"ns", "Deployment", fmt.Sprintf("web-%d", i)}, "app"} }
	writes, bytes := 0, 0
	now := t0
	const rounds = 65
	for r := range rounds {
		now = t0.Add(time.Duration(r) * time.Minute)
		for i := range keys {
			h.addSample(key(i), now, int64(300*mi+r*mi), 512*mi)
		}
		for _, w := range h.due(now, false) {
			writes++
			bytes += len(w.value)
		}
		// A second flush within the interval writes nothing.
		if again := h.due(now.Add(30*time.Second), false); len(again) != 0 {
			t.Fatalf("round %d: %d keys written twice within an interval", r, len(again))
		}
	}
	if writes != keys*rounds {
		t.Errorf("%d writes in %d rounds of %d keys, want one per key and round", writes, rounds, keys)
	}
	perKey := bytes / writes
	t.Logf("at 10,000 keys: %d writes/s, %d bytes a write on average (%d B/s)", 10000/60, perKey, 10000/60*perKey)
	if perKey > 300 {
		t.Errorf("%d bytes a write on average, want at most 300", perKey)
	}
	// Nothing new (metrics not refreshed: the same timestamp): nothing
	// is written.
	later := now.Add(time.Minute)
	for i := range keys {
		h.addSample(key(i), now, int64(400*mi), 512*mi)
	}
	if w := h.due(later, false); len(w) != 0 {
		t.Errorf("%d keys written without a new sample", len(w))
	}
	// A failed write is retried at the next flush.
	h.addSample(key(1), later, 400*mi, 512*mi)
	w := h.due(later, false)
	if len(w) != 1 {
		t.Fatalf("%d due, want 1", len(w))
	}
	h.failed(w[0].key)
	if len(h.due(later.Add(time.Second), false)) != 1 {
		t.Error("a failed write is not retried")
	}
	// At shutdown a change within the interval is written all the same
	// (a restart recorded since the last round).
	h.addEvent(key(1), later, true)
	if w := h.due(later.Add(2*time.Second), false); len(w) != 0 {
		t.Errorf("%d written twice within an interval", len(w))
	}
	if w := h.due(later.Add(2*time.Second), true); len(w) != 1 || w[0].key != key(1) {
		t.Errorf("the final flush wrote %d keys, want key 1 alone", len(w))
	}
}
