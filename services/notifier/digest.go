package notifier

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/events"
)

// Warnings (issue class warning) never page: Slack gets no message per
// warning and webhook receivers no delivery per warning transition.
// Instead the notifier keeps the set of open warnings in its state bucket
// (from the detected, changed and resolved transitions it reads) and, once
// per period of notify.warning_digest, posts ONE Slack message and makes
// ONE delivery per receiver (of the warnings its subject filters would
// have let through) listing them worst first, nothing when none is open.
// The period last handled is recorded in the bucket, by compare-and-set,
// before anything is sent: a restarted notifier, or a second replica,
// never sends a period twice (a Slack post whose answer was lost is found
// by its metadata, as thread posts are).

// TypeWarningDigest is the CloudEvents type of a digest delivered to a
// webhook receiver (data: WarningDigest). It is not a bus event: only the
// notifier makes it, once per period and receiver.
const TypeWarningDigest = "dev.kaar.warning.digest"

// digestMetadataType is the event_type of the metadata on digest posts.
const digestMetadataType = "kaar_warning_digest"

// tombstoneAge is how long a resolved warning's record is kept, so that
// an older transition delivered late does not reopen it.
const tombstoneAge = 24 * time.Hour

// WarningDigest is the content of a digest: the open warnings by type,
// worst first.
type WarningDigest struct {
	Cluster string `json:"cluster"`
	// Period is when the digest's period started.
	Period time.Time `json:"period"`
	// Total is the number of open warnings, Counts the number by type.
	Total  int                      `json:"total"`
	Counts map[events.IssueType]int `json:"counts"`
	// Warnings are the worst ones, at most notify.warning_digest.max_lines;
	// More is how many more are open.
	Warnings []DigestWarning `json:"warnings"`
	More     int             `json:"more,omitempty"`
}

// DigestWarning is one open warning in a digest.
type DigestWarning struct {
	IncidentID string           `json:"incident_id"`
	Type       events.IssueType `json:"type"`
	Namespace  string           `json:"namespace"`
	Owner      events.ObjectRef `json:"owner"`
	Container  string           `json:"container,omitempty"`
	Reason     string           `json:"reason,omitempty"`
	Message    string           `json:"message,omitempty"`
	FirstSeen  time.Time        `json:"first_seen"`
	// CrossesAt is when a trend's forecast reaches its limit.
	CrossesAt *time.Time `json:"crosses_at,omitempty"`
	// AsOf is when the message's numbers were observed: the watcher's
	// last look at the warning when it answered at the period's start
	// (withCurrentNumbers), else the warning's last announcement (a
	// warning is announced again when its cause or severity changes, not
	// when its numbers move).
	AsOf time.Time `json:"as_of"`
	// Percent is the decisive measurement against its limit (0: none);
	// for a time left against a horizon (expires_in), the share of the
	// horizon gone, so that higher is always worse.
	Percent float64 `json:"percent,omitempty"`
}

// openWarning is the state bucket's record of one warning incident.
type openWarning struct {
	Incident    events.Incident `json:"incident"`
	Observation int64           `json:"observation"`
	Resolved    bool            `json:"resolved,omitempty"`
	Written     time.Time       `json:"written"`
}

func (s *Service) warningKV(id string) string { return s.cfg.Cluster + ".w." + id }
func (s *Service) digestKV() string           { return s.cfg.Cluster + ".digest" }

// recordWarning applies a warning's transition to the set of open
// warnings; an older observation than the one recorded changes nothing.
// Every consumer that sees the transition calls it (Slack's and each
// receiver's): the record is the same whoever writes it.
func (s *Service) recordWarning(ctx context.Context, ev events.IncidentEvent) error {
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	key := s.warningKV(ev.Incident.ID)
	e, err := s.state.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
	case err != nil:
		return fmt.Errorf("read warning %s: %w", ev.Incident.ID, err)
	default:
		var prev openWarning
		if json.Unmarshal(e.Value(), &prev) == nil && ev.Observation < prev.Observation {
			return nil
		}
	}
	in := ev.Incident
	in.Pods = nil // the digest names the owner, not its pods
	rec := openWarning{Incident: in, Observation: ev.Observation, Resolved: ev.Transition == events.TransitionResolved, Written: s.now().UTC()}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := s.state.Put(ctx, key, b); err != nil {
		return fmt.Errorf("record warning %s: %w", ev.Incident.ID, err)
	}
	return nil
}

// openWarnings reads the set of open warnings. Along the way it drops
// the records of warnings resolved over a day ago and rewrites the
// records of warnings open for more than half the bucket's age, so that
// a warning open for months is not forgotten.
func (s *Service) openWarnings(ctx context.Context) ([]events.Incident, error) {
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	lister, err := s.state.ListKeysFiltered(ctx, s.cfg.Cluster+".w.>")
	if err != nil {
		return nil, fmt.Errorf("list warnings: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	_ = lister.Stop()
	now := s.now().UTC()
	var out []events.Incident
	for _, k := range keys {
		e, err := s.state.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		var rec openWarning
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			s.log.Warn("discarding an unreadable warning record", slog.String("key", k), slog.Any("error", err))
			_ = s.state.Delete(ctx, k)
			continue
		}
		switch {
		case rec.Resolved && now.Sub(rec.Written) > tombstoneAge:
			_ = s.state.Delete(ctx, k, jetstream.LastRevision(e.Revision()))
		case rec.Resolved:
		default:
			if now.Sub(rec.Written) > s.cfg.StateMaxAge/2 {
				rec.Written = now
				if b, err := json.Marshal(rec); err == nil {
					_, _ = s.state.Update(ctx, k, b, e.Revision()) // best effort: a newer transition wins
				}
			}
			out = append(out, rec.Incident)
		}
	}
	return out, nil
}

// periodStart is the start of the digest period that t falls in.
func (d DigestConfig) periodStart(t time.Time) time.Time {
	loc := d.Location
	if loc == nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	y, m, day := lt.Date()
	hh, mm := int(d.At/time.Hour), int(d.At%time.Hour/time.Minute)
	const dayLen = 24 * time.Hour
	if d.Every >= dayLen {
		// Whole days, in calendar days (a DST change does not move the
		// time of day), counted from Monday 2024-01-01.
		start := time.Date(y, m, day, hh, mm, 0, 0, loc)
		if start.After(lt) {
			start = time.Date(y, m, day-1, hh, mm, 0, 0, loc)
		}
		sy, sm, sd := start.Date()
		n := int(time.Date(sy, sm, sd, 12, 0, 0, 0, time.UTC).Sub(time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)) / dayLen)
		back := ((n % int(d.Every/dayLen)) + int(d.Every/dayLen)) % int(d.Every/dayLen)
		return time.Date(sy, sm, sd-back, hh, mm, 0, 0, loc)
	}
	// A divisor of a day: the slots at At + k*Every of each day.
	first := d.At % d.Every
	midnight := time.Date(y, m, day, 0, 0, 0, 0, loc)
	since := lt.Sub(midnight) - first
	if since < 0 {
		return midnight.Add(first - d.Every)
	}
	return midnight.Add(first + since/d.Every*d.Every)
}

// buildDigest orders the open warnings worst first (a forecast crossing
// soonest, then the highest measurement against its limit, then the
// oldest) and keeps at most maxLines of them.
func buildDigest(cluster string, period time.Time, open []events.Incident, maxLines int) WarningDigest {
	d := WarningDigest{Cluster: cluster, Period: period.UTC(), Total: len(open), Counts: map[events.IssueType]int{}}
	lines := make([]DigestWarning, 0, len(open))
	for _, in := range open {
		d.Counts[in.Type]++
		w := DigestWarning{IncidentID: in.ID, Type: in.Type, Namespace: in.Namespace, Owner: in.Owner, Container: in.Container,
			Reason: in.Reason, Message: in.Message, FirstSeen: in.FirstSeen, AsOf: in.LastSeen.UTC()}
		if ev := in.Warning; ev != nil {
			if f := ev.Forecast; f != nil && !f.CrossesAt.IsZero() {
				at := f.CrossesAt.UTC()
				w.CrossesAt = &at
			}
			for _, m := range ev.Measurements {
				p := m.Percent()
				if m.Unit == events.UnitSeconds && m.Limit > 0 {
					// Time left against a horizon (a certificate's
					// expires_in): the less left, the worse.
					p = 100 - p
				}
				w.Percent = max(w.Percent, p)
			}
		}
		lines = append(lines, w)
	}
	slices.SortFunc(lines, worse)
	if len(lines) > maxLines {
		d.More = len(lines) - maxLines
		lines = lines[:maxLines]
	}
	d.Warnings = lines
	return d
}

// worse orders two warnings, the worse first.
func worse(a, b DigestWarning) int {
	switch {
	case a.CrossesAt != nil && b.CrossesAt != nil:
		if c := a.CrossesAt.Compare(*b.CrossesAt); c != 0 {
			return c
		}
	case a.CrossesAt != nil:
		return -1
	case b.CrossesAt != nil:
		return 1
	}
	if c := cmp.Compare(b.Percent, a.Percent); c != 0 {
		return c
	}
	if c := a.FirstSeen.Compare(b.FirstSeen); c != 0 {
		return c
	}
	return strings.Compare(a.IncidentID, b.IncidentID)
}

// typesWorstFirst are the digest's types, each at the place of its worst
// listed warning, then the types none of whose warnings is listed.
func (d WarningDigest) typesWorstFirst() []events.IssueType {
	var out []events.IssueType
	for _, w := range d.Warnings {
		if !slices.Contains(out, w.Type) {
			out = append(out, w.Type)
		}
	}
	for _, t := range slices.Sorted(maps.Keys(d.Counts)) {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// renderDigest is the digest's Slack message. Cluster text (names,
// reasons, messages) is escaped like every other Slack block; the
// notification text carries counts only.
func renderDigest(d WarningDigest) (string, []Block) {
	types := d.typesWorstFirst()
	var counts []string
	for _, t := range types {
		counts = append(counts, fmt.Sprintf("%d %s", d.Counts[t], t))
	}
	title := fmt.Sprintf("%d open %s in cluster %s", d.Total, plural(d.Total, "warning"), d.Cluster)
	text := title + ": " + strings.Join(counts, ", ")
	blocks := []Block{
		{"type": "header", "text": Block{"type": "plain_text", "text": truncate(":warning: "+title, 150), "emoji": true}},
		section("Nothing has failed yet; each of these is about to. Worst first. Counts: " + strings.Join(counts, ", ") + "."),
	}
	for _, t := range types {
		var b strings.Builder
		fmt.Fprintf(&b, "*%s* (%d)", t, d.Counts[t])
		for _, w := range d.Warnings {
			if w.Type == t {
				b.WriteString("\n• " + digestLine(w, d.Period))
			}
		}
		blocks = append(blocks, section(b.String()))
		if len(blocks) >= 48 { // Slack allows 50 blocks
			break
		}
	}
	if d.More > 0 {
		blocks = append(blocks, Block{"type": "context", "elements": []Block{mrkdwn(fmt.Sprintf("…and %d more: `kaar incidents --warnings` lists them all.", d.More))}})
	}
	return text, blocks
}

// digestLine: "`Deployment shop/web` container `app`: projected oom —
// message (reaches its limit at 2026-12-06 17:40 UTC) _as of 2026-12-06
// 09:00 UTC_": the numbers as of when they were observed, and a
// crossing the digest's time has passed said as past.
func digestLine(w DigestWarning, now time.Time) string {
	s := "`" + escapeCode(events.DisplayObject(w.Owner.Kind, w.Namespace, w.Owner.Name)) + "`"
	if w.Container != "" {
		s += " container `" + escapeCode(w.Container) + "`"
	}
	if w.Reason != "" {
		s += ": " + escape(strings.ReplaceAll(w.Reason, "_", " "))
	}
	if w.Message != "" {
		s += " — " + escape(truncate(w.Message, 200))
	}
	switch {
	case w.CrossesAt != nil && w.CrossesAt.Before(now):
		s += " (was projected to reach its limit at " + w.CrossesAt.Format("2006-01-02 15:04 MST") + ")"
	case w.CrossesAt != nil:
		s += " (reaches its limit at " + w.CrossesAt.Format("2006-01-02 15:04 MST") + ")"
	}
	if !w.AsOf.IsZero() {
		s += " _as of " + w.AsOf.Format("2006-01-02 15:04 MST") + "_"
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// digestState is the bucket's record of the digest period last handled:
// written, by compare-and-set, before anything of the period is sent.
type digestState struct {
	Period time.Time `json:"period"`
	// Done: every part of the period is sent (or had nothing to send).
	Done bool `json:"done"`
	// Parts are what each destination gets this period: "slack" and
	// "webhook:<receiver>".
	Parts map[string]*digestPart `json:"parts,omitempty"`
}

// digestPart is one destination's digest of a period.
type digestPart struct {
	Digest WarningDigest `json:"digest"`
	// EventID is the webhook delivery's CloudEvent id, the same on every
	// attempt (receivers deduplicate on it).
	EventID string `json:"event_id,omitempty"`
	// Posting and PostingSince name a Slack post attempt whose answer may
	// have been lost (see thread.Posting).
	Posting      string    `json:"posting,omitempty"`
	PostingSince time.Time `json:"posting_since,omitzero"`
	// Result is "sent", or "refused" (a permanent error: not retried);
	// empty while not sent.
	Result string `json:"result,omitempty"`
	TS     string `json:"ts,omitempty"`
}

// errDigestTaken: another replica wrote the digest state first.
var errDigestTaken = errors.New("the digest state changed under this notifier (another replica)")

// digestLoop sends the digest of each period, checking every Tick.
func (s *Service) digestLoop(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		if err := s.digestTick(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, errDigestTaken) {
			s.log.Warn("warning digest", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// digestTick starts the current period when the recorded one is older
// (the first period a notifier ever sees is recorded as handled: a new
// installation waits for the next period start) and sends what of it
// is not sent yet.
func (s *Service) digestTick(ctx context.Context) error {
	cur := s.cfg.Digest.periodStart(s.now())
	st, rev, err := s.loadDigest(ctx)
	if err != nil {
		return err
	}
	if st == nil {
		b, _ := json.Marshal(digestState{Period: cur, Done: true})
		if _, err := s.state.Create(ctx, s.digestKV(), b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("record the digest period: %w", err)
		}
		return nil
	}
	if !st.Period.Before(cur) && (st.Done || st.Period.After(cur)) {
		return nil
	}
	if st.Period.Before(cur) {
		if st, err = s.startPeriod(ctx, cur); err != nil {
			return err
		}
		if rev, err = s.saveDigest(ctx, st, rev); err != nil || st.Done {
			return err
		}
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(st.Parts)) {
		part := st.Parts[name]
		if part.Result != "" {
			continue
		}
		var perr error
		if name == "slack" {
			perr = s.postDigest(ctx, st, part, &rev)
		} else {
			perr = s.deliverDigest(ctx, strings.TrimPrefix(name, "webhook:"), st, part)
		}
		if errors.Is(perr, errDigestTaken) {
			return perr
		}
		if perr != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, perr))
			continue
		}
		if rev, err = s.saveDigest(ctx, st, rev); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // retried at the next tick
	}
	st.Done = true
	_, err = s.saveDigest(ctx, st, rev)
	return err
}

// startPeriod builds the period's parts: the whole digest for Slack, and
// for each webhook receiver the warnings its subject filters let
// through. A destination with nothing to list gets nothing.
func (s *Service) startPeriod(ctx context.Context, period time.Time) (*digestState, error) {
	open, err := s.openWarnings(ctx)
	if err != nil {
		return nil, err
	}
	if len(open) > 0 {
		open = s.withCurrentNumbers(ctx, open)
	}
	st := &digestState{Period: period, Parts: map[string]*digestPart{}}
	if s.cfg.Slack.Enabled() && len(open) > 0 {
		st.Parts["slack"] = &digestPart{Digest: buildDigest(s.cfg.Cluster, period, open, s.cfg.Digest.MaxLines)}
	}
	for _, w := range s.cfg.Webhooks {
		var mine []events.Incident
		for _, in := range open {
			if receives(w, s.cfg.Cluster, in) {
				mine = append(mine, in)
			}
		}
		if len(mine) == 0 {
			continue
		}
		id, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		st.Parts["webhook:"+w.Name] = &digestPart{Digest: buildDigest(s.cfg.Cluster, period, mine, s.cfg.Digest.MaxLines), EventID: id.String()}
	}
	st.Done = len(st.Parts) == 0
	s.log.Info("warning digest period", slog.Time("period", period),
		slog.Int("open_warnings", len(open)), slog.Int("destinations", len(st.Parts)))
	return st, nil
}

// receives reports whether receiver w's subject filters let the
// warning's transitions through.
func receives(w WebhookConfig, cluster string, in events.Incident) bool {
	subject, err := events.IssueSubject(cluster, in.Namespace, in.Type)
	if err != nil {
		return false
	}
	filters := w.Subjects
	if len(filters) == 0 {
		filters = DefaultSubjects(cluster)
	}
	return slices.ContainsFunc(filters, func(f string) bool { return subjectMatches(f, subject) })
}

// subjectMatches is NATS subject matching: "*" one token, ">" the rest.
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		switch {
		case f == ">":
			return len(st) > i
		case i >= len(st):
			return false
		case f != "*" && f != st[i]:
			return false
		}
	}
	return len(ft) == len(st)
}

// postDigest posts the period's Slack message once: the attempt is
// recorded first, and an attempt whose answer was lost is looked for in
// the channel's history before posting again.
func (s *Service) postDigest(ctx context.Context, st *digestState, part *digestPart, rev *uint64) error {
	log := s.log.With(slog.Time("period", st.Period))
	if part.Posting != "" {
		if f, ok := s.slack.(postFinder); ok {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DeliveryTimeout)
			ts, err := f.FindPosted(fctx, s.cfg.Slack.Channel, part.PostingSince.Add(-time.Minute), digestMetadataType, "post", part.Posting)
			cancel()
			switch {
			case err == nil && ts != "":
				log.Info("slack: found the digest of an interrupted post", slog.String("ts", ts))
				part.Result, part.TS, part.Posting = "sent", ts, ""
				return nil
			case err != nil && !errors.Is(err, ErrSlackPermanent):
				return fmt.Errorf("look for an interrupted digest post: %w", err)
			}
		}
	}
	part.Posting, part.PostingSince = uuid.NewString(), s.now().UTC()
	r, err := s.saveDigest(ctx, st, *rev)
	if err != nil {
		return err
	}
	*rev = r
	text, blocks := renderDigest(part.Digest)
	_, ts, err := s.slackCall(ctx, "chat.postMessage", SlackMessage{Channel: s.cfg.Slack.Channel, Text: text, Blocks: blocks,
		Metadata: &SlackMetadata{EventType: digestMetadataType, EventPayload: map[string]string{"period": st.Period.Format(time.RFC3339), "post": part.Posting}}})
	switch {
	case errors.Is(err, ErrSlackPermanent):
		log.Error("slack refused the warning digest: not retried", slog.Any("error", err))
		part.Result, part.Posting = "refused", ""
		return nil
	case err != nil:
		return err // Posting stays: the next attempt looks for the message first
	}
	part.Result, part.TS, part.Posting = "sent", ts, ""
	log.Info("slack: warning digest posted", slog.Int("warnings", part.Digest.Total), slog.String("ts", ts))
	return nil
}

// deliverDigest makes the period's delivery to one receiver: a
// CloudEvent of type TypeWarningDigest, signed like every delivery, the
// same body on every attempt.
func (s *Service) deliverDigest(ctx context.Context, name string, st *digestState, part *digestPart) error {
	i := slices.IndexFunc(s.cfg.Webhooks, func(w WebhookConfig) bool { return w.Name == name })
	if i < 0 {
		part.Result = "refused" // the receiver was removed from the configuration
		return nil
	}
	data, err := json.Marshal(part.Digest)
	if err != nil {
		return err
	}
	env := events.Envelope{SpecVersion: events.SpecVersion, ID: part.EventID, Source: Source, Type: TypeWarningDigest,
		Subject: "warnings/" + st.Period.UTC().Format(time.RFC3339), Time: st.Period.UTC(), DataContentType: events.ContentTypeJSON,
		SchemaVersion: events.SchemaVersion, Cluster: s.cfg.Cluster, Data: data}
	body, err := json.Marshal(env)
	if err != nil {
		return err
	}
	r := &receiver{cfg: s.cfg.Webhooks[i], s: s}
	permanent, err := r.deliver(ctx, env, body, 1)
	switch {
	case err == nil:
		s.metrics.deliveries.WithLabelValues(name, "ok").Inc()
		part.Result = "sent"
		return nil
	case permanent:
		s.metrics.deliveries.WithLabelValues(name, "dropped").Inc()
		s.log.Error("webhook receiver refused the warning digest: dropped", slog.String("receiver", name), slog.Any("error", err))
		part.Result = "refused"
		return nil
	}
	s.metrics.deliveries.WithLabelValues(name, "retry").Inc()
	return err
}

func (s *Service) loadDigest(ctx context.Context) (*digestState, uint64, error) {
	e, err := s.state.Get(ctx, s.digestKV())
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read the digest state: %w", err)
	}
	var st digestState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, 0, fmt.Errorf("read the digest state: %w", err)
	}
	return &st, e.Revision(), nil
}

// saveDigest writes the state if it is still at revision rev.
func (s *Service) saveDigest(ctx context.Context, st *digestState, rev uint64) (uint64, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return 0, err
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	r, err := s.state.Update(sctx, s.digestKV(), b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, errDigestTaken
	}
	if err != nil {
		return 0, fmt.Errorf("write the digest state: %w", err)
	}
	return r, nil
}

// digestAskTimeout bounds each question to the watcher at a digest's
// start; digestAskPages bounds the pages read.
const (
	digestAskTimeout = 5 * time.Second
	digestAskPages   = 20
)

// withCurrentNumbers gives the open warnings the numbers the cluster's
// watcher holds now. A warning's numbers changing is not news (no
// transition is announced for it), so a record holds those of the
// warning's last announcement, possibly days old. The set stays the
// records': a warning the watcher does not list (resolved a moment ago,
// its resolution on its way; a watcher just restarted) keeps its
// recorded numbers, and so does every warning when the watcher does not
// answer. Each line's as_of says when its numbers were observed.
func (s *Service) withCurrentNumbers(ctx context.Context, open []events.Incident) []events.Incident {
	cur, err := s.currentWarnings(ctx)
	if err != nil {
		s.log.Warn("warning digest: the recorded numbers serve (as of their last announcement)", slog.Any("error", err))
		return open
	}
	refreshed := 0
	for i, in := range open {
		if c, ok := cur[in.ID]; ok && !c.LastSeen.Before(in.LastSeen) { // the id names the type
			c.Pods = nil
			open[i] = c
			refreshed++
		}
	}
	s.log.Info("warning digest: numbers of now from the watcher", slog.Int("refreshed", refreshed), slog.Int("open_warnings", len(open)))
	return open
}

// currentWarnings asks the cluster's watcher (analyze, class warning,
// every page) for the warnings it holds open, by incident id.
func (s *Service) currentWarnings(ctx context.Context) (map[string]events.Incident, error) {
	subj, err := events.ServiceSubject(s.cfg.Cluster, events.ServiceWatcher, events.VerbAnalyze)
	if err != nil {
		return nil, err
	}
	req := events.AnalyzeRequest{Class: events.ClassWarning, Limit: events.MaxAnalyzeLimit}
	out := map[string]events.Incident{}
	for range digestAskPages {
		body, err := json.Marshal(req)
		if err != nil {
			return nil, err
		}
		actx, cancel := context.WithTimeout(ctx, digestAskTimeout)
		reply, err := s.nc.RequestWithContext(actx, subj, body)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("ask kaar-watcher on %s: %w", subj, err)
		}
		resp, err := events.DecodeReply[events.AnalyzeResponse](reply.Data, reply.Header.Get(events.HeaderError))
		if err != nil {
			return nil, fmt.Errorf("kaar-watcher's analyze reply: %w", err)
		}
		for _, in := range resp.Incidents {
			if in.Type.IsWarning() {
				out[in.ID] = in
			}
		}
		if resp.NextCursor == "" || len(resp.Incidents) == 0 {
			return out, nil
		}
		req.Cursor = resp.NextCursor
	}
	return out, nil
}
