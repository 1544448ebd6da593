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
    allowed_users: [U0123ABCD, W0123ABCD]
    allowed_teams: [T0123ABCD]
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
		{"notify:\n  slack: {allowed_users: [alice], allowed_teams: [T0123ABCD]}\n", "notify.slack.allowed_users[0]"},
		{"notify:\n  slack: {allowed_users: [U0123ABCD, \"@bob\"], allowed_teams: [T0123ABCD]}\n", "notify.slack.allowed_users[1]"},
		{"notify:\n  slack: {allowed_users: [U0123ABCD]}\n", "notify.slack.allowed_teams"},
		{"notify:\n  slack: {allowed_users: [U0123ABCD], allowed_teams: [acme]}\n", "notify.slack.allowed_teams[0]"},
		{"notify:\n  inbound: {senders: [{name: \"\", secret: 0123456789abcdef}]}\n", "notify.inbound.senders[0].name"},
		{"notify:\n  inbound: {senders: [{name: jenkins, secret: short}]}\n", "notify.inbound.senders[0].secret"},
		{"notify:\n  inbound: {senders: [{name: jenkins, secret: 0123456789abcdef}, {name: jenkins, secret: fedcba9876543210}]}\n", "notify.inbound.senders[1].name"},
		{"notify:\n  inbound: {secret: 0123456789abcdef, senders: [{name: webhook, secret: fedcba9876543210}]}\n", "notify.inbound.senders[0].name"},
		{"notify:\n  inbound: {senders: [{name: a, secret: 0123456789abcdef}, {name: b, secret: 0123456789abcdef}]}\n", "notify.inbound.senders[1].secret"},
		{"notify:\n  slack: {token: x}\n", "notify.slack.token"},
		{"notify:\n  slack: {bot_token: x, channel: C1, app_token: xoxb-2}\n", "notify.slack.app_token"},
		{"notify:\n  slack: {app_token: xapp-1}\n", "notify.slack.app_token"},
		{"notify:\n  slack: {bot_token: x, channel: C1}\n", "notify.slack.signing_secret"},
		{"notify:\n  listen: \"\"\n  slack: {bot_token: x, channel: C1, app_token: xapp-1, signing_secret: s}\n", "notify.listen"},
	} {
		_, err := Load(strings.NewReader(c.yaml), nil)
		var fe *FieldError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), `"`+c.key+`"`) {
			t.Errorf("%q: error %v, want one naming %s", c.yaml, err, c.key)
		}
	}

	// Socket Mode: an app token replaces the signing secret, and without
	// one no HTTP listener is needed; the environment can supply it.
	socket := "notify:\n  listen: \"\"\n  slack: {bot_token: xoxb-1, channel: C1}\n"
	cfg, err = Load(strings.NewReader(socket), []string{"KAAR_NOTIFY_SLACK_APP_TOKEN=xapp-1-A1-x"})
	if err != nil {
		t.Fatalf("socket mode without signing secret or listen: %v", err)
	}
	if !cfg.Notify.SlackSocketMode() || cfg.Notify.Slack.AppToken != "xapp-1-A1-x" || cfg.Notify.slackHTTP() {
		t.Fatalf("socket mode = %t, app token %q, http %t", cfg.Notify.SlackSocketMode(), cfg.Notify.Slack.AppToken, cfg.Notify.slackHTTP())
	}
	if !loadOK(t, "notify:\n  slack: {bot_token: xoxb-1, channel: C1, signing_secret: s, app_token: xapp-1}\n").Notify.slackHTTP() {
		t.Fatal("signing secret with app token: /slack/interactions not served")
	}
}

func loadOK(t *testing.T, yaml string) Config {
	t.Helper()
	cfg, err := Load(strings.NewReader(yaml), nil)
	if err != nil {
		t.Fatalf("%q: %v", yaml, err)
	}
	return cfg
}
