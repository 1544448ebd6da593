package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// ParseClock parses "HH:MM" (24h) into the offset from midnight.
func ParseClock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a time of day such as 22:00", s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// SlackEnabled reports whether the Slack notifier is configured.
func (n Notify) SlackEnabled() bool { return n.Slack.BotToken != "" }

// SlackSocketMode reports whether Slack clicks arrive over Socket Mode.
func (n Notify) SlackSocketMode() bool { return n.SlackEnabled() && n.Slack.AppToken != "" }

// slackHTTP reports whether /slack/interactions is served: Slack is on
// and either has a signing secret or no other way to receive clicks.
func (n Notify) slackHTTP() bool {
	return n.SlackEnabled() && (n.Slack.SigningSecret != "" || n.Slack.AppToken == "")
}

// Enabled reports whether any part of the notifier is configured.
func (n Notify) Enabled() bool {
	return n.SlackEnabled() || len(n.Webhooks) > 0 || len(n.Inbound.InboundSenders()) > 0
}

func (n Notify) validate(add func(error)) {
	if n.Listen != "" {
		if _, _, err := net.SplitHostPort(n.Listen); err != nil {
			add(fieldErr("notify.listen", fmt.Sprintf("%q is not host:port", n.Listen)))
		}
	} else if n.slackHTTP() || len(n.Inbound.InboundSenders()) > 0 {
		add(fieldErr("notify.listen", "required for the Slack interactivity endpoint and the inbound webhook"))
	}
	s := n.Slack
	if s.BotToken != "" {
		if s.SigningSecret == "" && s.AppToken == "" {
			add(fieldErr("notify.slack.signing_secret", "required with notify.slack.bot_token (it verifies button clicks) unless notify.slack.app_token enables Socket Mode"))
		}
		if s.Channel == "" {
			add(fieldErr("notify.slack.channel", "required with notify.slack.bot_token"))
		}
	}
	if s.AppToken != "" {
		switch {
		case !strings.HasPrefix(s.AppToken, "xapp-"):
			add(fieldErr("notify.slack.app_token", "must be an app-level token (xapp-...) with connections:write, not a bot or user token"))
		case s.BotToken == "":
			add(fieldErr("notify.slack.app_token", "needs notify.slack.bot_token (Socket Mode only receives clicks; messages are posted with the bot token)"))
		}
	}
	if u, err := url.Parse(s.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		add(fieldErr("notify.slack.api_url", fmt.Sprintf("%q must be an http(s) URL", s.APIURL)))
	}
	if d := s.RepeatInterval.Duration; d < 0 || (d > 0 && d < time.Minute) {
		add(fieldErr("notify.slack.repeat_interval", fmt.Sprintf("%s must be 0 (never) or at least 1m", d)))
	}
	q := s.QuietHours
	if (q.Start == "") != (q.End == "") {
		add(fieldErr("notify.slack.quiet_hours", "start and end must be given together"))
	}
	for key, v := range map[string]string{"notify.slack.quiet_hours.start": q.Start, "notify.slack.quiet_hours.end": q.End} {
		if v == "" {
			continue
		}
		if _, err := ParseClock(v); err != nil {
			add(fieldErr(key, err.Error()))
		}
	}
	if _, err := time.LoadLocation(q.Timezone); err != nil {
		add(fieldErr("notify.slack.quiet_hours.timezone", fmt.Sprintf("%q is not a time zone such as UTC or Europe/Berlin", q.Timezone)))
	}
	names := map[string]bool{}
	for i, w := range n.Webhooks {
		key := fmt.Sprintf("notify.webhooks[%d]", i)
		switch {
		case !validToken(w.Name):
			add(fieldErr(key+".name", fmt.Sprintf("%q is not a valid name: use 1-63 lower-case letters, digits, '-' or '_'", w.Name)))
		case names[w.Name]:
			add(fieldErr(key+".name", fmt.Sprintf("%q is used by another webhook", w.Name)))
		}
		names[w.Name] = true
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			add(fieldErr(key+".url", fmt.Sprintf("%q must be an http(s) URL", w.URL)))
		}
		if len(w.Secret) < 16 {
			add(fieldErr(key+".secret", "must be at least 16 characters"))
		}
		for j, sub := range w.Subjects {
			if !validSubjectFilter(sub) {
				add(fieldErr(fmt.Sprintf("%s.subjects[%d]", key, j), fmt.Sprintf("%q is not a kaar subject filter such as kaar.*.audit.> or kaar.prod.issue.>", sub)))
			}
		}
	}
	for i, u := range s.AllowedUsers {
		if !slackID(u, "UW") {
			add(fieldErr(fmt.Sprintf("notify.slack.allowed_users[%d]", i), fmt.Sprintf("%q is not a Slack user id: give the member ids (U0123ABCD, or W0123ABCD on Enterprise Grid; in Slack: profile, \"Copy member ID\"), not names, which their owners can change", u)))
		}
	}
	for i, t := range s.AllowedTeams {
		if !slackID(t, "TE") {
			add(fieldErr(fmt.Sprintf("notify.slack.allowed_teams[%d]", i), fmt.Sprintf("%q is not a Slack workspace id such as T0123ABCD (or E0123ABCD for an Enterprise Grid organization)", t)))
		}
	}
	if len(s.AllowedUsers) > 0 && len(s.AllowedTeams) == 0 {
		add(fieldErr("notify.slack.allowed_teams", "required with notify.slack.allowed_users: the workspace ids (T0123ABCD) clicks may come from, so a user of another workspace sharing the channel cannot decide"))
	}
	if sec := n.Inbound.Secret; sec != "" && len(sec) < 16 {
		add(fieldErr("notify.inbound.secret", "must be at least 16 characters"))
	}
	senders := map[string]string{}
	if n.Inbound.Secret != "" {
		senders[DeprecatedInboundSender] = "notify.inbound.secret"
	}
	for i, snd := range n.Inbound.Senders {
		key := fmt.Sprintf("notify.inbound.senders[%d]", i)
		if err := validateIdentity(key+".name", snd.Name); err != nil {
			add(err)
		} else if prev, dup := senders[snd.Name]; dup {
			add(fieldErr(key+".name", fmt.Sprintf("%q is already the name of %s: every sender needs its own, it is recorded as decided_by", snd.Name, prev)))
		}
		senders[snd.Name] = key
		if len(snd.Secret) < 16 {
			add(fieldErr(key+".secret", "must be at least 16 characters"))
		}
	}
	secrets := map[string]string{}
	for i, snd := range n.Inbound.InboundSenders() {
		if prev, dup := secrets[snd.Secret]; dup && snd.Secret != "" {
			add(fieldErr(fmt.Sprintf("notify.inbound.senders[%d].secret", i), "the same secret as "+prev+": the secret identifies the sender, every sender needs its own"))
		}
		secrets[snd.Secret] = snd.Name
	}
}

// slackID reports whether v looks like a Slack id starting with one of
// the prefixes: an upper-case letter then 6 to 20 upper-case letters and
// digits.
func slackID(v, prefixes string) bool {
	if len(v) < 7 || len(v) > 21 || !strings.ContainsRune(prefixes, rune(v[0])) {
		return false
	}
	for _, r := range v[1:] {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// validSubjectFilter accepts a NATS subject filter under kaar.
func validSubjectFilter(s string) bool {
	toks := strings.Split(s, ".")
	if len(toks) < 2 || (toks[0] != "kaar" && toks[0] != "*") {
		return false
	}
	for i, t := range toks {
		if t == "" || strings.ContainsAny(t, " \t") || (t == ">" && i != len(toks)-1) ||
			(t != "*" && t != ">" && strings.ContainsAny(t, "*>")) {
			return false
		}
	}
	return true
}
