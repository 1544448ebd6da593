package bus

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const testCluster = "test"

// testLogger sends server and client logs to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// startJS starts an in-process JetStream server for one test and returns a
// JetStream client; both are stopped by t.Cleanup.
func startJS(t *testing.T) (*Embedded, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbeddedOptions{DontListen: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := e.Connect(ctx, ConnectOptions{Name: t.Name()})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return e, nc, js
}

func provision(t *testing.T, js jetstream.JetStream, cfg Config) Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sum, err := Provision(ctx, js, cfg)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return sum
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newPlan returns a valid, sealed plan.
func newPlan(t *testing.T) events.Plan {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	target := events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web", APIVersion: "apps/v1"}
	p := events.Plan{
		ID:                    uuid.Must(uuid.NewV7()).String(),
		Cluster:               testCluster,
		Namespace:             "shop",
		Target:                target,
		TargetResourceVersion: "100",
		TargetGeneration:      3,
		Type:                  events.IssueCrashLoopBackOff,
		Summary:               "roll back web to revision 2",
		Steps: []events.Step{{
			Index: 0, Action: events.ActionRollback, Title: "Roll back deployment/web",
			Target: target, Risk: events.RiskMedium, Mutating: true,
			Params: map[string]string{events.ParamRevision: "2"},
		}},
		Risk:      events.RiskMedium,
		State:     events.PlanProposed,
		CreatedAt: now,
		ExpiresAt: now.Add(time.Minute),
	}
	p.Seal()
	if err := p.Validate(); err != nil {
		t.Fatalf("test plan invalid: %v", err)
	}
	return p
}

func TestProvisionTwiceIsNoOp(t *testing.T) {
	_, _, js := startJS(t)
	cfg := Config{Clusters: []string{testCluster, "other"}, Storage: jetstream.MemoryStorage}
	first := provision(t, js, cfg)
	// 4 streams, 6 buckets, 3 consumers per cluster.
	if len(first.Changes) != 4+6+6 {
		t.Fatalf("first Provision made %d changes: %s", len(first.Changes), first)
	}
	for _, c := range first.Changes {
		if c.Action != "created" {
			t.Errorf("first Provision: %s", c)
		}
	}
	second := provision(t, js, cfg)
	if second.Changed() {
		t.Fatalf("second Provision changed things: %s", second)
	}

	ctx := testCtx(t, 5*time.Second)
	st, err := js.Stream(ctx, events.StreamApprovals)
	if err != nil {
		t.Fatal(err)
	}
	if st.CachedInfo().Config.Retention != jetstream.WorkQueuePolicy {
		t.Errorf("APPROVALS retention %v", st.CachedInfo().Config.Retention)
	}
	audit, err := js.Stream(ctx, events.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	if c := audit.CachedInfo().Config; c.Storage != jetstream.FileStorage || c.MaxAge != DefaultAuditRetention {
		t.Errorf("AUDIT storage %v max age %v", c.Storage, c.MaxAge)
	}
	plans, err := js.Stream(ctx, "KV_"+events.BucketPlans)
	if err != nil {
		t.Fatal(err)
	}
	if c := plans.CachedInfo().Config; !c.AllowMsgTTL || c.SubjectDeleteMarkerTTL < time.Second || c.MaxMsgsPerSubject != 1 {
		t.Errorf("kaar_plans: allow ttl %t, marker ttl %s, history %d", c.AllowMsgTTL, c.SubjectDeleteMarkerTTL, c.MaxMsgsPerSubject)
	}
	name, _ := events.ExecutorConsumer("other")
	if _, err := st.Consumer(ctx, name); err != nil {
		t.Errorf("consumer %s: %v", name, err)
	}
}

func TestProvisionAppliesChangedDeclaration(t *testing.T) {
	_, _, js := startJS(t)
	cfg := Config{Clusters: []string{testCluster}, Storage: jetstream.MemoryStorage}
	provision(t, js, cfg)

	// A new retention and a new cluster.
	cfg.IssueRetention = 24 * time.Hour
	cfg.Clusters = append(cfg.Clusters, "second")
	sum := provision(t, js, cfg)
	want := map[string]bool{
		"updated stream ISSUES: max_age 168h0m0s -> 24h0m0s": true,
		"created consumer ISSUES/planner-second":             true,
		"created consumer APPROVALS/executor-second":         true,
		"created consumer PLAN_EVENTS/autoapprove-second":    true,
	}
	if len(sum.Changes) != len(want) {
		t.Fatalf("changes: %s", sum)
	}
	for _, c := range sum.Changes {
		if !want[c.String()] {
			t.Errorf("unexpected change %q", c)
		}
	}
	ctx := testCtx(t, 5*time.Second)
	st, err := js.Stream(ctx, events.StreamIssues)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 24*time.Hour {
		t.Fatalf("ISSUES max age %s after update", got)
	}

	// A consumer changed behind kaar's back is put back.
	name, _ := events.PlannerConsumer(testCluster)
	filter, _ := events.IssueFilter(testCluster)
	if _, err := st.UpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 5 * time.Second, FilterSubject: filter, MaxDeliver: 1, Description: "edited"}); err != nil {
		t.Fatal(err)
	}
	sum = provision(t, js, cfg)
	if len(sum.Changes) != 1 || sum.Changes[0].Kind != "consumer" || sum.Changes[0].Action != "updated" {
		t.Fatalf("changes: %s", sum)
	}
	c, err := st.Consumer(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config; got.AckWait != PlannerAckWait || got.MaxDeliver != PlannerMaxDeliver {
		t.Fatalf("consumer not restored: ack wait %s max deliver %d", got.AckWait, got.MaxDeliver)
	}

	// The plans bucket's marker TTL drifted: restored.
	if _, err := js.UpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.BucketPlans, History: 1,
		LimitMarkerTTL: 5 * time.Second, Storage: jetstream.MemoryStorage, Description: "kaar plans; per-key TTL = approval window"}); err != nil {
		t.Fatal(err)
	}
	sum = provision(t, js, cfg)
	if len(sum.Changes) != 1 || sum.Changes[0].String() != "updated kv kaar_plans: subject_delete_marker_ttl 5s -> 15m0s" {
		t.Fatalf("changes: %s", sum)
	}
	if sum = provision(t, js, cfg); sum.Changed() {
		t.Fatalf("not idempotent after update: %s", sum)
	}
}

func TestProvisionRejectsBadConfig(t *testing.T) {
	_, _, js := startJS(t)
	ctx := testCtx(t, 5*time.Second)
	if _, err := Provision(ctx, js, Config{}); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("no clusters: %v", err)
	}
	if _, err := Provision(ctx, js, Config{Clusters: []string{"Bad.Name"}}); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("bad cluster: %v", err)
	}
	for _, r := range []int{-1, 6} {
		if _, err := Provision(ctx, js, Config{Clusters: []string{testCluster}, Replicas: r}); !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), "replicas") {
			t.Errorf("replicas %d: %v", r, err)
		}
	}
	// R3 needs a cluster: a single server says so, and nothing is left
	// half-declared at R1.
	_, err := Provision(ctx, js, Config{Clusters: []string{testCluster}, Replicas: 3})
	if err == nil || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("replicas 3 on one server: %v", err)
	}
	t.Logf("replicas 3 on one server: %v", err)
	if names := js.StreamNames(ctx); names.Err() == nil {
		for n := range names.Name() {
			t.Errorf("stream %s declared by a failed R3 provisioning", n)
		}
	}
}

func openStore(t *testing.T) (*PlanStore, jetstream.JetStream) {
	t.Helper()
	_, _, js := startJS(t)
	provision(t, js, Config{Clusters: []string{testCluster}, Storage: jetstream.MemoryStorage})
	s, err := OpenPlanStore(testCtx(t, 5*time.Second), js)
	if err != nil {
		t.Fatal(err)
	}
	return s, js
}

// next waits for the next change of the watch.
func next(t *testing.T, ch <-chan PlanChange, within time.Duration) PlanChange {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return c
	case <-time.After(within):
		t.Fatalf("no plan change within %s", within)
	}
	return PlanChange{}
}

func TestPlanKeyExpiresAndWatcherSeesIt(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t, 20*time.Second)
	changes, err := s.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := newPlan(t)
	start := time.Now()
	if _, err := s.Create(ctx, p, 1100*time.Millisecond); err != nil { // rounds up to 2s
		t.Fatal(err)
	}
	if c := next(t, changes, 5*time.Second); c.Op != PlanPut || c.PlanID != p.ID || c.Err != nil || c.Plan.Digest != p.Digest {
		t.Fatalf("first change %+v", c)
	}
	c := next(t, changes, 10*time.Second)
	if c.Op != PlanExpired || c.PlanID != p.ID {
		t.Fatalf("second change %+v, want expiry of %s", c, p.ID)
	}
	if waited := time.Since(start); waited < 2*time.Second {
		t.Fatalf("expired after %s, before its 2s (rounded up) TTL", waited)
	}
	if _, _, err := s.Get(ctx, p.ID); !errors.Is(err, ErrPlanNotFound) {
		t.Fatalf("Get after expiry: %v", err)
	}
	if _, err := s.Update(ctx, p, 1); !errors.Is(err, ErrPlanNotFound) {
		t.Fatalf("claim after expiry: %v, want ErrPlanNotFound", err)
	}
	if list, err := s.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("List after expiry: %v %v", list, err)
	}
}

func TestPlanStoreCreateGetUpdate(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t, 10*time.Second)
	p := newPlan(t)
	rev, err := s.Create(ctx, p, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, p, time.Minute); !errors.Is(err, ErrPlanExists) {
		t.Fatalf("second Create: %v, want ErrPlanExists", err)
	}
	got, grev, err := s.Get(ctx, p.ID)
	if err != nil || grev != rev || got.Digest != p.Digest || got.State != events.PlanProposed {
		t.Fatalf("Get: %+v rev %d (want %d) %v", got.ID, grev, rev, err)
	}

	// Two executors claim with the same revision: exactly one wins.
	claim := got
	claim.State = events.PlanExecuting
	rev2, err := s.Update(ctx, claim, grev)
	if err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if _, err := s.Update(ctx, claim, grev); !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("stale claim: %v, want ErrRevisionMismatch", err)
	}
	done := claim
	done.State = events.PlanSucceeded
	if _, err := s.Update(ctx, done, rev2); err != nil {
		t.Fatalf("update at current revision: %v", err)
	}

	// Invalid plans never reach the bucket.
	bad := newPlan(t)
	bad.Summary = ""
	if _, err := s.Create(ctx, bad, time.Minute); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Create invalid: %v", err)
	}
	if _, err := s.Create(ctx, newPlan(t), 0); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Create without ttl: %v", err)
	}
	if _, _, err := s.Get(ctx, uuid.NewString()); !errors.Is(err, ErrPlanNotFound) {
		t.Fatalf("Get unknown: %v", err)
	}
	if _, _, err := s.Get(ctx, "not-a-uuid"); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Get bad id: %v", err)
	}
	if _, err := s.Update(ctx, newPlan(t), 1); !errors.Is(err, ErrPlanNotFound) {
		t.Fatalf("Update unknown: %v", err)
	}

	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].Plan.State != events.PlanSucceeded {
		t.Fatalf("List: %+v %v", list, err)
	}
}

// TestUpdateClearsTTL: the executor's claim (an Update) makes the plan
// outlive its approval window, while an unclaimed plan created at the same
// time expires.
func TestUpdateClearsTTL(t *testing.T) {
	s, _ := openStore(t)
	ctx := testCtx(t, 20*time.Second)
	changes, err := s.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	claimed, control := newPlan(t), newPlan(t)
	rev, err := s.Create(ctx, claimed, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, control, time.Second); err != nil {
		t.Fatal(err)
	}
	claimed.State = events.PlanExecuting
	if _, err := s.Update(ctx, claimed, rev); err != nil {
		t.Fatalf("claim: %v", err)
	}
	// Wait for the control plan to expire; the claimed one must not.
	deadline := time.After(10 * time.Second)
	for expired := false; !expired; {
		select {
		case c := <-changes:
			if c.Op == PlanExpired && c.PlanID == claimed.ID {
				t.Fatal("claimed plan expired")
			}
			expired = c.Op == PlanExpired && c.PlanID == control.ID
		case <-deadline:
			t.Fatal("control plan never expired")
		}
	}
	// One more TTL later, the claimed plan is still there.
	select {
	case c := <-changes:
		t.Fatalf("unexpected change %+v", c)
	case <-time.After(1500 * time.Millisecond):
	}
	got, _, err := s.Get(ctx, claimed.ID)
	if err != nil || got.State != events.PlanExecuting {
		t.Fatalf("claimed plan after its window: %+v %v", got.State, err)
	}
}

func TestTTLSeconds(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		time.Nanosecond:         time.Second,
		500 * time.Millisecond:  time.Second,
		time.Second:             time.Second,
		1001 * time.Millisecond: 2 * time.Second,
		90 * time.Second:        90 * time.Second,
		15*time.Minute + 1:      15*time.Minute + time.Second,
	} {
		if got := TTLSeconds(in); got != want {
			t.Errorf("TTLSeconds(%s) = %s, want %s", in, got, want)
		}
	}
}

func decisionEnvelope(t *testing.T, p events.Plan) events.Envelope {
	t.Helper()
	d := events.Decision{PlanID: p.ID, Digest: p.Digest, Decision: events.DecisionApproved,
		DecidedBy: "alice", Via: events.ViaCLI, At: time.Now().UTC()}
	env, err := events.New(d.Decision.EventType(), events.SourceCLI, testCluster, p.ID, d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestPublishDropsDuplicateMsgID(t *testing.T) {
	_, _, js := startJS(t)
	provision(t, js, Config{Clusters: []string{testCluster}, Storage: jetstream.MemoryStorage})
	ctx := testCtx(t, 10*time.Second)

	in := events.Incident{Cluster: testCluster, Namespace: "shop", Owner: events.ObjectRef{Kind: "Deployment", Name: "web"},
		Container: "app", Type: events.IssueCrashLoopBackOff, Reason: "exit_code_1", PodCount: 1,
		FirstSeen: time.Now().UTC(), LastSeen: time.Now().UTC(), Count: 1, Severity: events.SeverityHigh}
	in.ID = events.IncidentID(in.Cluster, in.Namespace, in.Owner.Kind, in.Owner.Name, in.Container, in.Type)
	ev := events.IncidentEvent{Transition: events.TransitionDetected, Incident: in, ObservedAt: time.Now().UTC(), Observation: 1}
	subject, err := events.IssueSubject(testCluster, in.Namespace, in.Type)
	if err != nil {
		t.Fatal(err)
	}
	msgID := events.IncidentMsgID(in.ID, ev.Observation)
	for i, wantDup := range []bool{false, true} {
		// A restarted watcher builds a new envelope (new id, new time) for
		// the same observation: still one message.
		env, err := events.New(ev.Transition.EventType(), events.SourceWatcher, testCluster, in.ID, ev)
		if err != nil {
			t.Fatal(err)
		}
		dup, err := Publish(ctx, js, subject, env, msgID)
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if dup != wantDup {
			t.Fatalf("publish %d: duplicate = %t, want %t", i, dup, wantDup)
		}
	}
	st, err := js.Stream(ctx, events.StreamIssues)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("ISSUES holds %d messages, want 1", info.State.Msgs)
	}
	raw, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get(HeaderContentType) != events.ContentTypeCloudEvents || raw.Header.Get(HeaderEventType) != events.TypeIncidentDetected {
		t.Fatalf("headers %v", raw.Header)
	}
	env, err := events.Decode(raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := events.DecodeData[events.IncidentEvent](env); err != nil || got.Incident.ID != in.ID {
		t.Fatalf("stored event: %+v %v", got.Incident.ID, err)
	}

	// Misuse is refused before anything is sent.
	env, _ = events.New(ev.Transition.EventType(), events.SourceWatcher, testCluster, in.ID, ev)
	if _, err := Publish(ctx, js, subject, env, ""); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("empty msg id: %v", err)
	}
	if _, err := Publish(ctx, js, "kaar.othercluster.issue.shop.CrashLoopBackOff", env, "x"); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("subject of another cluster: %v", err)
	}
	env.SpecVersion = "0.3"
	if _, err := Publish(ctx, js, subject, env, "y"); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("invalid envelope: %v", err)
	}
}

func TestApprovalConsumedOnceByDurableConsumer(t *testing.T) {
	_, _, js := startJS(t)
	provision(t, js, Config{Clusters: []string{testCluster}, Storage: jetstream.MemoryStorage})
	ctx := testCtx(t, 15*time.Second)

	p := newPlan(t)
	subject, err := events.ApprovalSubject(testCluster, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	msgID := events.DecisionMsgID(p.ID, p.Digest, events.DecisionApproved)
	// The same approval clicked twice (e.g. MCP and Slack) is one message.
	for i := 0; i < 2; i++ {
		if dup, err := Publish(ctx, js, subject, decisionEnvelope(t, p), msgID); err != nil || dup != (i == 1) {
			t.Fatalf("publish %d: dup=%t err=%v", i, dup, err)
		}
	}

	name, _ := events.ExecutorConsumer(testCluster)
	// Two executor instances bound to the same durable consumer.
	var consumers []jetstream.Consumer
	for i := 0; i < 2; i++ {
		c, err := js.Consumer(ctx, events.StreamApprovals, name)
		if err != nil {
			t.Fatal(err)
		}
		consumers = append(consumers, c)
	}
	var got int
	for _, c := range consumers {
		batch, err := c.Fetch(10, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			got++
			env, err := events.Decode(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			d, err := events.DecodeData[events.Decision](env)
			if err != nil || d.PlanID != p.ID || d.Digest != p.Digest {
				t.Fatalf("decision %+v %v", d, err)
			}
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatalf("ack: %v", err)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatal(err)
		}
	}
	if got != 1 {
		t.Fatalf("approval delivered %d times, want once", got)
	}
	st, err := js.Stream(ctx, events.StreamApprovals)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("work queue still holds %d messages after the ack", info.State.Msgs)
	}
	// A second consumer on the same cluster's approvals is refused by the
	// work queue: there is one executor consumer per cluster.
	filter, _ := events.ApprovalFilter(testCluster)
	if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "rogue", AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubject: filter}); err == nil {
		t.Fatal("overlapping work-queue consumer was accepted")
	}
}

func TestEmbeddedListensAndConnectOverTCP(t *testing.T) {
	ctx := testCtx(t, 15*time.Second)
	e, err := StartEmbedded(ctx, EmbeddedOptions{Port: RandomPort, Logger: testLogger(t), Credentials: testCreds(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	nc, err := Connect(ctx, e.ClientURL(), ConnectOptions{Name: "tcp-client", Logger: testLogger(t), NkeyFile: e.Credentials().SeedFile(RoleProvisioner), InboxPrefix: RoleProvisioner.InboxPrefix()})
	if err != nil {
		t.Fatalf("Connect %s: %v", e.ClientURL(), err)
	}
	defer nc.Close()
	if !nc.IsConnected() || nc.ConnectedUrl() == "" {
		t.Fatal("not connected")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream over TCP: %v", err)
	}
}

func TestEmbeddedShutdownRemovesTempStore(t *testing.T) {
	ctx := testCtx(t, 15*time.Second)
	e, err := StartEmbedded(ctx, EmbeddedOptions{DontListen: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := e.tempDir
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("temp store %s: %v", dir, err)
	}
	e.Shutdown()
	e.Shutdown() // idempotent
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temp store %s still there: %v", dir, err)
	}
}

func TestConnectGivesUpWithContext(t *testing.T) {
	// A server that was started and stopped leaves a port nobody listens on.
	e, err := StartEmbedded(testCtx(t, 10*time.Second), EmbeddedOptions{Port: RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	url := e.ClientURL()
	e.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	nc, err := Connect(ctx, url, ConnectOptions{Name: "nobody-home", Logger: testLogger(t)})
	if err == nil {
		nc.Close()
		t.Fatal("connected to a stopped server")
	}
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %s", err, time.Since(start))
	}
}

func TestWatchStopsWithContext(t *testing.T) {
	s, _ := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	changes, err := s.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-changes:
		if ok {
			t.Fatal("change after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch channel not closed after cancel")
	}
}
