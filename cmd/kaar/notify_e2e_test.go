package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/internal/testutil"
	"github.com/kaar-dev/kaar/pkg/sandbox"
	"github.com/kaar-dev/kaar/services/notifier"
)

// slackRecorder plays Slack's Web API for kaar serve.
type slackRecorder struct {
	mu    sync.Mutex
	calls []slackRec
}

type slackRec struct {
	method, ts, threadTS, text, blocks string
}

func (s *slackRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var m struct {
		TS       string          `json:"ts"`
		ThreadTS string          `json:"thread_ts"`
		Text     string          `json:"text"`
		Blocks   json.RawMessage `json:"blocks"`
	}
	_ = json.Unmarshal(b, &m)
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	s.mu.Lock()
	ts := m.TS
	if method == "chat.postMessage" {
		ts = fmt.Sprintf("1800000000.%06d", len(s.calls)+1)
	}
	s.calls = append(s.calls, slackRec{method: method, ts: ts, threadTS: m.ThreadTS, text: m.Text, blocks: string(m.Blocks)})
	s.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": "C-E2E", "ts": ts})
}

func (s *slackRecorder) find(ok func(slackRec) bool) (slackRec, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.calls {
		if ok(c) {
			return c, true
		}
	}
	return slackRec{}, false
}

func (s *slackRecorder) waitFor(t *testing.T, what string, within time.Duration, ok func(slackRec) bool) slackRec {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, found := s.find(ok); found {
			return c
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, c := range s.calls {
		fmt.Fprintf(&b, "\n  %s ts=%s thread=%s %q", c.method, c.ts, c.threadTS, c.text)
	}
	t.Fatalf("Slack: no %s within %s; calls:%s", what, within, b.String())
	return slackRec{}
}

// TestSlackApprovalEndToEnd is the Slack user story on the real control
// plane: the incident appears in Slack with its plan, an allowed user's
// signed click approves it, the executor runs it, and the same message
// ends as verified.
func TestSlackApprovalEndToEnd(t *testing.T) {
	parallel(t)
	c := sandbox.ForTest(t)
	cs := c.Clientset()
	ns := sandbox.NewNamespace(t, cs)
	rec := &slackRecorder{}
	slack := httptest.NewServer(rec)
	t.Cleanup(slack.Close)
	notifyPort := testutil.FreePort(t)
	const secret = "e2e-signing-secret"
	extra := fmt.Sprintf(`  approval_window: 10m
notify:
  listen: 127.0.0.1:%d
  slack:
    bot_token: xoxb-e2e
    signing_secret: %s
    channel: C-E2E
    api_url: %s/api/
    allowed_users: [U0ALICE01]
    allowed_teams: [T0ACME001]
`, notifyPort, secret, slack.URL)
	breakDeployment(t, cs, ns, "web")
	startServe(t, c, ns, extra)

	withPlan := rec.waitFor(t, "message with Approve", 3*time.Minute, func(r slackRec) bool {
		return strings.Contains(r.blocks, notifier.ActionApprove) && strings.Contains(r.text, "Deployment "+ns+"/web")
	})
	var blocks []map[string]any
	if err := json.Unmarshal([]byte(withPlan.blocks), &blocks); err != nil {
		t.Fatal(err)
	}
	var value string
	for _, b := range blocks {
		if b["type"] != "actions" {
			continue
		}
		for _, el := range b["elements"].([]any) {
			if e := el.(map[string]any); e["action_id"] == notifier.ActionApprove {
				value = e["value"].(string)
			}
		}
	}
	if value == "" {
		t.Fatalf("no approve button value in %s", withPlan.blocks)
	}
	click := func(user, id, team string) int {
		payload, _ := json.Marshal(map[string]any{
			"type": "block_actions", "user": map[string]any{"id": id, "username": user, "team_id": team},
			"team":    map[string]any{"id": team},
			"channel": map[string]any{"id": "C-E2E"},
			"actions": []map[string]any{{"action_id": notifier.ActionApprove, "value": value}},
		})
		body := "payload=" + url.QueryEscape(string(payload))
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/slack/interactions", notifyPort), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Slack-Request-Timestamp", ts)
		req.Header.Set("X-Slack-Signature", notifier.SlackSignature(secret, ts, []byte(body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// A user of another workspace sharing the channel, and one who took
	// an allowed user's name, are refused; the allowed id decides.
	if code := click("mallory", "U0MALLORY", "T0EVIL001"); code != http.StatusOK {
		t.Fatalf("click from another workspace: HTTP %d", code)
	}
	if code := click("alice", "U0MALLORY", "T0ACME001"); code != http.StatusOK {
		t.Fatalf("click by a name: HTTP %d", code)
	}
	if code := click("alice", "U0ALICE01", "T0ACME001"); code != http.StatusOK {
		t.Fatalf("click: HTTP %d", code)
	}
	verified := rec.waitFor(t, "verified message", 4*time.Minute, func(r slackRec) bool {
		return r.method == "chat.update" && strings.Contains(r.blocks, "Verified healthy") && strings.Contains(r.blocks, "alice (U0ALICE01) via slack")
	})
	if verified.ts != withPlan.ts {
		t.Fatalf("verified state went to message %s, the plan was in %s", verified.ts, withPlan.ts)
	}
	posts := 0
	rec.mu.Lock()
	for _, c := range rec.calls {
		if c.method == "chat.postMessage" && c.threadTS == "" && strings.Contains(c.text, ns+"/web") {
			posts++
		}
	}
	rec.mu.Unlock()
	if posts != 1 {
		t.Fatalf("%d top-level messages for the incident, want 1", posts)
	}
}
