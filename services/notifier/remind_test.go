package notifier

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// Alertmanager's rule: one message per incident; a thread reply only on a
// change people were not told of, on resolution, or after the repeat
// interval; nothing new in quiet hours (held posts go out after).
func TestSlackQuietHoursAndRepeatInterval(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		now := time.Now().UTC()
		tod := time.Duration(now.Hour())*time.Hour + time.Duration(now.Minute())*time.Minute
		// Quiet from an hour ago to an hour from now (crossing midnight
		// is fine).
		c.Slack.Quiet = QuietHours{Start: (tod + 23*time.Hour) % (24 * time.Hour), End: (tod + time.Hour) % (24 * time.Hour), Location: time.UTC}
		c.Slack.RepeatInterval = 4 * time.Hour
	})
	ctx := context.Background()
	in := incident(1, "exit_code_1")
	e.publishIncident(events.TransitionDetected, 1, in)
	// A later observation is a barrier: once it is applied, the first was.
	in2 := in
	in2.Count = 9
	e.publishIncident(events.TransitionChanged, 2, in2)
	waitThread(t, e, in.ID, func(th *thread) bool { return th.Observation == 2 })
	if err := e.svc.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.slack.snapshot()); n != 0 {
		t.Fatalf("%d Slack calls in quiet hours:%s", n, describe(e.slack.snapshot()))
	}
	e.clock.Add(2 * time.Hour) // quiet hours over
	if err := e.svc.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if calls := e.slack.snapshot(); len(calls) != 1 || !isPost(calls[0]) {
		t.Fatalf("held post not sent once:%s", describe(calls))
	}
	if err := e.svc.tick(ctx); err != nil { // nothing due
		t.Fatal(err)
	}
	// An unchanged observation (counters only) updates in place, no reply.
	in3 := in2
	in3.Count = 20
	e.publishIncident(events.TransitionChanged, 3, in3)
	e.slack.waitFor(t, "update", func(c slackCall) bool {
		return c.Method == "chat.update" && strings.Contains(blocksText(c), "seen 20 times")
	})
	// A real change (more pods) is re-notified.
	in4 := in3
	in4.PodCount = 3
	e.publishIncident(events.TransitionChanged, 4, in4)
	e.slack.waitFor(t, "changed reply", func(c slackCall) bool { return c.Msg.ThreadTS != "" && strings.Contains(c.Msg.Text, "3 pod(s)") })
	replies := func() int {
		n := 0
		for _, c := range e.slack.snapshot() {
			if c.Msg.ThreadTS != "" {
				n++
			}
		}
		return n
	}
	if n := replies(); n != 1 {
		t.Fatalf("%d replies, want 1:%s", n, describe(e.slack.snapshot()))
	}
	e.clock.Add(3 * time.Hour)
	if err := e.svc.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := replies(); n != 1 {
		t.Fatalf("reminder before the repeat interval:%s", describe(e.slack.snapshot()))
	}
	e.clock.Add(time.Hour + time.Minute) // repeat interval passed; not quiet (20:00 later... check)
	if e.svc.cfg.Slack.Quiet.Active(e.clock.Now()) {
		e.clock.Add(2 * time.Hour)
	}
	if err := e.svc.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := replies(); n != 2 || !strings.Contains(e.slack.snapshot()[len(e.slack.snapshot())-1].Msg.Text, "Still failing") {
		t.Fatalf("no reminder after the repeat interval:%s", describe(e.slack.snapshot()))
	}
	// Resolved: one reply, then no more reminders.
	e.publishIncident(events.TransitionResolved, 5, in4)
	e.slack.waitFor(t, "resolved reply", func(c slackCall) bool { return c.Msg.ThreadTS != "" && strings.Contains(c.Msg.Text, "Resolved") })
	e.clock.Add(5 * time.Hour)
	if e.svc.cfg.Slack.Quiet.Active(e.clock.Now()) {
		e.clock.Add(2 * time.Hour)
	}
	if err := e.svc.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := replies(); n != 3 {
		t.Fatalf("reminder after resolution:%s", describe(e.slack.snapshot()))
	}
}

func waitThread(t *testing.T, e *env, key string, ok func(*thread) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		th, err := e.svc.loadThread(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if ok(th) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("thread %s never reached the expected state", key)
}

// A restarted notifier updates its message instead of posting again.
func TestSlackRestartUpdatesTheSameMessage(t *testing.T) {
	e := newEnv(t, nil)
	in := incident(1, "exit_code_1")
	e.publishIncident(events.TransitionDetected, 1, in)
	e.slack.waitFor(t, "post", isPost)
	cfg := e.svc.cfg
	e.stop()
	p := newPlan(in.ID, 15*time.Minute)
	e.propose(p) // published while the notifier is down
	e.start(cfg)
	e.slack.waitFor(t, "update after restart", func(c slackCall) bool {
		return c.Method == "chat.update" && c.Msg.TS == "1700000000.000001" && strings.Contains(blocksText(c), ActionApprove)
	})
	if n := e.slack.count("chat.postMessage"); n != 1 {
		t.Fatalf("%d posts:%s", n, describe(e.slack.snapshot()))
	}
}
