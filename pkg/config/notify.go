package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Notify configures the notifier: Slack, outbound webhooks and the
// inbound approval webhook. Each part is off until configured.
type Notify struct {
	// Listen is the HTTP address of the Slack interactivity endpoint
	// (/slack/interactions) and the inbound approval webhook
	// (/webhooks/approval); served only when one of them is configured.
	Listen   string         `yaml:"listen"`
	Slack    Slack          `yaml:"slack"`
	Webhooks []Webhook      `yaml:"webhooks"`
	Inbound  InboundWebhook `yaml:"inbound"`
	// WarningDigest is the one message about open warnings that Slack and
	// the webhook receivers get on a schedule (warnings never get a
	// message each).
	WarningDigest WarningDigest `yaml:"warning_digest"`
}

// WarningDigest schedules the digest of open warnings: one Slack message
// and one delivery per webhook receiver each period, nothing when no
// warning is open. Periods start at At (a time of day in Timezone) and
// follow each other Every: a divisor of 24h (hourly at :30 is every 1h,
// at "00:30"), or whole days (weekly digests fall on Mondays).
type WarningDigest struct {
	// Enabled turns the digest on (the default); false sends none.
	Enabled bool `yaml:"enabled"`
	// Every is the period: 1h to 168h, a divisor of 24h or whole days.
	Every Duration `yaml:"every"`
	// At is when a period starts, "HH:MM" (24h) in Timezone.
	At string `yaml:"at"`
	// Timezone is an IANA time zone such as UTC or Europe/Berlin.
	Timezone string `yaml:"timezone"`
	// MaxLines bounds the warnings listed (1 to 50); the rest are
	// counted ("and 12 more").
	MaxLines int `yaml:"max_lines"`
}

// Bounds of notify.warning_digest.
const (
	minDigestEvery    = time.Hour
	maxDigestEvery    = 7 * 24 * time.Hour
	maxDigestMaxLines = 50
)

// validate checks notify.warning_digest.
func (d WarningDigest) validate(p *problems) {
	if !d.Enabled {
		return
	}
	e := d.Every.Duration
	switch {
	case e < minDigestEvery || e > maxDigestEvery:
		p.addf("notify.warning_digest.every", "%s must be between %s and %s", e, minDigestEvery, maxDigestEvery)
	case e%time.Minute != 0 || (e < 24*time.Hour && (24*time.Hour)%e != 0) || (e > 24*time.Hour && e%(24*time.Hour) != 0):
		p.addf("notify.warning_digest.every", "%s must divide a day (1h, 2h, 3h, 4h, 6h, 8h, 12h) or be whole days (24h, 48h, ..., 168h)", e)
	}
	if _, err := ParseClock(d.At); err != nil {
		p.add(fieldErr("notify.warning_digest.at", err.Error()))
	}
	if _, err := time.LoadLocation(d.Timezone); err != nil || d.Timezone == "" {
		p.add(fieldErr("notify.warning_digest.timezone", fmt.Sprintf("%q is not a time zone such as UTC or Europe/Berlin", d.Timezone)))
	}
	if d.MaxLines < 1 || d.MaxLines > maxDigestMaxLines {
		p.addf("notify.warning_digest.max_lines", "%d must be between 1 and %d", d.MaxLines, maxDigestMaxLines)
	}
}

// Slack configures the Slack notifier (Block Kit messages updated in
// place, Approve/Reject buttons). It is on when BotToken is set.
type Slack struct {
	// BotToken is the bot's xoxb- token (chat:write).
	BotToken string `yaml:"bot_token"`
	// SigningSecret verifies interaction requests (the app's signing
	// secret); required with a bot token unless AppToken is set.
	SigningSecret string `yaml:"signing_secret"`
	// AppToken is the app-level xapp- token (connections:write). When set,
	// button clicks also arrive over Socket Mode, for clusters without
	// inbound HTTP; the signing secret is then needed only to serve
	// /slack/interactions as well.
	AppToken string `yaml:"app_token"`
	// Channel is the channel id (C0123...) messages go to.
	Channel string `yaml:"channel"`
	// APIURL is the Slack Web API base URL (tests point it elsewhere).
	APIURL string `yaml:"api_url"`
	// AllowedUsers are the Slack user ids (U0123ABCD, or W... on
	// Enterprise Grid) that may approve or reject; empty means nobody can
	// (buttons answer with a refusal). Names are refused: a display name
	// can be changed by its owner.
	AllowedUsers []string `yaml:"allowed_users"`
	// AllowedTeams are the Slack workspace (team) ids (T0123ABCD) clicks
	// are accepted from; required with AllowedUsers. A click from another
	// workspace (a shared channel, say) is refused.
	AllowedTeams []string `yaml:"allowed_teams"`
	// AllowedChannels are the channel ids clicks are accepted from;
	// empty means Channel only.
	AllowedChannels []string `yaml:"allowed_channels"`
	// RepeatInterval re-notifies (a thread reply) about an incident that
	// is still open and unchanged for that long; 0 never repeats.
	RepeatInterval Duration `yaml:"repeat_interval"`
	// QuietHours hold back new posts and reminders (messages already
	// posted are still updated in place); held posts go out when they end.
	QuietHours QuietHours `yaml:"quiet_hours"`
}

// QuietHours is a daily window, "22:00" to "07:00" in Timezone; it may
// cross midnight. Both empty disables it.
type QuietHours struct {
	Start    string `yaml:"start"`
	End      string `yaml:"end"`
	Timezone string `yaml:"timezone"`
}

// Webhook is one outbound webhook receiver.
type Webhook struct {
	// Name identifies the receiver (its durable consumer); lower-case
	// letters, digits, '-' and '_'.
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Secret signs every delivery (HMAC-SHA256, Kaar-Signature header).
	Secret string `yaml:"secret"`
	// Subjects are NATS subject filters ("kaar.*.audit.>"); empty means
	// every incident, plan and audit event.
	Subjects []string `yaml:"subjects"`
}

// InboundWebhook lets other tools approve or reject plans by POSTing a
// signed decision to /webhooks/approval. It is on when a sender is
// configured.
type InboundWebhook struct {
	// Senders are who may call the webhook, each with its own secret;
	// the decision records the name of the sender whose secret signed
	// the request as decided_by.
	Senders []InboundSender `yaml:"senders"`
	// Secret is deprecated: one sender named "webhook". Use Senders.
	Secret string `yaml:"secret"`
}

// InboundSender is one caller of the inbound webhook.
type InboundSender struct {
	// Name is recorded as decided_by (printable, at most 64 characters).
	Name string `yaml:"name"`
	// Secret signs its requests (HMAC-SHA256), at least 16 characters.
	Secret string `yaml:"secret"`
}

// DeprecatedInboundSender is the sender name of notify.inbound.secret.
const DeprecatedInboundSender = "webhook"

// InboundSenders are the configured senders, with notify.inbound.secret
// as a sender named "webhook".
func (w InboundWebhook) InboundSenders() []InboundSender {
	out := append([]InboundSender(nil), w.Senders...)
	if w.Secret != "" {
		out = append(out, InboundSender{Name: DeprecatedInboundSender, Secret: w.Secret})
	}
	return out
}

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

// validate checks every part of the notifier and reports every problem.
func (n Notify) validate() error {
	var p problems
	n.validateListen(&p)
	n.Slack.validateTokens(&p)
	n.Slack.validateDelivery(&p)
	n.Slack.QuietHours.validate(&p)
	validateWebhooks(&p, n.Webhooks)
	n.Slack.validateAllowed(&p)
	n.Inbound.validate(&p)
	n.WarningDigest.validate(&p)
	return p.join()
}

// validateListen checks notify.listen, required when something is served.
func (n Notify) validateListen(p *problems) {
	if n.Listen != "" {
		if _, _, err := net.SplitHostPort(n.Listen); err != nil {
			p.add(fieldErr("notify.listen", fmt.Sprintf("%q is not host:port", n.Listen)))
		}
	} else if n.slackHTTP() || len(n.Inbound.InboundSenders()) > 0 {
		p.add(fieldErr("notify.listen", "required for the Slack interactivity endpoint and the inbound webhook"))
	}
}

// validateTokens checks what the bot and app tokens need alongside them.
func (s Slack) validateTokens(p *problems) {
	if s.BotToken != "" {
		if s.SigningSecret == "" && s.AppToken == "" {
			p.add(fieldErr("notify.slack.signing_secret", "required with notify.slack.bot_token (it verifies button clicks) unless notify.slack.app_token enables Socket Mode"))
		}
		if s.Channel == "" {
			p.add(fieldErr("notify.slack.channel", "required with notify.slack.bot_token"))
		}
	}
	if s.AppToken != "" {
		switch {
		case !strings.HasPrefix(s.AppToken, "xapp-"):
			p.add(fieldErr("notify.slack.app_token", "must be an app-level token (xapp-...) with connections:write, not a bot or user token"))
		case s.BotToken == "":
			p.add(fieldErr("notify.slack.app_token", "needs notify.slack.bot_token (Socket Mode only receives clicks; messages are posted with the bot token)"))
		}
	}
}

// validateDelivery checks the API URL and the repeat interval.
func (s Slack) validateDelivery(p *problems) {
	if !httpHostURL(s.APIURL) {
		p.add(fieldErr("notify.slack.api_url", fmt.Sprintf("%q must be an http(s) URL", s.APIURL)))
	}
	if d := s.RepeatInterval.Duration; d < 0 || (d > 0 && d < time.Minute) {
		p.add(fieldErr("notify.slack.repeat_interval", fmt.Sprintf("%s must be 0 (never) or at least 1m", d)))
	}
}

// validate checks notify.slack.quiet_hours: both ends or neither, times
// of day, and a known time zone.
func (q QuietHours) validate(p *problems) {
	if (q.Start == "") != (q.End == "") {
		p.add(fieldErr("notify.slack.quiet_hours", "start and end must be given together"))
	}
	for _, c := range []struct{ key, v string }{{"notify.slack.quiet_hours.start", q.Start}, {"notify.slack.quiet_hours.end", q.End}} {
		if c.v == "" {
			continue
		}
		if _, err := ParseClock(c.v); err != nil {
			p.add(fieldErr(c.key, err.Error()))
		}
	}
	if _, err := time.LoadLocation(q.Timezone); err != nil {
		p.add(fieldErr("notify.slack.quiet_hours.timezone", fmt.Sprintf("%q is not a time zone such as UTC or Europe/Berlin", q.Timezone)))
	}
}

// validateWebhooks checks each outbound webhook; names must be unique.
func validateWebhooks(p *problems, webhooks []Webhook) {
	names := map[string]bool{}
	for i, w := range webhooks {
		key := fmt.Sprintf("notify.webhooks[%d]", i)
		switch {
		case !validToken(w.Name):
			p.add(fieldErr(key+".name", fmt.Sprintf("%q is not a valid name: use 1-63 lower-case letters, digits, '-' or '_'", w.Name)))
		case names[w.Name]:
			p.add(fieldErr(key+".name", fmt.Sprintf("%q is used by another webhook", w.Name)))
		}
		names[w.Name] = true
		w.validate(p, key)
	}
}

// validate checks one webhook's URL, secret and subject filters; key is
// its notify.webhooks[i].
func (w Webhook) validate(p *problems, key string) {
	if !httpHostURL(w.URL) {
		p.add(fieldErr(key+".url", fmt.Sprintf("%q must be an http(s) URL", w.URL)))
	}
	if len(w.Secret) < MinTokenLength {
		p.addf(key+".secret", "must be at least %d characters", MinTokenLength)
	}
	for j, sub := range w.Subjects {
		if !validSubjectFilter(sub) {
			p.add(fieldErr(fmt.Sprintf("%s.subjects[%d]", key, j), fmt.Sprintf("%q is not a kaar subject filter such as kaar.*.audit.> or kaar.prod.issue.>", sub)))
		}
	}
}

// validateAllowed checks who may decide: Slack member ids, and the
// workspaces they may click from.
func (s Slack) validateAllowed(p *problems) {
	for i, u := range s.AllowedUsers {
		if !slackID(u, "UW") {
			p.add(fieldErr(fmt.Sprintf("notify.slack.allowed_users[%d]", i), fmt.Sprintf("%q is not a Slack user id: give the member ids (U0123ABCD, or W0123ABCD on Enterprise Grid; in Slack: profile, \"Copy member ID\"), not names, which their owners can change", u)))
		}
	}
	for i, t := range s.AllowedTeams {
		if !slackID(t, "TE") {
			p.add(fieldErr(fmt.Sprintf("notify.slack.allowed_teams[%d]", i), fmt.Sprintf("%q is not a Slack workspace id such as T0123ABCD (or E0123ABCD for an Enterprise Grid organization)", t)))
		}
	}
	if len(s.AllowedUsers) > 0 && len(s.AllowedTeams) == 0 {
		p.add(fieldErr("notify.slack.allowed_teams", "required with notify.slack.allowed_users: the workspace ids (T0123ABCD) clicks may come from, so a user of another workspace sharing the channel cannot decide"))
	}
}

// validate checks the inbound webhook: the deprecated secret, each
// sender, and that no two senders share a secret.
func (w InboundWebhook) validate(p *problems) {
	if sec := w.Secret; sec != "" && len(sec) < MinTokenLength {
		p.addf("notify.inbound.secret", "must be at least %d characters", MinTokenLength)
	}
	w.validateSenders(p)
	w.validateDistinctSecrets(p)
}

// validateSenders checks each sender's name (unique, the deprecated
// secret's "webhook" included) and secret.
func (w InboundWebhook) validateSenders(p *problems) {
	senders := map[string]string{}
	if w.Secret != "" {
		senders[DeprecatedInboundSender] = "notify.inbound.secret"
	}
	for i, snd := range w.Senders {
		key := fmt.Sprintf("notify.inbound.senders[%d]", i)
		if err := validateIdentity(key+".name", snd.Name); err != nil {
			p.add(err)
		} else if prev, dup := senders[snd.Name]; dup {
			p.add(fieldErr(key+".name", fmt.Sprintf("%q is already the name of %s: every sender needs its own, it is recorded as decided_by", snd.Name, prev)))
		}
		senders[snd.Name] = key
		if len(snd.Secret) < MinTokenLength {
			p.addf(key+".secret", "must be at least %d characters", MinTokenLength)
		}
	}
}

// validateDistinctSecrets reports a sender whose secret another sender
// has: the secret is what identifies the sender.
func (w InboundWebhook) validateDistinctSecrets(p *problems) {
	secrets := map[string]string{} // secret -> the key that set it
	check := func(key, secret string) {
		if prev, dup := secrets[secret]; dup && secret != "" {
			p.add(fieldErr(key, "the same secret as "+prev+": the secret identifies the sender, every sender needs its own"))
			return
		}
		secrets[secret] = key
	}
	for i, snd := range w.Senders {
		check(fmt.Sprintf("notify.inbound.senders[%d].secret", i), snd.Secret)
	}
	check("notify.inbound.secret", w.Secret)
}

// httpHostURL reports whether s parses as an http or https URL with a host.
func httpHostURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
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
