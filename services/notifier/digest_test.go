package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/nats-io/nats.go"
)

func TestDigestPeriodStart(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		name  string
		d     DigestConfig
		at    string
		start string
	}{
		{"daily, after the hour", DigestConfig{Every: 24 * time.Hour, At: 9 * time.Hour}, "2026-12-07T09:00:00Z", "2026-12-07T09:00:00Z"},
		{"daily, before the hour: yesterday's", DigestConfig{Every: 24 * time.Hour, At: 9 * time.Hour}, "2026-12-07T08:59:59Z", "2026-12-06T09:00:00Z"},
		{"daily in Berlin (UTC+1 in winter)", DigestConfig{Every: 24 * time.Hour, At: 9 * time.Hour, Location: berlin}, "2026-12-07T08:30:00Z", "2026-12-07T08:00:00Z"},
		{"daily in Berlin across the spring change: still 09:00 local", DigestConfig{Every: 24 * time.Hour, At: 9 * time.Hour, Location: berlin}, "2026-03-29T10:00:00Z", "2026-03-29T07:00:00Z"},
		{"weekly falls on Mondays", DigestConfig{Every: 7 * 24 * time.Hour, At: 8 * time.Hour}, "2026-12-10T12:00:00Z", "2026-12-07T08:00:00Z"},
		{"weekly, Monday before the hour: the week before", DigestConfig{Every: 7 * 24 * time.Hour, At: 8 * time.Hour}, "2026-12-07T07:00:00Z", "2026-11-30T08:00:00Z"},
		{"every 6h at 00:30", DigestConfig{Every: 6 * time.Hour, At: 30 * time.Minute}, "2026-12-07T13:10:00Z", "2026-12-07T12:30:00Z"},
		{"every 6h at 00:30, before the first slot", DigestConfig{Every: 6 * time.Hour, At: 30 * time.Minute}, "2026-12-07T00:10:00Z", "2026-12-06T18:30:00Z"},
		{"hourly at :15", DigestConfig{Every: time.Hour, At: 15 * time.Minute}, "2026-12-07T13:14:59Z", "2026-12-07T12:15:00Z"},
	} {
		if got := c.d.periodStart(utc(c.at)); !got.Equal(utc(c.start)) {
			t.Errorf("%s: period of %s starts %s, want %s", c.name, c.at, got.UTC().Format(time.RFC3339), c.start)
		}
	}
}

// warningIncident is a warning of Deployment shop/<name>.
func warningIncident(name string, typ events.IssueType, ev *events.WarningEvidence, msg string) events.Incident {
	now := time.Now().UTC()
	in := events.Incident{Cluster: testCluster, Namespace: "shop", Owner: events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: name},
		Container: "app", Type: typ, Reason: "projected_oom", Message: msg, Pods: []string{name + "-1"}, PodCount: 1,
		FirstSeen: now.Add(-time.Hour), LastSeen: now, Count: 1, Severity: events.SeverityWarning, Warning: ev}
	in.ID = events.IncidentID(in.Cluster, in.Namespace, in.Owner.Kind, in.Owner.Name, in.Container, in.Type)
	return in
}

func memoryEvidence(crosses time.Time) *events.WarningEvidence {
	return &events.WarningEvidence{Forecast: &events.Forecast{Metric: "memory_working_set", Unit: events.UnitBytes, Current: 230 << 20,
		Limit: 256 << 20, SlopePerHour: 4 << 20, CrossesAt: crosses, Confidence: 0.9, WindowSeconds: 7200, Samples: 24}}
}

func TestDigestIsWorstFirstCappedAndInert(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	var open []events.Incident
	for i, name := range []string{"a", "b", "c", "d", "e"} {
		open = append(open, warningIncident(name, events.IssueMissingProbes, nil, "no readiness probe"))
		open[i].FirstSeen = now.Add(-time.Duration(i+1) * time.Hour)
	}
	late := warningIncident("late", events.IssueMemoryNearLimit, memoryEvidence(now.Add(6*time.Hour)), "grows")
	soon := warningIncident("soon", events.IssueMemoryNearLimit, memoryEvidence(now.Add(time.Hour)), "<!channel> *grows* <https://evil.example|click>")
	quota := warningIncident("q", events.IssueQuotaNearLimit, &events.WarningEvidence{Measurements: []events.Measurement{
		{Name: "requests.memory", Value: 97, Limit: 100, Unit: events.UnitBytes}}}, "97% used")
	open = append(open, late, quota, soon)
	d := buildDigest(testCluster, now, open, 4)
	var got []string
	for _, w := range d.Warnings {
		got = append(got, w.Owner.Name)
	}
	// Soonest crossing first, then the fullest quota, then the oldest.
	if want := []string{"soon", "late", "q", "e"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if d.Total != 8 || d.More != 4 || d.Counts[events.IssueMissingProbes] != 5 || d.Counts[events.IssueMemoryNearLimit] != 2 {
		t.Fatalf("digest %+v", d)
	}
	text, blocks := renderDigest(d)
	if text != "8 open warnings in cluster c1: 2 MemoryNearLimit, 1 QuotaNearLimit, 5 MissingProbes" {
		t.Errorf("text %q", text)
	}
	raw, _ := json.Marshal(blocks)
	s := string(raw)
	for _, want := range []string{"*MemoryNearLimit* (2)", "*MissingProbes* (5)", "and 4 more", "`Deployment shop/soon`", "reaches its limit at 2026-12-07 10:00 UTC"} {
		if !strings.Contains(s, want) {
			t.Errorf("digest blocks lack %q: %s", want, s)
		}
	}
	for _, bad := range []string{"<!channel>", "<https://evil", "*grows*"} {
		if strings.Contains(s, bad) {
			t.Errorf("cluster text %q reached Slack unescaped: %s", bad, s)
		}
	}
}

// A certificate's measurement is the time it has left against the
// horizon: the less left, the worse; an expired one is the worst.
func TestDigestListsTheCertificateClosestToExpiryFirst(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	const day, horizon = 86400, 14 * 86400
	cert := func(name string, left float64) events.Incident {
		return warningIncident(name, events.IssueCertificateExpiring, &events.WarningEvidence{Measurements: []events.Measurement{
			{Name: "expires_in", Value: left, Limit: horizon, Unit: events.UnitSeconds}}}, "expires")
	}
	d := buildDigest(testCluster, now, []events.Incident{cert("in-13-days", 13*day), cert("expired", -day), cert("tomorrow", day)}, 10)
	var got []string
	for _, w := range d.Warnings {
		got = append(got, w.Owner.Name)
	}
	if want := []string{"expired", "tomorrow", "in-13-days"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

// digestReceiver records the digests a webhook receiver gets.
func (r *recvServer) digests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for i, typ := range r.types {
		if typ == TypeWarningDigest {
			out = append(out, r.ids[i])
		}
	}
	return out
}

func (r *recvServer) typesSeen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.types)
}

// digestNow runs one digest tick as the loop would; another replica's
// write first is not an error.
func (e *env) digestNow() {
	e.t.Helper()
	if err := e.svc.digestTick(context.Background()); err != nil && !errors.Is(err, errDigestTaken) {
		e.t.Fatalf("digest: %v", err)
	}
}

func digestPosts(f *fakeSlack) []slackCall {
	var out []slackCall
	for _, c := range f.snapshot() {
		if isPost(c) && c.Msg.Metadata != nil && c.Msg.Metadata.EventType == digestMetadataType {
			out = append(out, c)
		}
	}
	return out
}

// waitOpen waits until the notifier's set of open warnings has n.
func (e *env) waitOpen(n int) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		open, err := e.svc.openWarnings(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		if len(open) == n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d open warnings, want %d", len(open), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The user story: warnings never get a Slack message or a webhook
// delivery of their own (a failure published with them does); at the
// digest time one Slack message and one delivery list them; a second
// tick, a restarted notifier and a second replica do not send that
// period again; a resolved warning leaves the next digest, and a period
// without warnings sends nothing.
func TestWarningsGetADailyDigestNotAMessageEach(t *testing.T) {
	rs := &recvServer{received: make(chan struct{}, 1)}
	srv := httptest.NewServer(rs)
	t.Cleanup(srv.Close)
	day := time.Date(2026, 12, 7, 8, 59, 0, 0, time.UTC)
	e := newEnv(t, func(c *Config) {
		c.Webhooks = []WebhookConfig{{Name: "ops", URL: srv.URL, Secret: "receiver-secret-123"}}
		c.Digest = DigestConfig{Enabled: true, Every: 24 * time.Hour, At: 9 * time.Hour, Location: time.UTC, MaxLines: 20}
		c.Slack.RepeatInterval = time.Hour
	})
	e.clock.mu.Lock()
	e.clock.t = day
	e.clock.mu.Unlock()
	rs.mu.Lock()
	rs.clock = e.clock
	rs.mu.Unlock()
	e.digestNow() // the first period this notifier sees: recorded, nothing sent

	memA := warningIncident("api", events.IssueMemoryNearLimit, memoryEvidence(day.Add(5*time.Hour)), "working set 230Mi of its 256Mi limit")
	probes := warningIncident("web", events.IssueMissingProbes, nil, "container app has no readiness probe")
	e.publishIncident(events.TransitionDetected, 1, memA)
	e.publishIncident(events.TransitionDetected, 1, probes)
	failure := incident(1, "exit_code_1")
	e.publishIncident(events.TransitionDetected, 1, failure) // after the warnings: a barrier for both consumers
	e.slack.waitFor(t, "the failure's post", isPost)
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Contains(rs.typesSeen(), events.TypeIncidentDetected) {
		if time.Now().After(deadline) {
			t.Fatal("the receiver did not get the failure")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.waitOpen(2)
	if posts := e.slack.count("chat.postMessage"); posts != 1 {
		t.Fatalf("%d Slack posts, want the failure's only:%s", posts, describe(e.slack.snapshot()))
	}
	if types := rs.typesSeen(); len(types) != 1 {
		t.Fatalf("receiver got %v, want the failure's event only", types)
	}

	e.clock.Add(90 * time.Second) // 09:00:30
	e.digestNow()
	posts := digestPosts(e.slack)
	if len(posts) != 1 {
		t.Fatalf("%d digest posts at 09:00, want 1:%s", len(posts), describe(e.slack.snapshot()))
	}
	if txt, blocks := posts[0].Msg.Text, blocksText(posts[0]); txt != "2 open warnings in cluster c1: 1 MemoryNearLimit, 1 MissingProbes" ||
		!strings.Contains(blocks, "Deployment shop/api") || !strings.Contains(blocks, "Deployment shop/web") ||
		strings.Index(blocks, "MemoryNearLimit* (1)") > strings.Index(blocks, "MissingProbes* (1)") {
		t.Fatalf("digest %q %s", txt, blocks)
	}
	if got := rs.digests(); len(got) != 1 {
		t.Fatalf("receiver got %d digests, want 1 (types %v)", len(got), rs.typesSeen())
	}

	// Not twice for one period: another tick, a restart, a second replica.
	e.digestNow()
	cfg := e.svc.cfg
	e.stop()
	e.start(cfg)
	e.digestNow()
	second, err := New(cfg, Deps{NATS: e.nc, Now: e.clock.Now, Logger: testLogger(t), Signer: testNotifierKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := second.declare(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := second.digestTick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(digestPosts(e.slack)); n != 1 {
		t.Fatalf("%d digest posts for one period after a restart and a second replica:%s", n, describe(e.slack.snapshot()))
	}
	if got := rs.digests(); len(got) != 1 {
		t.Fatalf("receiver got %d digests for one period", len(got))
	}

	// A plan someone asked for is posted like any plan; the warning's
	// later changes update it in place and are never repeated.
	p := newPlan(memA.ID, time.Hour)
	p.Type = events.IssueMemoryNearLimit
	p.Seal()
	e.propose(p)
	// The plan's own message (the digest's names MemoryNearLimit too:
	// taking it for the plan's let the change below arrive first, and a
	// warning's change without a plan thread is no news).
	e.slack.waitFor(t, "the plan's post", func(c slackCall) bool {
		return isPost(c) && c.Msg.Metadata != nil && c.Msg.Metadata.EventType == postMetadataType && strings.Contains(c.Msg.Text, "MemoryNearLimit")
	})
	changed := memA
	changed.Message = "working set 240Mi of its 256Mi limit"
	e.publishIncident(events.TransitionChanged, 2, changed)
	waitThread(t, e, memA.ID, func(th *thread) bool { return th.Observation == 2 })
	e.clock.Add(2 * time.Hour)
	if err := e.svc.tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	th, err := e.svc.loadThread(context.Background(), memA.ID)
	if err != nil || th.TS == "" {
		t.Fatalf("the warning's plan thread: %v %+v", err, th)
	}
	repeated := false
	for _, c := range e.slack.snapshot() {
		if c.Msg.ThreadTS == th.TS {
			t.Fatalf("a warning's thread got a reply: %q", c.Msg.Text)
		}
		repeated = repeated || (c.Msg.ThreadTS != "" && strings.Contains(c.Msg.Text, "Still failing"))
	}
	if !repeated { // the control: the failure's thread is repeated at the same tick
		t.Fatalf("the failure was not repeated either: the tick proves nothing:%s", describe(e.slack.snapshot()))
	}

	// The next day: the resolved warning is gone from the digest.
	e.publishIncident(events.TransitionResolved, 3, changed)
	e.waitOpen(1)
	e.clock.Add(22 * time.Hour)
	e.digestNow()
	posts = digestPosts(e.slack)
	if len(posts) != 2 || posts[1].Msg.Text != "1 open warning in cluster c1: 1 MissingProbes" || strings.Contains(blocksText(posts[1]), "shop/api") {
		t.Fatalf("second day's digest:%s", describe(posts))
	}
	if got := rs.digests(); len(got) != 2 || got[0] == got[1] {
		t.Fatalf("receiver digests %v, want two distinct", got)
	}

	// A day without open warnings: nothing.
	e.publishIncident(events.TransitionResolved, 2, probes)
	e.waitOpen(0)
	e.clock.Add(24 * time.Hour)
	e.digestNow()
	if n := len(digestPosts(e.slack)); n != 2 {
		t.Fatalf("%d digest posts after a day without warnings, want still 2", n)
	}
	if got := rs.digests(); len(got) != 2 {
		t.Fatalf("receiver got a digest of nothing")
	}
}

// Two replicas at the same instant: one digest.
func TestTwoReplicasPostOneDigest(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Digest = DigestConfig{Enabled: true, Every: time.Hour, At: 0, Location: time.UTC, MaxLines: 20}
	})
	e.clock.mu.Lock()
	e.clock.t = time.Date(2026, 12, 7, 10, 59, 0, 0, time.UTC)
	e.clock.mu.Unlock()
	e.digestNow()
	e.publishIncident(events.TransitionDetected, 1, warningIncident("api", events.IssueMemoryNearLimit, memoryEvidence(time.Now().Add(time.Hour)), "grows"))
	e.waitOpen(1)
	e.clock.Add(2 * time.Minute)
	other, err := New(e.svc.cfg, Deps{NATS: e.nc, Now: e.clock.Now, Logger: testLogger(t), Signer: testNotifierKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.declare(context.Background()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, s := range []*Service{e.svc, other} {
		wg.Go(func() {
			if err := s.digestTick(context.Background()); err != nil && !errors.Is(err, errDigestTaken) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	e.digestNow() // whoever lost the race finds the period done
	if n := len(digestPosts(e.slack)); n != 1 {
		t.Fatalf("%d digest posts from two replicas:%s", n, describe(e.slack.snapshot()))
	}
}

// The configuration's notify.warning_digest reaches the notifier; off
// means no digest.
func TestDigestConfigFrom(t *testing.T) {
	c := config.Default()
	c.Notify.WarningDigest.Timezone = "Europe/Berlin"
	d := ConfigFrom(c).Digest
	if !d.Enabled || d.Every != 24*time.Hour || d.At != 9*time.Hour || d.Location.String() != "Europe/Berlin" || d.MaxLines != 20 {
		t.Fatalf("digest %+v", d)
	}
	c.Notify.WarningDigest.Enabled = false
	if ConfigFrom(c).Digest.Enabled {
		t.Fatal("enabled: false kept the digest on")
	}
}

// Slack posted the digest but its answer was lost: the next tick finds
// the message by its metadata in the channel's history instead of
// posting the period again.
func TestADigestWhoseAnswerWasLostIsNotPostedAgain(t *testing.T) {
	slack := &lossySlack{}
	srv := httptest.NewServer(slack)
	t.Cleanup(srv.Close)
	e := newEnv(t, func(c *Config) {
		c.Slack.APIURL = srv.URL + "/api/"
		c.Digest = DigestConfig{Enabled: true, Every: 24 * time.Hour, At: 9 * time.Hour, Location: time.UTC, MaxLines: 20}
	})
	e.clock.mu.Lock()
	e.clock.t = time.Date(2026, 12, 7, 8, 59, 0, 0, time.UTC)
	e.clock.mu.Unlock()
	e.digestNow()
	e.publishIncident(events.TransitionDetected, 1, warningIncident("api", events.IssueMemoryNearLimit, memoryEvidence(time.Now().Add(time.Hour)), "grows"))
	e.waitOpen(1)
	e.clock.Add(2 * time.Minute)
	if err := e.svc.digestTick(context.Background()); err == nil {
		t.Fatal("the lost answer was not reported: the tick thinks the digest is sent")
	}
	e.digestNow()
	e.digestNow()
	posts, _, history := slack.state()
	if len(posts) != 1 || history == 0 {
		t.Fatalf("%d digest posts (history read %d times), want 1: %+v", len(posts), history, posts)
	}
	if md := posts[0].Metadata; md == nil || md.EventType != digestMetadataType || md.EventPayload["post"] == "" {
		t.Fatalf("the digest carries metadata %+v", md)
	}
	st, _, err := e.svc.loadDigest(context.Background())
	if err != nil || !st.Done || st.Parts["slack"].Result != "sent" || st.Parts["slack"].TS != posts[0].TS {
		t.Fatalf("digest state %+v (%v)", st, err)
	}
}

// A digest line says when its numbers were observed, and a crossing the
// digest's time has passed as past.
func TestDigestLineSaysWhenItsNumbersAreFrom(t *testing.T) {
	at := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	past, future := at.Add(-time.Hour), at.Add(5*time.Hour)
	w := DigestWarning{Type: events.IssueMemoryNearLimit, Namespace: "shop", Owner: events.ObjectRef{Kind: "Deployment", Namespace: "shop", Name: "web"},
		Container: "app", Reason: "projected_oom", AsOf: at.Add(-20 * time.Hour)}
	w.CrossesAt = &future
	if got := digestLine(w, at); !strings.Contains(got, "(reaches its limit at 2026-12-06 14:00 UTC)") || !strings.Contains(got, "_as of 2026-12-05 13:00 UTC_") {
		t.Errorf("future crossing: %s", got)
	}
	w.CrossesAt = &past
	if got := digestLine(w, at); !strings.Contains(got, "(was projected to reach its limit at 2026-12-06 08:00 UTC)") {
		t.Errorf("past crossing: %s", got)
	}
}

// A digest gives the numbers the cluster's watcher holds when the period
// starts, not those of each warning's last announcement (numbers changing
// alone are not announced); a warning the watcher does not list keeps
// its recorded numbers, and so does every warning while no watcher
// answers (the other digest tests have none).
func TestDigestGivesTheWatchersNumbersOfNow(t *testing.T) {
	day := time.Date(2026, 12, 7, 8, 59, 0, 0, time.UTC)
	e := newEnv(t, func(c *Config) {
		c.Digest = DigestConfig{Enabled: true, Every: 24 * time.Hour, At: 9 * time.Hour, Location: time.UTC, MaxLines: 20}
	})
	e.clock.mu.Lock()
	e.clock.t = day
	e.clock.mu.Unlock()
	e.digestNow()
	memA := warningIncident("api", events.IssueMemoryNearLimit, memoryEvidence(day.Add(5*time.Hour)), "working set 230Mi of its 256Mi limit")
	probes := warningIncident("web", events.IssueMissingProbes, nil, "container app has no readiness probe")
	e.publishIncident(events.TransitionDetected, 1, memA)
	e.publishIncident(events.TransitionDetected, 1, probes)
	e.waitOpen(2)

	// The watcher: memA grew since it was announced; probes it does not
	// list (its resolution on its way, say).
	now := memA
	now.Message = "working set 250Mi of its 256Mi limit"
	now.LastSeen = memA.LastSeen.Add(3 * time.Hour)
	now.Warning = memoryEvidence(day.Add(90 * time.Minute))
	subj, err := events.ServiceSubject(testCluster, events.ServiceWatcher, events.VerbAnalyze)
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int32
	sub, err := e.nc.Subscribe(subj, func(m *nats.Msg) {
		var req events.AnalyzeRequest
		if err := json.Unmarshal(m.Data, &req); err != nil || req.Class != events.ClassWarning || req.Validate() != nil {
			t.Errorf("analyze request %s: %v", m.Data, err)
		}
		asked.Add(1)
		b, _ := json.Marshal(events.AnalyzeResponse{Cluster: testCluster, Incidents: []events.Incident{now}, Total: 1, GeneratedAt: time.Now().UTC()})
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	e.clock.Add(90 * time.Second)
	e.digestNow()
	posts := digestPosts(e.slack)
	if len(posts) != 1 || asked.Load() != 1 {
		t.Fatalf("%d digest posts, %d questions to the watcher:%s", len(posts), asked.Load(), describe(e.slack.snapshot()))
	}
	blocks := blocksText(posts[0])
	if !strings.Contains(blocks, "working set 250Mi of its 256Mi limit") || strings.Contains(blocks, "230Mi") ||
		!strings.Contains(blocks, "container app has no readiness probe") ||
		!strings.Contains(blocks, now.LastSeen.UTC().Format("2006-01-02 15:04 MST")) {
		t.Fatalf("digest blocks:\n%s", blocks)
	}
}
