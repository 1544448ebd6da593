package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/bus"
)

// The tests' lease timing, short for quick tests. The renew deadline is
// how long a leader may go without a successful renewal before it steps
// down; at 1 s a stall of the test process on a loaded 2-core machine
// (the whole make test under -race) could end a healthy leadership, which
// the tests take for a bug. 2 s leaves ten renewal attempts.
const (
	testDuration = 3 * time.Second
	testDeadline = 2 * time.Second
	testRetry    = 200 * time.Millisecond
)

// server is an embedded JetStream server with a leases bucket; conn
// opens a new connection to it and the bucket through it.
type server struct {
	emb *bus.Embedded
}

func newServer(t *testing.T) *server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	emb, err := bus.StartEmbedded(ctx, bus.EmbeddedOptions{DontListen: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	s := &server{emb: emb}
	_, js := s.conn(t)
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "leases", History: 1, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *server) conn(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := s.emb.Connect(context.Background(), bus.ConnectOptions{Name: "lease-test", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func (s *server) kv(t *testing.T) (*nats.Conn, jetstream.KeyValue) {
	t.Helper()
	nc, js := s.conn(t)
	kv, err := js.KeyValue(context.Background(), "leases")
	if err != nil {
		t.Fatal(err)
	}
	return nc, kv
}

// leaders records who leads, and fails the test if two lead at once.
type leaders struct {
	t       *testing.T
	mu      sync.Mutex
	current string
	history []string
	changed chan struct{}
}

func newLeaders(t *testing.T) *leaders {
	return &leaders{t: t, changed: make(chan struct{}, 100)}
}

// lead is the function a candidate runs while it leads.
func (l *leaders) lead(name string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		l.mu.Lock()
		if l.current != "" {
			l.t.Errorf("%s leads while %s still leads", name, l.current)
		}
		l.current = name
		l.history = append(l.history, name)
		l.mu.Unlock()
		l.changed <- struct{}{}
		<-ctx.Done()
		l.mu.Lock()
		l.current = ""
		l.mu.Unlock()
		l.changed <- struct{}{}
		return ctx.Err()
	}
}

func (l *leaders) now() (string, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.current, append([]string(nil), l.history...)
}

// waitLeader waits until someone other than not leads, and returns it.
func (l *leaders) waitLeader(t *testing.T, not string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		if cur, _ := l.now(); cur != "" && cur != not {
			return cur
		}
		select {
		case <-l.changed:
		case <-deadline:
			cur, hist := l.now()
			t.Fatalf("no new leader within %s (current %q, history %v)", within, cur, hist)
		}
	}
}

type candidateRun struct {
	cancel context.CancelFunc
	done   chan error
	nc     *nats.Conn
}

func start(t *testing.T, s *server, l *leaders, name string) *candidateRun {
	t.Helper()
	nc, kv := s.kv(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := &candidateRun{cancel: cancel, done: make(chan error, 1), nc: nc}
	cfg := Config{KV: kv, Key: "watcher.prod", Holder: name, Duration: testDuration, RenewDeadline: testDeadline, RetryPeriod: testRetry,
		Logger: slog.New(slog.DiscardHandler)}
	go func() { r.done <- Run(ctx, cfg, l.lead(name)) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// TestOneLeaderAndAQuickHandOver: of three candidates exactly one leads;
// when it stops, it releases the lease and another leads within a few
// retry periods, not a whole duration.
func TestOneLeaderAndAQuickHandOver(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	l := newLeaders(t)
	runs := map[string]*candidateRun{}
	for _, n := range []string{"a", "b", "c"} {
		runs[n] = start(t, s, l, n)
	}
	first := l.waitLeader(t, "", 5*time.Second)
	time.Sleep(3 * testDuration) // renewals keep it: no takeover
	if cur, hist := l.now(); cur != first || len(hist) != 1 {
		t.Fatalf("leadership moved while the leader renewed: current %q, history %v", cur, hist)
	}
	t0 := time.Now()
	runs[first].cancel()
	if err := <-runs[first].done; err != nil {
		t.Errorf("Run of the stopped leader: %v", err)
	}
	runs[first].done <- nil // for the cleanup
	second := l.waitLeader(t, first, 5*time.Second)
	if took := time.Since(t0); took >= testDuration {
		t.Errorf("hand-over after a release took %s, want less than the lease duration %s", took, testDuration)
	}
	t.Logf("hand-over %s -> %s in %s", first, second, time.Since(t0).Round(time.Millisecond))
}

// TestACrashedLeaderIsReplacedAfterItStopped: a leader cut off from the
// bus cannot renew; it stops leading after the renew deadline, and
// another candidate takes over only after the lease duration, so the two
// never lead at once (the leaders recorder fails the test otherwise).
func TestACrashedLeaderIsReplacedAfterItStopped(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	l := newLeaders(t)
	runs := map[string]*candidateRun{}
	for _, n := range []string{"a", "b"} {
		runs[n] = start(t, s, l, n)
	}
	first := l.waitLeader(t, "", 5*time.Second)
	t0 := time.Now()
	runs[first].nc.Close() // no renewal, no release
	second := l.waitLeader(t, first, 10*time.Second)
	if took := time.Since(t0); took < testDuration-testRetry {
		t.Errorf("took over %s after the leader was cut off, before the lease duration %s", took, testDuration)
	}
	_, hist := l.now()
	if len(hist) != 2 || hist[1] != second {
		t.Errorf("history %v", hist)
	}
}

// TestLeadErrorEndsRun: an error from the led function ends Run with it
// and releases the lease.
func TestLeadErrorEndsRun(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	_, kv := s.kv(t)
	boom := errors.New("boom")
	cfg := Config{KV: kv, Key: "notifier.prod", Holder: "x", Duration: testDuration, RenewDeadline: testDeadline, RetryPeriod: testRetry,
		Logger: slog.New(slog.DiscardHandler)}
	err := Run(context.Background(), cfg, func(context.Context) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Run: %v, want the lead error", err)
	}
	if _, err := kv.Get(context.Background(), "notifier.prod"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("lease after Run ended: %v, want released", err)
	}
}

func TestInvalidConfigNamesWhatIsWrong(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	_, kv := s.kv(t)
	for _, c := range []Config{
		{Key: "k", Holder: "h"},
		{KV: kv, Holder: "h"},
		{KV: kv, Key: "k"},
		{KV: kv, Key: "k", Holder: "h", Duration: time.Second, RenewDeadline: 2 * time.Second},
		{KV: kv, Key: "k", Holder: "h", RetryPeriod: time.Minute},
	} {
		err := Run(context.Background(), c, func(context.Context) error { return nil })
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", fmt.Sprintf("%+v", c), err)
		}
	}
}

// TestARestartedHolderTakesItsLeaseBackAtOnce: a record left by this
// holder (a crash, no release) is taken back without waiting for the
// lease duration; another holder's would not be.
func TestARestartedHolderTakesItsLeaseBackAtOnce(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	_, kv := s.kv(t)
	rec, _ := json.Marshal(Record{Holder: "pod-a/1"})
	if _, err := kv.Create(context.Background(), "watcher.prod", rec); err != nil {
		t.Fatal(err)
	}
	started := make(chan time.Time, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := Config{KV: kv, Key: "watcher.prod", Holder: "pod-a/1", Duration: time.Hour, RenewDeadline: 30 * time.Minute, RetryPeriod: testRetry,
		Logger: slog.New(slog.DiscardHandler)}
	t0 := time.Now()
	go func() {
		_ = Run(ctx, cfg, func(ctx context.Context) error { started <- time.Now(); <-ctx.Done(); return nil })
	}()
	select {
	case at := <-started:
		if d := at.Sub(t0); d > 5*time.Second {
			t.Errorf("took its own lease back after %s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not take its own lease back")
	}
	// Another holder waits (the lease duration is an hour here).
	other := cfg
	other.Holder = "pod-b/1"
	octx, ocancel := context.WithTimeout(context.Background(), 3*testRetry)
	defer ocancel()
	led := false
	_ = Run(octx, other, func(context.Context) error { led = true; return nil })
	if led {
		t.Error("another holder took a live lease")
	}
}

// lostReplyKV applies every update but, when told, answers one of them
// with a timeout, as a client whose reply did not arrive in time sees it.
type lostReplyKV struct {
	jetstream.KeyValue
	mu       sync.Mutex
	loseNext bool
	lost     int
}

func (k *lostReplyKV) Update(ctx context.Context, key string, value []byte, last uint64) (uint64, error) {
	rev, err := k.KeyValue.Update(ctx, key, value, last)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil && k.loseNext {
		k.loseNext = false
		k.lost++
		return 0, context.DeadlineExceeded
	}
	return rev, err
}

// TestARenewalWhoseReplyWasLostKeepsTheLease: a renewal the server
// applied but whose reply the leader never got moves the record's
// revision; the next renewal must find its own write there and go on
// leading, not take the moved revision for another holder and step down.
func TestARenewalWhoseReplyWasLostKeepsTheLease(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	l := newLeaders(t)
	_, inner := s.kv(t)
	kv := &lostReplyKV{KeyValue: inner}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := Config{KV: kv, Key: "watcher.prod", Holder: "a", Duration: testDuration, RenewDeadline: testDeadline, RetryPeriod: testRetry,
		Logger: slog.New(slog.DiscardHandler)}
	go func() { done <- Run(ctx, cfg, l.lead("a")) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	l.waitLeader(t, "", 5*time.Second)
	for range 3 {
		kv.mu.Lock()
		kv.loseNext = true
		kv.mu.Unlock()
		time.Sleep(3 * testRetry)
	}
	kv.mu.Lock()
	lostReplies := kv.lost
	kv.mu.Unlock()
	if lostReplies != 3 {
		t.Fatalf("%d renewal replies lost, want 3 (the leader stopped renewing?)", lostReplies)
	}
	if cur, hist := l.now(); cur != "a" || len(hist) != 1 {
		t.Errorf("after renewals whose replies were lost: current %q, history %v; want a leading since it started", cur, hist)
	}
	e, err := inner.Get(context.Background(), "watcher.prod")
	if err != nil {
		t.Fatal(err)
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil || r.Holder != "a" || time.Since(r.RenewedAt) > testDeadline {
		t.Errorf("lease record %s (err %v), want a's, renewed within the renew deadline", e.Value(), err)
	}
}
