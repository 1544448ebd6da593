package notifier

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kaar-dev/kaar/pkg/events"
)

// receiver delivers one webhook receiver's events.
//
// Delivery contract (documented for receivers in README.md):
//   - one HTTP POST per event, body a CloudEvents 1.0 structured-mode JSON
//     document (Content-Type application/cloudevents+json): the kaar
//     envelope as it is on the bus;
//   - signed: Kaar-Timestamp (Unix seconds) and Kaar-Signature
//     "v1=" + hex HMAC-SHA256(secret, timestamp + "." + body);
//   - in order: the next event is sent only once this one was accepted
//     (any 2xx);
//   - at least once: a failure (network error, timeout, 408, 429, 5xx) is
//     retried with exponential backoff, without limit, from a durable
//     JetStream consumer, so a receiver that is down gets every event
//     when it comes back, and so does a restarted notifier. A receiver
//     may therefore see an event twice: deduplicate on the CloudEvent id
//     (also in the Kaar-Event-Id header);
//   - any other 4xx is the receiver refusing the event: it is dropped
//     (logged and counted), so one bad event cannot block the rest.
type receiver struct {
	cfg WebhookConfig
	s   *Service
}

func (r *receiver) handle(ctx context.Context, m jetstream.Msg) {
	s := r.s
	env, err := events.Decode(m.Data())
	if err != nil {
		s.log.Warn("webhook: skipping an undecodable event", slog.String("receiver", r.cfg.Name), slog.String("subject", m.Subject()), slog.Any("error", err))
		_ = m.Term()
		return
	}
	if skip, err := r.warning(ctx, env); skip || err != nil {
		if err != nil {
			s.log.Warn("webhook: recording a warning failed: will retry", slog.String("receiver", r.cfg.Name), slog.Any("error", err))
			_ = m.NakWithDelay(backoff(s.cfg.RetryBase, s.cfg.RetryMax, 1))
			return
		}
		s.metrics.deliveries.WithLabelValues(r.cfg.Name, "warning_skipped").Inc()
		_ = m.Ack()
		return
	}
	attempt := uint64(1)
	if md, err := m.Metadata(); err == nil {
		attempt = md.NumDelivered
	}
	permanent, err := r.deliver(ctx, env, m.Data(), attempt)
	log := s.log.With(slog.String("receiver", r.cfg.Name), slog.String("event", env.ID), slog.String("type", env.Type), slog.Uint64("attempt", attempt))
	switch {
	case err == nil:
		s.metrics.deliveries.WithLabelValues(r.cfg.Name, "ok").Inc()
		log.Debug("webhook delivered")
		_ = m.Ack()
	case permanent:
		s.metrics.deliveries.WithLabelValues(r.cfg.Name, "dropped").Inc()
		log.Error("webhook receiver refused the event: dropped", slog.Any("error", err))
		_ = m.Ack()
	case ctx.Err() != nil:
		_ = m.Nak() // shutting down: delivered again at the next start
	default:
		s.metrics.deliveries.WithLabelValues(r.cfg.Name, "retry").Inc()
		d := backoff(s.cfg.RetryBase, s.cfg.RetryMax, attempt)
		log.Warn("webhook delivery failed: will retry", slog.Duration("in", d), slog.Any("error", err))
		_ = m.NakWithDelay(d)
	}
}

// warning reports a warning's transition, which is recorded for the
// digest instead of delivered: a receiver gets warnings once per digest
// period (TypeWarningDigest), never one delivery per warning. Plans of
// warnings (made only when someone asks) are delivered like any plan.
func (r *receiver) warning(ctx context.Context, env events.Envelope) (bool, error) {
	if !strings.HasPrefix(env.Type, "dev.kaar.incident.") {
		return false, nil
	}
	ev, err := events.DecodeData[events.IncidentEvent](env)
	if err != nil || !ev.Incident.Type.IsWarning() {
		return false, nil // delivered as it is, as before
	}
	return true, r.s.recordWarning(ctx, ev)
}

// deliver POSTs one event; permanent reports a refusal not worth
// retrying.
func (r *receiver) deliver(ctx context.Context, env events.Envelope, body []byte, attempt uint64) (permanent bool, err error) {
	s := r.s
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DeliveryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return true, err
	}
	ts := s.now().Unix()
	req.Header.Set("Content-Type", events.ContentTypeCloudEvents)
	req.Header.Set("User-Agent", "kaar-notifier")
	req.Header.Set(HeaderEventID, env.ID)
	req.Header.Set(HeaderEventType, env.Type)
	req.Header.Set(HeaderAttempt, strconv.FormatUint(attempt, 10))
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(r.cfg.Secret, ts, body))
	resp, err := s.hc.Do(req)
	if err != nil {
		return false, err
	}
	defer func() { _ = resp.Body.Close() }() // a response body: closing only frees the connection
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return false, fmt.Errorf("HTTP %d", c)
	default:
		return true, fmt.Errorf("HTTP %d", c)
	}
}
