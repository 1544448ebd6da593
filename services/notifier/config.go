package notifier

import (
	"fmt"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
)

// Defaults of Config.
const (
	DefaultRetryBase       = time.Second
	DefaultRetryMax        = 5 * time.Minute
	DefaultDeliveryTimeout = 10 * time.Second
	DefaultTick            = 30 * time.Second
	DefaultSignatureWindow = 5 * time.Minute
	DefaultStreamMaxAge    = 7 * 24 * time.Hour
	DefaultStateMaxAge     = 30 * 24 * time.Hour
	DefaultSlackAPIURL     = "https://slack.com/api/"
	DefaultDigestEvery     = 24 * time.Hour
	DefaultDigestMaxLines  = 20
)

// Config is the notifier's configuration.
type Config struct {
	// JetStreamDomain is the JetStream domain of the bus
	// (nats.jetstream_domain): set when this service reaches a central
	// bus through a leaf node; empty for the server it connects to.
	JetStreamDomain string
	// Cluster is the kaar cluster name whose events are notified.
	Cluster string
	// Listen is the HTTP address of the Slack interactivity endpoint and
	// the inbound webhook; empty serves nothing (Handler still works).
	Listen string
	Slack  SlackConfig
	// Webhooks are the outbound receivers.
	Webhooks []WebhookConfig
	// InboundSenders enable POST /webhooks/approval (notify.inbound.senders):
	// who may call it, each with its own secret. A request signed with a
	// sender's secret is that sender's decision: its Name is recorded as
	// decided_by.
	InboundSenders []InboundSender
	// InboundSecret is deprecated (notify.inbound.secret): one more sender,
	// named "webhook".
	InboundSecret string
	// RetryBase and RetryMax bound the exponential backoff between
	// delivery attempts (webhooks and Slack API calls).
	RetryBase, RetryMax time.Duration
	// DeliveryTimeout bounds one HTTP attempt.
	DeliveryTimeout time.Duration
	// Tick is how often reminders and posts held by quiet hours are
	// checked.
	Tick time.Duration
	// SignatureWindow is how old (or how far in the future) a signed
	// request's timestamp may be.
	SignatureWindow time.Duration
	// StreamMaxAge is how long the notification stream keeps events: a
	// receiver down for longer loses the oldest.
	StreamMaxAge time.Duration
	// StateMaxAge is how long Slack message state is kept.
	StateMaxAge time.Duration
	// Digest schedules the digest of open warnings (off when not
	// Enabled).
	Digest DigestConfig
}

// DigestConfig schedules the digest of open warnings
// (notify.warning_digest): periods start at At after midnight in
// Location and follow each other Every (a divisor of a day, or whole
// days counted from Monday 2024-01-01).
type DigestConfig struct {
	Enabled  bool
	Every    time.Duration
	At       time.Duration
	Location *time.Location
	// MaxLines bounds the warnings listed; the rest are counted.
	MaxLines int
}

// SlackConfig configures the Slack notifier; it is on when Token is set.
// Clicks arrive on /slack/interactions when SigningSecret is set and over
// Socket Mode when AppToken is set (one of them is required).
type SlackConfig struct {
	Token         string
	SigningSecret string
	// AppToken is the app-level xapp- token that opens Socket Mode
	// connections.
	AppToken string
	Channel  string
	APIURL   string
	// AllowedUsers are the Slack user ids (U…, W…) that may decide; a
	// click is matched by its user id only, never by a changeable name.
	AllowedUsers []string
	// AllowedTeams are the Slack workspace ids (T…, E…) clicks may come
	// from; a click from another workspace (a shared channel) or without
	// one is refused. Empty refuses every click.
	AllowedTeams    []string
	AllowedChannels []string
	RepeatInterval  time.Duration
	Quiet           QuietHours
}

// InboundSender is one caller of the inbound approval webhook.
type InboundSender struct {
	Name   string
	Secret string
}

// inboundSenders are InboundSenders with the deprecated InboundSecret as
// a sender named "webhook".
func (c Config) inboundSenders() []InboundSender {
	out := append([]InboundSender(nil), c.InboundSenders...)
	if c.InboundSecret != "" {
		out = append(out, InboundSender{Name: config.DeprecatedInboundSender, Secret: c.InboundSecret})
	}
	return out
}

// Enabled reports whether Slack messages are sent.
func (c SlackConfig) Enabled() bool { return c.Token != "" }

// SocketMode reports whether clicks are received over Socket Mode.
func (c SlackConfig) SocketMode() bool { return c.Enabled() && c.AppToken != "" }

// HTTP reports whether clicks are received on /slack/interactions.
func (c SlackConfig) HTTP() bool { return c.Enabled() && c.SigningSecret != "" }

// WebhookConfig is one outbound receiver.
type WebhookConfig struct {
	Name     string
	URL      string
	Secret   string
	Subjects []string
}

// QuietHours is a daily window [Start, End) after midnight in Location;
// Start == End disables it. It may cross midnight (22:00 to 07:00).
type QuietHours struct {
	Start, End time.Duration
	Location   *time.Location
}

// Active reports whether t is inside the window.
func (q QuietHours) Active(t time.Time) bool {
	if q.Start == q.End {
		return false
	}
	loc := q.Location
	if loc == nil {
		loc = time.UTC
	}
	t = t.In(loc)
	d := time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second
	if q.Start < q.End {
		return d >= q.Start && d < q.End
	}
	return d >= q.Start || d < q.End
}

// ConfigFrom maps the kaar configuration onto the notifier's.
func ConfigFrom(c config.Config) Config {
	n := c.Notify
	out := Config{
		Cluster:         c.Kubernetes.ClusterName,
		JetStreamDomain: c.NATS.JetStreamDomain,
		Listen:          n.Listen,
		InboundSecret:   n.Inbound.Secret,
		Slack: SlackConfig{
			Token: n.Slack.BotToken, SigningSecret: n.Slack.SigningSecret, AppToken: n.Slack.AppToken, Channel: n.Slack.Channel,
			APIURL: n.Slack.APIURL, AllowedUsers: n.Slack.AllowedUsers, AllowedTeams: n.Slack.AllowedTeams, AllowedChannels: n.Slack.AllowedChannels,
			RepeatInterval: n.Slack.RepeatInterval.Duration,
		},
	}
	q := n.Slack.QuietHours
	if q.Start != "" && q.End != "" {
		start, _ := config.ParseClock(q.Start) // validated by config.Validate
		end, _ := config.ParseClock(q.End)
		loc, err := time.LoadLocation(q.Timezone)
		if err != nil {
			loc = time.UTC
		}
		out.Slack.Quiet = QuietHours{Start: start, End: end, Location: loc}
	}
	for _, w := range n.Webhooks {
		out.Webhooks = append(out.Webhooks, WebhookConfig{Name: w.Name, URL: w.URL, Secret: w.Secret, Subjects: w.Subjects})
	}
	if d := n.WarningDigest; d.Enabled {
		at, _ := config.ParseClock(d.At) // validated by config.Validate
		loc, err := time.LoadLocation(d.Timezone)
		if err != nil {
			loc = time.UTC
		}
		out.Digest = DigestConfig{Enabled: true, Every: d.Every.Duration, At: at, Location: loc, MaxLines: d.MaxLines}
	}
	for _, snd := range n.Inbound.Senders {
		out.InboundSenders = append(out.InboundSenders, InboundSender{Name: snd.Name, Secret: snd.Secret})
	}
	return out
}

// withDefaults fills zero values with the defaults. The settings that come
// from the configuration (Slack, webhooks, inbound senders) are not checked
// again: ConfigFrom takes them from a configuration config.Load validated,
// where their rules live. The cluster name is checked because subjects are
// built from it, with the bus's own rule, and an inbound sender must have
// a secret (fail closed for a Config built in code).
func (c Config) withDefaults() (Config, error) {
	if err := events.ValidateClusterName(c.Cluster); err != nil {
		return c, fmt.Errorf("notifier: %w", err)
	}
	// The one rule kept here whatever built the Config: a sender without
	// a secret would accept approvals signed with the empty key, by
	// anyone.
	for i, snd := range c.InboundSenders {
		if snd.Secret == "" {
			return c, fmt.Errorf("notifier: inbound sender %d (%q) has no secret: an approval webhook must be signed", i, snd.Name)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RetryBase, DefaultRetryBase)
	def(&c.RetryMax, DefaultRetryMax)
	def(&c.DeliveryTimeout, DefaultDeliveryTimeout)
	def(&c.Tick, DefaultTick)
	def(&c.SignatureWindow, DefaultSignatureWindow)
	def(&c.StreamMaxAge, DefaultStreamMaxAge)
	def(&c.StateMaxAge, DefaultStateMaxAge)
	if c.Slack.APIURL == "" {
		c.Slack.APIURL = DefaultSlackAPIURL
	}
	def(&c.Digest.Every, DefaultDigestEvery)
	if c.Digest.MaxLines <= 0 {
		c.Digest.MaxLines = DefaultDigestMaxLines
	}
	if c.Digest.Location == nil {
		c.Digest.Location = time.UTC
	}
	return c, nil
}
