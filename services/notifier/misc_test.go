package notifier

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func httpRecord(e *env, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

func TestVerifySlack(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	body := []byte("payload=%7B%7D")
	ts := "1700000000"
	good := SlackSignature("s3cret", ts, body)
	// Slack's documented example shape: v0= followed by 64 hex digits.
	if len(good) != 3+64 || good[:3] != "v0=" {
		t.Fatalf("signature %q", good)
	}
	cases := []struct {
		name, secret, ts, sig string
		body                  []byte
		ok                    bool
	}{
		{"valid", "s3cret", ts, good, body, true},
		{"wrong secret", "other", ts, good, body, false},
		{"body changed", "s3cret", ts, good, []byte("payload=%7B%7D%20"), false},
		{"timestamp changed", "s3cret", "1700000001", good, body, false},
		{"missing signature", "s3cret", ts, "", body, false},
		{"missing timestamp", "s3cret", "", good, body, false},
		{"old", "s3cret", "1699999600", SlackSignature("s3cret", "1699999600", body), body, false},
		{"4m59s old", "s3cret", "1699999701", SlackSignature("s3cret", "1699999701", body), body, true},
	}
	for _, c := range cases {
		err := VerifySlack(c.secret, c.ts, c.sig, c.body, now, 5*time.Minute)
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.name, err)
		}
	}
}

func TestKaarSignatureRoundTrip(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"id":"x"}`)
	sig := Sign("secret", now.Unix(), body)
	if err := VerifySignature("secret", "1700000000", sig, body, now, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := VerifySignature("secret", "1700000000", sig, []byte(`{"id":"y"}`), now, 5*time.Minute); err == nil {
		t.Fatal("tampered body accepted")
	}
	if err := VerifySignature("secret", "1700000000", sig, body, now.Add(10*time.Minute), 5*time.Minute); err == nil {
		t.Fatal("replay accepted")
	}
}

func TestQuietHours(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 1, 2, h, m, 0, 0, time.UTC) }
	overnight := QuietHours{Start: 22 * time.Hour, End: 7 * time.Hour, Location: time.UTC}
	day := QuietHours{Start: 12 * time.Hour, End: 13 * time.Hour}
	cases := []struct {
		q    QuietHours
		t    time.Time
		want bool
	}{
		{overnight, at(23, 0), true}, {overnight, at(3, 0), true}, {overnight, at(7, 0), false},
		{overnight, at(21, 59), false}, {overnight, at(22, 0), true},
		{day, at(12, 30), true}, {day, at(13, 0), false}, {QuietHours{}, at(3, 0), false},
	}
	for _, c := range cases {
		if got := c.q.Active(c.t); got != c.want {
			t.Errorf("%+v at %s = %v", c.q, c.t.Format("15:04"), got)
		}
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[uint64]time.Duration{0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 10: 30 * time.Second} {
		if got := backoff(time.Second, 30*time.Second, n); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
}
