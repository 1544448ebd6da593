package notifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// maxBody bounds inbound request bodies.
const maxBody = 1 << 20

// interaction is the part of Slack's block_actions payload kaar reads.
type interaction struct {
	Type string `json:"type"`
	User struct {
		ID       string `json:"id"`
		Username string `json:"username"`
		Name     string `json:"name"`
		// TeamID is the user's own workspace (another one for a user of
		// a shared channel).
		TeamID string `json:"team_id"`
	} `json:"user"`
	// Team is the workspace the click happened in.
	Team struct {
		ID string `json:"id"`
	} `json:"team"`
	Channel struct {
		ID string `json:"id"`
	} `json:"channel"`
	Container struct {
		ChannelID string `json:"channel_id"`
		MessageTS string `json:"message_ts"`
	} `json:"container"`
	ResponseURL string `json:"response_url"`
	Actions     []struct {
		ActionID string `json:"action_id"`
		Value    string `json:"value"`
	} `json:"actions"`
}

func (i *interaction) userName() string {
	if i.User.Username != "" {
		return i.User.Username
	}
	return i.User.Name
}

func (i *interaction) channelID() string {
	if i.Channel.ID != "" {
		return i.Channel.ID
	}
	return i.Container.ChannelID
}

// handleInteraction is Slack's interactivity request URL. It answers 401
// and changes nothing unless the request carries a valid v0 signature
// made within the signature window; the payload then takes the same path
// as one that came over Socket Mode (interact).
func (s *Service) handleInteraction(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if err := VerifySlack(s.cfg.Slack.SigningSecret, r.Header.Get(slackTimestampHeader), r.Header.Get(slackSignatureHeader),
		body, s.now(), s.cfg.SignatureWindow); err != nil {
		reason := "bad_signature"
		if errors.Is(err, ErrStaleRequest) {
			reason = "stale_timestamp"
		}
		s.metrics.refused.WithLabelValues("slack", reason).Inc()
		s.log.Warn("slack interaction refused", slog.String("reason", reason), slog.String("remote", r.RemoteAddr))
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		http.Error(w, "bad form body", http.StatusBadRequest)
		return
	}
	if err := s.interact(r.Context(), []byte(form.Get("payload")), "http"); err != nil {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// errBadPayload is interact's answer to a payload that is not JSON.
var errBadPayload = errors.New("slack interaction: undecodable payload")

// interact acts on one interaction payload (JSON), whichever transport
// brought it: the signed HTTP request or a Socket Mode envelope
// (transport "http" or "socket", for the logs). Only block_actions with a
// kaar button count; clicks of users or from channels the configuration
// does not allow get an ephemeral refusal and change nothing. An allowed
// click publishes the decision naming the Slack user, via slack, for the
// digest the button carried. The error is errBadPayload or nil: refusals
// are answered in Slack, not to the transport.
func (s *Service) interact(ctx context.Context, payload []byte, transport string) error {
	var in interaction
	if err := json.Unmarshal(payload, &in); err != nil {
		return errBadPayload
	}
	if in.Type != "block_actions" || len(in.Actions) == 0 {
		return nil // other interaction types are not kaar's
	}
	a := in.Actions[0]
	kind := map[string]events.DecisionKind{ActionApprove: events.DecisionApproved, ActionReject: events.DecisionRejected}[a.ActionID]
	planID, digest, ok := parseButtonValue(a.Value)
	if kind == "" || !ok {
		return nil
	}
	if msg := s.refuseClick(ctx, &in, planID); msg != "" {
		s.metrics.refused.WithLabelValues("slack", "not_allowed").Inc()
		s.log.Warn("slack click refused", slog.String("plan", planID), slog.String("user", in.User.ID),
			slog.String("channel", in.channelID()), slog.String("transport", transport), slog.String("why", msg))
		s.respond(ctx, in.ResponseURL, msg)
		return nil
	}
	by := in.User.ID
	if n := in.userName(); n != "" {
		by = n + " (" + in.User.ID + ")"
	}
	d := events.Decision{PlanID: planID, Digest: digest, Decision: kind, DecidedBy: by, Via: events.ViaSlack}
	if kind == events.DecisionRejected {
		d.Reason = "rejected in Slack"
	}
	p, dup, err := s.decide(ctx, d)
	if err != nil {
		s.log.Warn("slack decision refused", slog.String("plan", planID), slog.String("user", by),
			slog.String("transport", transport), slog.Any("error", err))
		s.respond(ctx, in.ResponseURL, ":warning: "+refusalText(err))
		return nil
	}
	if !dup {
		err := s.updateThread(ctx, threadKey(p), func(t *thread) change {
			if t.Plan == nil || t.Plan.ID != p.ID || !t.setStatus(StatusDecisionSent) {
				return change{}
			}
			t.DecidedBy, t.Via = by, events.ViaSlack
			return change{dirty: true}
		})
		if err != nil {
			s.log.Warn("slack: show the decision", slog.String("plan", p.ID), slog.Any("error", err))
		}
	}
	return nil
}

// refuseClick says why a click may not decide, or "" when it may.
func (s *Service) refuseClick(ctx context.Context, in *interaction, planID string) string {
	// Ids only: a user can change their name to an allowed one.
	if in.User.ID == "" || !slices.Contains(s.cfg.Slack.AllowedUsers, in.User.ID) {
		return ":no_entry: You are not allowed to approve or reject kaar plans (notify.slack.allowed_users)."
	}
	// The workspace of the click and the user's own: a user id of
	// another workspace sharing the channel is not one of ours.
	teams := s.cfg.Slack.AllowedTeams
	if in.Team.ID == "" && in.User.TeamID == "" ||
		in.Team.ID != "" && !slices.Contains(teams, in.Team.ID) ||
		in.User.TeamID != "" && !slices.Contains(teams, in.User.TeamID) {
		return ":no_entry: kaar plans can be decided only from kaar's Slack workspace (notify.slack.allowed_teams)."
	}
	ch := in.channelID()
	allowed := s.cfg.Slack.AllowedChannels
	if len(allowed) == 0 {
		allowed = []string{s.cfg.Slack.Channel}
		if e, err := s.state.Get(ctx, s.planKV(planID)); err == nil {
			if t, err := s.loadThread(ctx, string(e.Value())); err == nil && t.Channel != "" {
				allowed = append(allowed, t.Channel)
			}
		}
	}
	if ch == "" || !slices.Contains(allowed, ch) {
		return ":no_entry: kaar plans cannot be decided from this channel (notify.slack.allowed_channels)."
	}
	return ""
}

func refusalText(err error) string {
	switch {
	case errors.Is(err, ErrPlanNotFound):
		return "This plan no longer exists: its approval window passed."
	case errors.Is(err, ErrDigestMismatch):
		return "This plan changed since the message was posted: nothing was decided."
	case errors.Is(err, ErrNotProposed):
		return "This plan is no longer waiting for a decision."
	case errors.Is(err, ErrPlanExpired):
		return "This plan's approval window has ended."
	case errors.Is(err, ErrDiagnosticOnly):
		return "This plan is diagnostic-only: there is nothing to approve."
	}
	return "kaar could not record the decision; try again."
}

// respond posts an ephemeral answer to the clicking user through the
// interaction's response_url (only to Slack, or to the configured API
// host in tests).
func (s *Service) respond(ctx context.Context, responseURL, text string) {
	u, err := url.Parse(responseURL)
	if err != nil || responseURL == "" {
		return
	}
	api, _ := url.Parse(s.cfg.Slack.APIURL)
	if !(u.Scheme == "https" && u.Host == "hooks.slack.com") && (api == nil || u.Host != api.Host || u.Scheme != api.Scheme) {
		return
	}
	b, _ := json.Marshal(map[string]any{"response_type": "ephemeral", "replace_original": false, "text": text})
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, responseURL, bytes.NewReader(b))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.hc.Do(req)
	if err != nil {
		s.log.Warn("slack response_url", slog.Any("error", err))
		return
	}
	_ = resp.Body.Close()
}
