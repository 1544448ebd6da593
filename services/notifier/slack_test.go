package notifier

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

func isPost(c slackCall) bool { return c.Method == "chat.postMessage" && c.Msg.ThreadTS == "" }

// The user story: an incident is posted once, its plan appears in the same
// message with Approve/Reject, a signed click by an allowed user approves
// it (naming the Slack user, via slack), and the message follows the plan
// to "verified" through chat.update, never through new posts.
func TestSlackIncidentPlanApprovedByClickEndsVerifiedInOneMessage(t *testing.T) {
	e := newEnv(t, nil)
	in := incident(1, "exit_code_1")
	e.publishIncident(events.TransitionDetected, 1, in)
	first := e.slack.waitFor(t, "incident post", isPost)
	if first.Msg.Channel != testChannel || !strings.Contains(first.Msg.Text, "CrashLoopBackOff: Deployment shop/web") {
		t.Fatalf("first post = %+v", first.Msg)
	}
	if txt := blocksText(first); !strings.Contains(txt, "exit_code_1") || strings.Contains(txt, "<restarting>") {
		t.Fatalf("cause not shown or not escaped: %s", txt)
	}

	p := newPlan(in.ID, 15*time.Minute)
	e.propose(p)
	withPlan := e.slack.waitFor(t, "update with the plan", func(c slackCall) bool {
		return c.Method == "chat.update" && strings.Contains(blocksText(c), ActionApprove)
	})
	if withPlan.Msg.TS != "1700000000.000001" {
		t.Fatalf("plan update targets ts %q, want the incident message", withPlan.Msg.TS)
	}
	for _, want := range []string{"kubectl rollout undo deployment/web", "risk *low*", "Previous logs", "!date^", ActionReject} {
		if !strings.Contains(blocksText(withPlan), want) {
			t.Errorf("plan message lacks %q: %s", want, blocksText(withPlan))
		}
	}

	// The same observation again (a watcher restart) changes nothing.
	e.publishIncident(events.TransitionDetected, 1, in)

	if rec := e.click("alice", testChannel, ActionApprove, p, testSecret, e.clock.Now()); rec.Code != http.StatusOK {
		t.Fatalf("click: %d %s", rec.Code, rec.Body)
	}
	ds := e.decisions()
	if len(ds) != 1 || ds[0].Via != events.ViaSlack || ds[0].DecidedBy != "alice (U-alice)" || ds[0].Decision != events.DecisionApproved || ds[0].Digest != p.Digest {
		t.Fatalf("decisions = %+v", ds)
	}
	e.slack.waitFor(t, "decision sent", func(c slackCall) bool {
		return c.Method == "chat.update" && strings.Contains(blocksText(c), "Decision sent by alice (U-alice) via slack") && !strings.Contains(blocksText(c), ActionApprove)
	})

	// The executor's audit trail moves the message on.
	e.audit(events.AuditApproved, p, "alice (U-alice)", events.ViaSlack, ds[0])
	e.slack.waitFor(t, "approved", func(c slackCall) bool {
		return c.Method == "chat.update" && strings.Contains(blocksText(c), "Approved by alice (U-alice) via slack")
	})
	e.audit(events.AuditClaimed, p, "kaar-executor", "", p)
	e.audit(events.AuditStepResult, p, "kaar-executor", "", events.StepResult{PlanID: p.ID, Digest: p.Digest, Index: 0,
		Action: events.ActionRollback, Status: events.StepSucceeded, StartedAt: time.Now()})
	e.slack.waitFor(t, "executing", func(c slackCall) bool {
		return c.Method == "chat.update" && strings.Contains(blocksText(c), "Executing") && strings.Contains(blocksText(c), "1 of 1 steps done")
	})
	e.audit(events.AuditVerified, p, "kaar-executor", "", events.Verification{PlanID: p.ID, Digest: p.Digest, Healthy: true,
		DesiredReplicas: 2, ReadyReplicas: 2, UpdatedReplicas: 2, Message: "all replicas ready", CheckedAt: time.Now()})
	e.slack.waitFor(t, "verified", func(c slackCall) bool {
		return c.Method == "chat.update" && strings.Contains(blocksText(c), "Verified healthy") && strings.Contains(blocksText(c), "2/2 replicas ready")
	})
	// A late duplicate of an earlier step does not move the message back.
	e.audit(events.AuditClaimed, p, "kaar-executor", "", p)
	e.publishIncident(events.TransitionResolved, 2, in)
	e.slack.waitFor(t, "resolved reply", func(c slackCall) bool {
		return c.Method == "chat.postMessage" && c.Msg.ThreadTS == "1700000000.000001" && strings.Contains(c.Msg.Text, "Resolved")
	})
	calls := e.slack.snapshot()
	posts := 0
	for _, c := range calls {
		if isPost(c) {
			posts++
		}
		if c.Method == "chat.update" && c.Msg.TS != "1700000000.000001" {
			t.Errorf("update of another message: %+v", c.Msg)
		}
	}
	if posts != 1 {
		t.Fatalf("%d top-level posts, want 1:%s", posts, describe(calls))
	}
	last := calls[len(calls)-2] // the update before the resolved reply
	if last.Method != "chat.update" || !strings.Contains(blocksText(last), "Verified healthy") || !strings.Contains(last.Msg.Text, "Resolved") {
		t.Fatalf("final message is not resolved and verified:%s\n%s", describe(calls), blocksText(last))
	}
}

// Forged, replayed and unsigned clicks, and clicks by users or from
// channels the configuration does not allow, publish nothing and leave
// the message as it is.
func TestSlackForgedReplayedAndUnallowedClicksChangeNothing(t *testing.T) {
	e := newEnv(t, nil)
	in := incident(1, "exit_code_1")
	e.publishIncident(events.TransitionDetected, 1, in)
	p := newPlan(in.ID, 15*time.Minute)
	e.propose(p)
	e.slack.waitFor(t, "plan message", func(c slackCall) bool {
		return c.Method == "chat.update" && strings.Contains(blocksText(c), ActionApprove)
	})
	before := len(e.slack.snapshot())
	now := e.clock.Now()
	cases := []struct {
		name   string
		user   string
		ch     string
		secret string
		ts     time.Time
		code   int
	}{
		{"forged signature", "alice", testChannel, "not-the-secret", now, http.StatusUnauthorized},
		{"replayed 6 minutes later", "alice", testChannel, testSecret, now.Add(-6 * time.Minute), http.StatusUnauthorized},
		{"timestamp in the future", "alice", testChannel, testSecret, now.Add(6 * time.Minute), http.StatusUnauthorized},
		{"user not allowed", "mallory", testChannel, testSecret, now, http.StatusOK},
		{"channel not allowed", "alice", "C-OTHER", testSecret, now, http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if rec := e.click(c.user, c.ch, ActionApprove, p, c.secret, c.ts); rec.Code != c.code {
				t.Fatalf("status %d, want %d", rec.Code, c.code)
			}
		})
	}
	// Unsigned request.
	rec := e.click("alice", testChannel, ActionApprove, p, testSecret, now)
	_ = rec
	if ds := e.decisions(); len(ds) != 1 {
		t.Fatalf("control click: %d decisions", len(ds))
	}
	// Everything but the control click was refused: exactly one decision,
	// and the only message changes are the refusals' ephemeral answers and
	// the control click's update.
	calls := e.slack.snapshot()[before:]
	responses, updates := 0, 0
	for _, c := range calls {
		switch c.Method {
		case "response":
			responses++
		case "chat.update":
			updates++
			if !strings.Contains(blocksText(c), "Decision sent by alice") {
				t.Errorf("unexpected update: %s", blocksText(c))
			}
		case "chat.postMessage":
			t.Errorf("unexpected post: %+v", c.Msg)
		}
	}
	if responses != 2 || updates != 1 {
		t.Fatalf("responses=%d updates=%d, want 2 and 1:%s", responses, updates, describe(calls))
	}
	// The same click again is one decision (Nats-Msg-Id), and a reject of
	// a plan already decided is refused by the executor, not here.
	e.click("alice", testChannel, ActionApprove, p, testSecret, now)
	if ds := e.decisions(); len(ds) != 1 {
		t.Fatalf("repeated click: %d decisions", len(ds))
	}
}

func TestSlackUnsignedRequestIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	req, _ := http.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader("payload={}"))
	rec := httpRecord(e, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("status %d", rec.Code)
	}
}
