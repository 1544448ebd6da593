package notifier

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// lossySlack applies every call but loses the answer to the first
// chat.postMessage (HTTP 503 after posting it), as when the notifier
// dies mid-call or the call times out; conversations.history lists the
// posted messages with their metadata, newest first.
// testBotID is the fake workspace's id of kaar's bot.
const testBotID = "B0KAAR"

type lossySlack struct {
	mu      sync.Mutex
	posts   []SlackMessage
	updates []SlackMessage
	history int
}

func (f *lossySlack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	f.mu.Lock()
	defer f.mu.Unlock()
	switch method {
	case "chat.postMessage":
		var m SlackMessage
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &m)
		m.TS = fmt.Sprintf("1700000000.%06d", len(f.posts)+1)
		f.posts = append(f.posts, m)
		if len(f.posts) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS})
	case "chat.update":
		var m SlackMessage
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &m)
		f.updates = append(f.updates, m)
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS})
	case "auth.test":
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "bot_id": testBotID, "user_id": "U0KAAR"})
	case "conversations.history":
		f.history++
		_ = r.ParseForm()
		var msgs []map[string]any
		for i := len(f.posts) - 1; i >= 0; i-- {
			p := f.posts[i]
			if p.ThreadTS != "" || p.Channel != r.Form.Get("channel") {
				continue
			}
			m := map[string]any{"type": "message", "ts": p.TS, "text": p.Text, "bot_id": testBotID}
			if r.Form.Get("include_all_metadata") == "true" && p.Metadata != nil {
				m["metadata"] = p.Metadata
			}
			msgs = append(msgs, m)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "messages": msgs, "has_more": false})
	default:
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true})
	}
}

func (f *lossySlack) state() (posts, updates []SlackMessage, history int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]SlackMessage(nil), f.posts...), append([]SlackMessage(nil), f.updates...), f.history
}

// TestAPostWhoseAnswerWasLostIsFoundNotRepeated: Slack posted the
// incident's message but its answer was lost; the retry finds the
// message by its metadata in the channel's history and updates it,
// instead of posting a second message that nothing would ever update.
func TestAPostWhoseAnswerWasLostIsFoundNotRepeated(t *testing.T) {
	slack := &lossySlack{}
	srv := httptest.NewServer(slack)
	t.Cleanup(srv.Close)
	e := newEnv(t, func(c *Config) { c.Slack.APIURL = srv.URL + "/api/" })
	in := incident(1, "exit_code_1")
	e.publishIncident(events.TransitionDetected, 1, in)
	p := newPlan(in.ID, 15*time.Minute)
	e.propose(p)

	deadline := time.Now().Add(20 * time.Second)
	for {
		posts, updates, history := slack.state()
		shown := len(updates) > 0 && strings.Contains(fmt.Sprint(updates[len(updates)-1].Blocks), ActionApprove)
		if shown || len(posts) > 1 {
			if len(posts) != 1 {
				t.Fatalf("%d messages posted for one incident, want 1 (history read %d times): %+v", len(posts), history, posts)
			}
			if md := posts[0].Metadata; md == nil || md.EventType != postMetadataType || md.EventPayload["thread"] != in.ID || md.EventPayload["post"] == "" {
				t.Fatalf("the post carries metadata %+v, want the thread and the attempt", md)
			}
			for _, u := range updates {
				if u.TS != posts[0].TS || u.Channel != testChannel {
					t.Fatalf("update of %s/%s, want the posted message %s/%s", u.Channel, u.TS, testChannel, posts[0].TS)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plan was not shown within 20s: posts %+v, updates %d, history read %d times", posts, len(updates), history)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The form the client sends conversations.history is what Slack reads,
// and only the bot's own message (auth.test's bot_id) is adopted: another
// app in the channel may post the same metadata.
func TestFindPostedReadsTheHistoryWithMetadata(t *testing.T) {
	var form url.Values
	authTests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/auth.test") {
			authTests++
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "bot_id": testBotID})
			return
		}
		_ = r.ParseForm()
		form = r.PostForm
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "messages": []map[string]any{
			{"ts": "1.0", "bot_id": "B0OTHER", "metadata": map[string]any{"event_type": postMetadataType, "event_payload": map[string]string{"post": "a"}}},
			{"ts": "1.1", "bot_id": testBotID, "metadata": map[string]any{"event_type": "other", "event_payload": map[string]string{"post": "a"}}},
			{"ts": "1.2", "bot_id": testBotID, "metadata": map[string]any{"event_type": postMetadataType, "event_payload": map[string]string{"post": "a"}}},
		}})
	}))
	t.Cleanup(srv.Close)
	c := newSlackClient(srv.URL+"/api/", "xoxb-test", srv.Client())
	ts, err := c.FindPosted(t.Context(), "C1", time.Unix(1700000000, 0), postMetadataType, "post", "a")
	if err != nil || ts != "1.2" {
		t.Fatalf("FindPosted = %q, %v; want 1.2 (1.0 is another bot's)", ts, err)
	}
	if _, err := c.FindPosted(t.Context(), "C1", time.Unix(1700000000, 0), postMetadataType, "post", "a"); err != nil || authTests != 1 {
		t.Errorf("second FindPosted: %v, auth.test asked %d times, want once", err, authTests)
	}
	for k, want := range map[string]string{"channel": "C1", "oldest": "1700000000", "include_all_metadata": "true"} {
		if form.Get(k) != want {
			t.Errorf("conversations.history %s = %q, want %q", k, form.Get(k), want)
		}
	}
}
