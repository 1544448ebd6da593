package notifier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/kaar-dev/kaar/pkg/events"
)

// InboundDecision is the body of POST /webhooks/approval, signed like an
// outbound delivery (Kaar-Timestamp, Kaar-Signature) with the secret of
// one of notify.inbound.senders.
type InboundDecision struct {
	PlanID string `json:"plan_id"`
	// Digest is the plan digest the caller reviewed (required: an
	// approval approves exactly what was seen).
	Digest string `json:"digest"`
	// Decision is "approved" or "rejected".
	Decision events.DecisionKind `json:"decision"`
	// DecidedBy is who decides: always the name of the sender whose
	// secret signed the request. It may be omitted; any other value is
	// refused (400, field decided_by).
	DecidedBy string `json:"decided_by,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// InboundAnswer is the JSON answer of the inbound webhook.
type InboundAnswer struct {
	PlanID    string `json:"plan_id,omitempty"`
	Decision  string `json:"decision,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Error     string `json:"error,omitempty"`
	// Field names the bad field of a 400 answer.
	Field string `json:"field,omitempty"`
}

// handleInbound publishes a decision from another tool (Via webhook).
// Answers: 202 published, 400 bad body (names the field), 401 bad or old
// signature, 404 unknown or expired plan, 409 digest mismatch or plan
// not waiting for a decision, 410 approval window ended.
func (s *Service) handleInbound(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, InboundAnswer{Error: "body too large"})
		return
	}
	sender, err := s.inboundSender(r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body)
	if err != nil {
		reason := "bad_signature"
		if errors.Is(err, ErrStaleRequest) {
			reason = "stale_timestamp"
		}
		s.metrics.refused.WithLabelValues("webhook", reason).Inc()
		s.log.Warn("inbound webhook refused", slog.String("reason", reason), slog.String("remote", r.RemoteAddr))
		writeJSON(w, http.StatusUnauthorized, InboundAnswer{Error: "invalid signature"})
		return
	}
	var in InboundDecision
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, InboundAnswer{Error: "invalid JSON: " + err.Error()})
		return
	}
	if in.DecidedBy != "" && in.DecidedBy != sender {
		s.metrics.refused.WithLabelValues("webhook", "decided_by").Inc()
		s.log.Warn("inbound webhook refused: decided_by names someone else", slog.String("sender", sender), slog.String("decided_by", in.DecidedBy))
		writeJSON(w, http.StatusBadRequest, InboundAnswer{PlanID: in.PlanID, Field: "decided_by",
			Error: fmt.Sprintf("decided_by %q is not the sender whose secret signed the request (%q): the decision is recorded as that sender's; omit decided_by", in.DecidedBy, sender)})
		return
	}
	d := events.Decision{PlanID: in.PlanID, Digest: in.Digest, Decision: in.Decision, DecidedBy: sender,
		Via: events.ViaWebhook, At: s.now().UTC(), Reason: in.Reason}
	if err := d.Validate(); err != nil {
		var ve *events.ValidationError
		ans := InboundAnswer{Error: err.Error()}
		if errors.As(err, &ve) {
			ans.Field = ve.Field
		}
		writeJSON(w, http.StatusBadRequest, ans)
		return
	}
	_, dup, err := s.decide(r.Context(), d)
	if err != nil {
		code := http.StatusServiceUnavailable
		switch {
		case errors.Is(err, ErrPlanNotFound):
			code = http.StatusNotFound
		case errors.Is(err, ErrDigestMismatch), errors.Is(err, ErrNotProposed), errors.Is(err, ErrDiagnosticOnly):
			code = http.StatusConflict
		case errors.Is(err, ErrPlanExpired):
			code = http.StatusGone
		}
		writeJSON(w, code, InboundAnswer{PlanID: in.PlanID, Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, InboundAnswer{PlanID: in.PlanID, Decision: string(in.Decision), Duplicate: dup})
}

// inboundSender returns the name of the sender whose secret made the
// signature. Every secret is compared (no early exit), so the time taken
// says nothing about which sender matched.
func (s *Service) inboundSender(tsHeader, sigHeader string, body []byte) (string, error) {
	ts, err := checkTimestamp(tsHeader, s.now(), s.cfg.SignatureWindow)
	if err != nil {
		return "", err
	}
	found := ""
	for _, snd := range s.cfg.inboundSenders() {
		if compareSig(sigHeader, Sign(snd.Secret, ts, body)) == nil && found == "" {
			found = snd.Name
		}
	}
	if found == "" {
		return "", ErrBadSignature
	}
	return found, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
