package config

import (
	"errors"
	"strings"
	"testing"
)

func TestNotifyConfig(t *testing.T) {
	ok := `notify:
  slack:
    bot_token: xoxb-1
    signing_secret: s
    channel: C1
    allowed_users: [U1, alice]
    repeat_interval: 1h
    quiet_hours: {start: "22:00", end: "07:00", timezone: Europe/Berlin}
  webhooks:
    - {name: ops, url: "https://hooks.example.com/kaar", secret: 0123456789abcdef, subjects: ["kaar.*.audit.>"]}
  inbound: {secret: 0123456789abcdef}
`
	cfg, err := Load(strings.NewReader(ok), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Notify.SlackEnabled() || cfg.Notify.Listen != "127.0.0.1:8081" || cfg.Notify.Slack.APIURL != "https://slack.com/api/" {
		t.Fatalf("notify = %+v", cfg.Notify)
	}
	if d, _ := Load(strings.NewReader(""), nil); d.Notify.Enabled() {
		t.Fatal("notify enabled by default")
	}
	for _, c := range []struct{ yaml, key string }{
		{"notify:\n  slack: {bot_token: x, channel: C1}\n", "notify.slack.signing_secret"},
		{"notify:\n  slack: {bot_token: x, signing_secret: s}\n", "notify.slack.channel"},
		{"notify:\n  slack: {quiet_hours: {start: \"25:00\", end: \"07:00\"}}\n", "notify.slack.quiet_hours.start"},
		{"notify:\n  slack: {quiet_hours: {start: \"22:00\"}}\n", "notify.slack.quiet_hours"},
		{"notify:\n  slack: {quiet_hours: {timezone: Mars/Olympus}}\n", "notify.slack.quiet_hours.timezone"},
		{"notify:\n  slack: {repeat_interval: 5s}\n", "notify.slack.repeat_interval"},
		{"notify:\n  webhooks: [{name: a, url: ftp://x, secret: 0123456789abcdef}]\n", "notify.webhooks[0].url"},
		{"notify:\n  webhooks: [{name: a, url: https://x, secret: short}]\n", "notify.webhooks[0].secret"},
		{"notify:\n  webhooks: [{name: a, url: https://x, secret: 0123456789abcdef, subjects: [\"foo.>\"]}]\n", "notify.webhooks[0].subjects[0]"},
		{"notify:\n  webhooks: [{name: a, url: https://x, secret: 0123456789abcdef}, {name: a, url: https://y, secret: 0123456789abcdef}]\n", "notify.webhooks[1].name"},
		{"notify:\n  inbound: {secret: short}\n", "notify.inbound.secret"},
		{"notify:\n  slack: {token: x}\n", "notify.slack.token"},
	} {
		_, err := Load(strings.NewReader(c.yaml), nil)
		var fe *FieldError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), `"`+c.key+`"`) {
			t.Errorf("%q: error %v, want one naming %s", c.yaml, err, c.key)
		}
	}
}
