package notifier

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
)

// clickRaw sends a signed block_actions payload as Slack would.
func (e *env) clickRaw(payload map[string]any) {
	e.t.Helper()
	b, _ := json.Marshal(payload)
	body := "payload=" + url.QueryEscape(string(b))
	ts := strconv.FormatInt(e.clock.Now().Unix(), 10)
	req := httptest.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(slackTimestampHeader, ts)
	req.Header.Set(slackSignatureHeader, SlackSignature(testSecret, ts, []byte(body)))
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		e.t.Fatalf("click: status %d", rec.Code)
	}
}

// Slack clicks are allowed by the clicking user's id and workspace, never
// by a name its owner can change, nor from another workspace sharing the
// channel.
func TestSlackClicksAreMatchedByIdAndWorkspace(t *testing.T) {
	e := newEnv(t, nil)
	p := newPlan("", 15*time.Minute)
	e.propose(p)
	withUser := func(id, name, team, userTeam string) map[string]any {
		pl := e.clickPayload("alice", testChannel, ActionApprove, p)
		pl["user"] = map[string]any{"id": id, "username": name, "name": name, "team_id": userTeam}
		if team == "" {
			delete(pl, "team")
		} else {
			pl["team"] = map[string]any{"id": team}
		}
		return pl
	}
	for _, tc := range []struct {
		name    string
		payload map[string]any
		want    string
	}{
		{"a name, not the id", withUser("U-mallory", "alice", testTeam, testTeam), "allowed_users"},
		{"another workspace", withUser("U-alice", "alice", "T-EVIL", "T-EVIL"), "allowed_teams"},
		{"a guest of another org in ours", withUser("U-alice", "alice", testTeam, "T-EVIL"), "allowed_teams"},
		{"no workspace", withUser("U-alice", "alice", "", ""), "allowed_teams"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.slack.count("response")
			e.clickRaw(tc.payload)
			if ds := e.decisions(); len(ds) != 0 {
				t.Fatalf("refused click published %+v", ds)
			}
			answer := e.slack.last("response")
			if e.slack.count("response") != before+1 || !strings.Contains(answer.Msg.Text, tc.want) {
				t.Errorf("answer %+v, want one naming %s", answer, tc.want)
			}
		})
	}
	e.clickRaw(withUser("U-alice", "alice", testTeam, testTeam))
	if ds := e.decisions(); len(ds) != 1 || ds[0].DecidedBy != "alice (U-alice)" {
		t.Fatalf("allowed click: %+v", ds)
	}
}

// The inbound webhook records who decided from the secret that signed the
// request: each sender has its own, and a body naming someone else is
// refused. notify.inbound.secret is one sender named "webhook".
func TestInboundWebhookRecordsTheSigningSender(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Slack = SlackConfig{}
		c.InboundSenders = []InboundSender{{Name: "jenkins", Secret: "jenkins-secret-0123456789"}, {Name: "pagerduty", Secret: "pagerduty-secret-0123456789"}}
		c.InboundSecret = "legacy-secret-0123456789"
	})
	post := func(body map[string]any, secret string) (int, InboundAnswer) {
		b, _ := json.Marshal(body)
		now := e.clock.Now()
		req := httptest.NewRequest(http.MethodPost, "/webhooks/approval", bytes.NewReader(b))
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		req.Header.Set(HeaderSignature, Sign(secret, now.Unix(), b))
		rec := httpRecord(e, req)
		var a InboundAnswer
		_ = json.Unmarshal(rec.Body.Bytes(), &a)
		return rec.Code, a
	}
	plans := map[string]events.Plan{}
	for _, who := range []string{"spoof", "jenkins", "pagerduty", "webhook"} {
		p := newPlan("", 15*time.Minute)
		e.propose(p)
		plans[who] = p
	}
	decision := func(p events.Plan, by string) map[string]any {
		m := map[string]any{"plan_id": p.ID, "digest": p.Digest, "decision": "approved"}
		if by != "" {
			m["decided_by"] = by
		}
		return m
	}
	// Jenkins' secret, naming the on-call person: refused, naming the field.
	code, a := post(decision(plans["spoof"], "pagerduty"), "jenkins-secret-0123456789")
	if code != http.StatusBadRequest || a.Field != "decided_by" || !strings.Contains(a.Error, `"jenkins"`) {
		t.Fatalf("spoofed decided_by: %d %+v", code, a)
	}
	if ds := e.decisions(); len(ds) != 0 {
		t.Fatalf("a spoofed decision was published: %+v", ds)
	}
	for who, secret := range map[string]string{"jenkins": "jenkins-secret-0123456789", "pagerduty": "pagerduty-secret-0123456789", "webhook": "legacy-secret-0123456789"} {
		by := ""
		if who == "pagerduty" {
			by = "pagerduty" // naming itself is fine
		}
		if code, a := post(decision(plans[who], by), secret); code != http.StatusAccepted {
			t.Fatalf("%s: %d %+v", who, code, a)
		}
	}
	got := map[string]string{}
	for _, d := range e.decisions() {
		got[d.PlanID] = d.DecidedBy
	}
	for _, who := range []string{"jenkins", "pagerduty", "webhook"} {
		if got[plans[who].ID] != who {
			t.Errorf("plan of %s decided by %q", who, got[plans[who].ID])
		}
	}
	if len(got) != 3 {
		t.Errorf("decisions %v", got)
	}
}

func TestInboundSendersAreValidated(t *testing.T) {
	cfg, err := config.Load(strings.NewReader(`
kubernetes: {cluster_name: c1}
notify:
  inbound:
    senders: [{name: jenkins, secret: jenkins-secret-0123456789}]
    secret: legacy-secret-0123456789
  slack: {bot_token: xoxb-1, signing_secret: s, channel: C1, allowed_users: [U0123ABCD], allowed_teams: [T0123ABCD]}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := ConfigFrom(cfg)
	if got := c.inboundSenders(); len(got) != 2 || got[0].Name != "jenkins" || got[1] != (InboundSender{Name: "webhook", Secret: "legacy-secret-0123456789"}) {
		t.Errorf("senders %+v", got)
	}
	if len(c.Slack.AllowedTeams) != 1 || c.Slack.AllowedTeams[0] != "T0123ABCD" {
		t.Errorf("allowed teams %v", c.Slack.AllowedTeams)
	}
	// config.Load refuses senders sharing a name or a secret, and a sender
	// without a name: the secret identifies the sender, and its name is
	// recorded as decided_by.
	for _, bad := range []struct{ senders, key string }{
		{"[{name: a, secret: s1-0123456789abcdef}, {name: a, secret: s2-0123456789abcdef}]", "notify.inbound.senders[1].name"},
		{"[{name: a, secret: s1-0123456789abcdef}, {name: b, secret: s1-0123456789abcdef}]", "notify.inbound.senders[1].secret"},
		{"[{name: \"\", secret: s1-0123456789abcdef}]", "notify.inbound.senders[0].name"},
	} {
		_, err := config.Load(strings.NewReader("notify: {inbound: {senders: "+bad.senders+"}}"), nil)
		if err == nil || !strings.Contains(err.Error(), `"`+bad.key+`"`) {
			t.Errorf("senders %s: %v, want an error naming %s", bad.senders, err, bad.key)
		}
	}
}

// An inbound sender without a secret is refused by New, whoever built the
// Config: its HMAC key would be empty, so anyone could sign approvals.
func TestInboundSenderWithoutSecretIsRefused(t *testing.T) {
	t.Parallel()
	cfg := Config{Cluster: "test", Listen: "127.0.0.1:0", InboundSenders: []InboundSender{{Name: "jenkins"}}}
	if _, err := New(cfg, Deps{}); err == nil || !strings.Contains(err.Error(), "no secret") {
		t.Fatalf("New with an empty sender secret: %v", err)
	}
}
