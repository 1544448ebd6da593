package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/events"
)

// change is what an event did to a thread.
type change struct {
	// dirty: the message must be (re)rendered.
	dirty bool
	// reply, when set, notifies people with a thread reply (held back
	// in quiet hours).
	reply string
}

func (s *Service) threadKV(key string) string { return s.cfg.Cluster + ".t." + key }
func (s *Service) planKV(id string) string    { return s.cfg.Cluster + ".p." + id }

func (s *Service) loadThread(ctx context.Context, key string) (*thread, error) {
	e, err := s.state.Get(ctx, s.threadKV(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return &thread{Key: key}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read slack state %s: %w", key, err)
	}
	var t thread
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		s.log.Warn("discarding unreadable slack state", slog.String("key", key), slog.Any("error", err))
		return &thread{Key: key}, nil
	}
	return &t, nil
}

func (s *Service) saveThread(ctx context.Context, t *thread) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if _, err := s.state.Put(ctx, s.threadKV(t.Key), b); err != nil {
		return fmt.Errorf("write slack state %s: %w", t.Key, err)
	}
	return nil
}

// updateThread applies fn to a thread and brings Slack up to date: the
// first post (unless quiet hours hold it back), chat.update of the
// message, and fn's reply.
func (s *Service) updateThread(ctx context.Context, key string, fn func(t *thread) change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.loadThread(ctx, key)
	if err != nil {
		return err
	}
	ch := fn(t)
	if !ch.dirty && ch.reply == "" {
		return nil
	}
	err = s.sync(ctx, t, ch.reply)
	// Record what Slack now shows even when ctx ended meanwhile
	// (shutdown): otherwise the redelivered event would post again.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if serr := s.saveThread(sctx, t); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

// sync brings one thread's Slack message up to date (mu held).
func (s *Service) sync(ctx context.Context, t *thread, reply string) error {
	now := s.now()
	quiet := s.cfg.Slack.Quiet.Active(now)
	text, blocks := render(t, now)
	if !t.posted() {
		if t.Plan == nil && !t.open() {
			return nil // resolved before it was ever posted: nothing to say
		}
		if quiet {
			t.Pending = true
			return nil
		}
		if err := s.findInterruptedPost(ctx, t, now); err != nil {
			return err
		}
		if !t.posted() {
			return s.postFirst(ctx, t, text, blocks, now)
		}
		// Found: the update below brings it up to date.
	}
	if _, _, err := s.slackCall(ctx, "chat.update", SlackMessage{Channel: t.Channel, TS: t.TS, Text: text, Blocks: blocks}); err != nil {
		return err
	}
	if reply == "" || quiet {
		return nil
	}
	if _, _, err := s.slackCall(ctx, "chat.postMessage", SlackMessage{Channel: t.Channel, ThreadTS: t.TS, Text: reply}); err != nil {
		return err
	}
	t.LastNotified, t.NotifiedHash = now, incidentHash(t.Incident, t.Transition)
	return nil
}

// postMetadataType is the event_type of the metadata on the messages
// kaar posts; the payload names the thread and the post attempt.
const postMetadataType = "kaar_thread"

// postFirst posts a thread's message. The attempt is recorded on the bus
// first, with an id the message carries in its metadata: if Slack posts
// it but the answer never arrives (this process dies, the call times
// out), the next attempt (this replica's or another's) finds the
// message instead of posting a second one.
func (s *Service) postFirst(ctx context.Context, t *thread, text string, blocks []Block, now time.Time) error {
	t.Posting, t.PostingSince = uuid.NewString(), now
	if err := s.saveThread(ctx, t); err != nil {
		return err
	}
	ch, ts, err := s.slackCall(ctx, "chat.postMessage", SlackMessage{Channel: s.cfg.Slack.Channel, Text: text, Blocks: blocks,
		Metadata: &SlackMetadata{EventType: postMetadataType, EventPayload: map[string]string{"thread": t.Key, "post": t.Posting}}})
	if err != nil {
		return err
	}
	t.Channel, t.TS, t.Pending, t.Posting, t.PostingSince = ch, ts, false, "", time.Time{}
	t.LastNotified, t.NotifiedHash = now, incidentHash(t.Incident, t.Transition)
	return nil
}

// findInterruptedPost adopts the message of an earlier post attempt
// whose answer was lost, if Slack has it. When the history cannot be
// read (no finder, or a permanent error such as a missing
// channels:history scope) the thread is posted again, as before.
func (s *Service) findInterruptedPost(ctx context.Context, t *thread, now time.Time) error {
	if t.Posting == "" {
		return nil
	}
	log := s.log.With(slog.String("thread", t.Key), slog.String("post", t.Posting))
	f, ok := s.slack.(postFinder)
	if !ok {
		t.Posting = ""
		return nil
	}
	// Slack's clock, not ours, stamps the message: a minute of margin.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DeliveryTimeout)
	defer cancel()
	ts, err := f.FindPosted(fctx, s.cfg.Slack.Channel, t.PostingSince.Add(-time.Minute), postMetadataType, "post", t.Posting)
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.metrics.slackCalls.WithLabelValues("conversations.history", result).Inc()
	switch {
	case errors.Is(err, ErrSlackPermanent):
		log.Warn("slack: cannot look for an interrupted post (does the bot have channels:history?); posting again", slog.Any("error", err))
	case err != nil:
		return fmt.Errorf("look for an interrupted post: %w", err)
	case ts != "":
		log.Info("slack: found the message of an interrupted post", slog.String("ts", ts))
		t.Channel, t.TS, t.Pending = s.cfg.Slack.Channel, ts, false
		t.LastNotified, t.NotifiedHash = now, incidentHash(t.Incident, t.Transition)
	}
	t.Posting, t.PostingSince = "", time.Time{}
	return nil
}

func (s *Service) slackCall(ctx context.Context, method string, m SlackMessage) (string, string, error) {
	// A call in flight finishes at shutdown (bounded by the delivery
	// timeout): cancelling it could lose the ts of a message Slack posted.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DeliveryTimeout)
	defer cancel()
	var ch, ts string
	var err error
	if method == "chat.update" {
		err = s.slack.UpdateMessage(ctx, m)
	} else {
		ch, ts, err = s.slack.PostMessage(ctx, m)
		if ch == "" {
			ch = m.Channel
		}
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.metrics.slackCalls.WithLabelValues(method, result).Inc()
	return ch, ts, err
}

// handleSlackMsg applies one bus event to Slack; failures are retried
// with backoff (the consumer holds the following events meanwhile, so
// the messages never show an older state after a newer one).
func (s *Service) handleSlackMsg(ctx context.Context, m jetstream.Msg) {
	env, err := events.Decode(m.Data())
	if err == nil {
		err = s.onEvent(ctx, env)
	} else {
		s.log.Warn("slack: skipping an undecodable event", slog.String("subject", m.Subject()), slog.Any("error", err))
		err = nil
	}
	if errors.Is(err, ErrSlackPermanent) || errors.Is(err, events.ErrInvalid) {
		s.log.Error("slack: event dropped", slog.String("subject", m.Subject()), slog.Any("error", err))
		err = nil
	}
	if err != nil {
		n := uint64(1)
		if md, merr := m.Metadata(); merr == nil {
			n = md.NumDelivered
		}
		d := backoff(s.cfg.RetryBase, s.cfg.RetryMax, n)
		s.log.Warn("slack: will retry", slog.String("subject", m.Subject()), slog.Duration("in", d), slog.Any("error", err))
		_ = m.NakWithDelay(d)
		return
	}
	_ = m.Ack()
}

func (s *Service) onEvent(ctx context.Context, env events.Envelope) error {
	switch {
	case strings.HasPrefix(env.Type, "dev.kaar.incident."):
		ev, err := events.DecodeData[events.IncidentEvent](env)
		if err != nil {
			return err
		}
		if ev.Incident.Type.IsWarning() {
			// No message of its own (the digest lists it); a thread that
			// exists because someone asked for its plan shows it.
			if err := s.recordWarning(ctx, ev); err != nil {
				return err
			}
			return s.updateThread(ctx, ev.Incident.ID, func(t *thread) change { return applyWarning(t, ev) })
		}
		return s.updateThread(ctx, ev.Incident.ID, func(t *thread) change { return applyIncident(t, ev) })
	case strings.HasPrefix(env.Type, "dev.kaar.plan."):
		p, err := events.DecodeData[events.Plan](env)
		if err != nil {
			return err
		}
		key := threadKey(p)
		if _, err := s.state.Put(ctx, s.planKV(p.ID), []byte(key)); err != nil {
			return fmt.Errorf("index plan %s: %w", p.ID, err)
		}
		return s.updateThread(ctx, key, func(t *thread) change { return applyPlanEvent(t, env.Type, p) })
	case strings.HasPrefix(env.Type, "dev.kaar.audit."):
		rec, err := events.DecodeData[events.AuditRecord](env)
		if err != nil {
			return err
		}
		e, err := s.state.Get(ctx, s.planKV(rec.PlanID))
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil // a plan this notifier never showed
		}
		if err != nil {
			return err
		}
		return s.updateThread(ctx, string(e.Value()), func(t *thread) change { return applyAudit(t, rec) })
	}
	return nil
}

// applyIncident records an incident transition. Older or repeated
// observations change nothing.
func applyIncident(t *thread, ev events.IncidentEvent) change {
	if t.Incident != nil && ev.Observation <= t.Observation {
		return change{}
	}
	in := ev.Incident
	t.Incident, t.Transition, t.Observation = &in, ev.Transition, ev.Observation
	return change{dirty: true, reply: incidentReply(t)}
}

// applyWarning records a warning's transition in the thread of a plan
// someone asked for, and only there: a warning alone gets no message,
// and its changes no reply (warnings never page).
func applyWarning(t *thread, ev events.IncidentEvent) change {
	if t.Plan == nil || (t.Incident != nil && ev.Observation <= t.Observation) {
		return change{}
	}
	in := ev.Incident
	t.Incident, t.Transition, t.Observation = &in, ev.Transition, ev.Observation
	t.NotifiedHash = incidentHash(t.Incident, t.Transition)
	return change{dirty: true}
}

// incidentReply is the re-notification due for a posted thread whose
// incident changed in a way people were not told yet (never for a
// warning: warnings never page).
func incidentReply(t *thread) string {
	if !t.posted() || t.Incident == nil || incidentHash(t.Incident, t.Transition) == t.NotifiedHash || t.Incident.Type.IsWarning() {
		return ""
	}
	if t.NotifiedHash == "" {
		// Posted for its plan before the incident arrived (the streams
		// are sourced independently): the update shows it, no news.
		t.NotifiedHash = incidentHash(t.Incident, t.Transition)
		return ""
	}
	in := t.Incident
	if t.Transition == events.TransitionResolved {
		return fmt.Sprintf(":white_check_mark: Resolved: %s is healthy again.", events.DisplayObject(in.Owner.Kind, in.Namespace, in.Owner.Name))
	}
	return fmt.Sprintf(":warning: Changed: %s (`%s`), %d pod(s), severity %s.", in.Type, in.Reason, in.PodCount, in.Severity)
}

func applyPlanEvent(t *thread, typ string, p events.Plan) change {
	switch typ {
	case events.TypePlanProposed:
		if t.Plan != nil && t.Plan.ID == p.ID {
			return change{}
		}
		replaced := t.Plan != nil
		t.Plan, t.Status, t.DecidedBy, t.Via, t.Step, t.StepsDone, t.Detail = &p, StatusProposed, "", "", 0, 0, ""
		ch := change{dirty: true}
		if replaced && t.posted() {
			ch.reply = fmt.Sprintf(":new: A new plan was proposed: %s (risk %s).", escape(p.Summary), p.Risk)
		}
		return ch
	case events.TypePlanSuperseded, events.TypePlanExpired:
		if t.Plan == nil || t.Plan.ID != p.ID {
			return change{}
		}
		st := StatusExpired
		if typ == events.TypePlanSuperseded {
			st = StatusSuperseded
			if p.SupersededBy != "" {
				t.Detail = "New plan: " + p.SupersededBy
			}
		}
		return change{dirty: t.setStatus(st)}
	}
	return change{}
}

func applyAudit(t *thread, rec events.AuditRecord) change {
	if t.Plan == nil || t.Plan.ID != rec.PlanID {
		return change{}
	}
	decided := func(st Status) bool {
		if !t.setStatus(st) {
			return false
		}
		t.DecidedBy, t.Via = rec.Actor, rec.Via
		return true
	}
	switch rec.Kind {
	case events.AuditApproved, events.AuditAutoApproved:
		if rec.Via == "" && rec.Kind == events.AuditAutoApproved {
			rec.Via = events.ViaAuto
		}
		return change{dirty: decided(StatusApproved)}
	case events.AuditRejected:
		return change{dirty: decided(StatusRejected)}
	case events.AuditClaimed, events.AuditResumed, events.AuditStepStarted:
		return change{dirty: t.setStatus(StatusExecuting)}
	case events.AuditStepResult:
		var r events.StepResult
		if json.Unmarshal(rec.Data, &r) == nil && (r.Status == events.StepSucceeded || r.Status == events.StepSkipped) && r.Index+1 > t.StepsDone {
			t.StepsDone = r.Index + 1
			t.setStatus(StatusExecuting)
			return change{dirty: true}
		}
	case events.AuditVerified:
		if t.setStatus(StatusVerified) {
			t.Detail = verificationDetail(rec)
			return change{dirty: true}
		}
	case events.AuditVerificationFailed:
		if t.setStatus(StatusFailed) {
			t.Detail = "verification failed: " + verificationDetail(rec)
			return change{dirty: true}
		}
	case events.AuditRefused:
		if t.setStatus(StatusRefused) {
			t.Detail = rec.Message
			return change{dirty: true}
		}
	case events.AuditExecutionFinished:
		if t.Status.Terminal() {
			return change{}
		}
		var ex events.Execution
		if json.Unmarshal(rec.Data, &ex) != nil {
			return change{}
		}
		switch {
		case ex.State == events.ExecutionRefused:
			t.setStatus(StatusRefused)
			t.Detail = string(ex.RefusalReason) + ": " + ex.Error
		case ex.State == events.ExecutionSucceeded && ex.Verification != nil && ex.Verification.Healthy:
			t.setStatus(StatusVerified)
			t.Detail = ex.Verification.Message
		case ex.State == events.ExecutionExecuting:
			return change{}
		default:
			t.setStatus(StatusFailed)
			t.Detail = ex.Error
			if t.Detail == "" {
				t.Detail = rec.Message
			}
		}
		return change{dirty: true}
	}
	return change{}
}

func verificationDetail(rec events.AuditRecord) string {
	var v events.Verification
	if json.Unmarshal(rec.Data, &v) == nil && v.PlanID != "" {
		s := fmt.Sprintf("%d/%d replicas ready", v.ReadyReplicas, v.DesiredReplicas)
		if v.Message != "" {
			s += ": " + v.Message
		}
		return s
	}
	return rec.Message
}
