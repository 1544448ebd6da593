package notifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SlackAPI is the part of Slack's Web API the notifier calls.
type SlackAPI interface {
	// PostMessage posts to channel (in the thread threadTS when set) and
	// returns the channel id and the message ts.
	PostMessage(ctx context.Context, msg SlackMessage) (channel, ts string, err error)
	// UpdateMessage replaces the message channel/ts.
	UpdateMessage(ctx context.Context, msg SlackMessage) error
}

// SlackMessage is the body of chat.postMessage and chat.update.
type SlackMessage struct {
	Channel  string  `json:"channel"`
	TS       string  `json:"ts,omitempty"`
	ThreadTS string  `json:"thread_ts,omitempty"`
	Text     string  `json:"text"`
	Blocks   []Block `json:"blocks,omitempty"`
	// Metadata is Slack message metadata: what lets kaar find a message
	// it posted without learning its ts (see postFinder).
	Metadata *SlackMetadata `json:"metadata,omitempty"`
}

// SlackMetadata is a message's metadata (event_type, event_payload).
type SlackMetadata struct {
	EventType    string            `json:"event_type"`
	EventPayload map[string]string `json:"event_payload"`
}

// postFinder finds a message posted to channel since oldest whose
// metadata has eventType and payload[key] == value, and returns its ts
// ("" when there is none). The Web API client implements it with
// conversations.history (scope channels:history, or groups:history for
// a private channel).
type postFinder interface {
	FindPosted(ctx context.Context, channel string, oldest time.Time, eventType, key, value string) (string, error)
}

// ErrSlackPermanent marks a Slack API error that retrying will not fix
// (bad token, channel not found, message not found).
var ErrSlackPermanent = errors.New("slack api: permanent error")

// slackClient calls the Web API over HTTP.
type slackClient struct {
	base  string
	token string
	hc    *http.Client

	// botID is this token's bot (auth.test), learnt on the first
	// FindPosted: only the bot's own messages are adopted.
	botMu sync.Mutex
	botID string
}

func newSlackClient(base, token string, hc *http.Client) *slackClient {
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	return &slackClient{base: base, token: token, hc: hc}
}

type slackResponse struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error"`
	Channel string `json:"channel"`
	TS      string `json:"ts"`
	URL     string `json:"url"` // apps.connections.open
}

func (c *slackClient) call(ctx context.Context, method string, body any) (slackResponse, error) {
	var out slackResponse
	b, err := json.Marshal(body)
	if err != nil {
		return out, fmt.Errorf("slack %s: encode: %w", method, err)
	}
	err = c.do(ctx, method, "application/json; charset=utf-8", b, &out)
	return out, err
}

// do posts one Web API call and decodes its answer into out (which
// embeds or is a slackResponse); an answer that is not ok is an error,
// ErrSlackPermanent unless retrying may help.
func (c *slackClient) do(ctx context.Context, method, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+method, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("slack %s: %w", method, err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("slack %s: %w", method, err)
	}
	defer func() { _ = resp.Body.Close() }() // a response body: closing only frees the connection
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return fmt.Errorf("slack %s: HTTP %d (retry after %q)", method, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	var status slackResponse
	if err := errors.Join(json.Unmarshal(raw, &status), json.Unmarshal(raw, out)); err != nil {
		return fmt.Errorf("slack %s: HTTP %d, undecodable answer: %w", method, resp.StatusCode, err)
	}
	if !status.OK {
		switch status.Error {
		case "ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout":
			return fmt.Errorf("slack %s: %s", method, status.Error)
		}
		return fmt.Errorf("slack %s: %s: %w", method, status.Error, ErrSlackPermanent)
	}
	return nil
}

// bot returns the token's bot id (auth.test), asked once.
func (c *slackClient) bot(ctx context.Context) (string, error) {
	c.botMu.Lock()
	defer c.botMu.Unlock()
	if c.botID != "" {
		return c.botID, nil
	}
	var r struct {
		slackResponse
		BotID string `json:"bot_id"`
	}
	if err := c.do(ctx, "auth.test", "application/x-www-form-urlencoded", nil, &r); err != nil {
		return "", err
	}
	if r.BotID == "" {
		return "", fmt.Errorf("slack auth.test: the token is not a bot token (no bot_id): %w", ErrSlackPermanent)
	}
	c.botID = r.BotID
	return c.botID, nil
}

// historyPages bounds how far FindPosted pages back (200 messages a page).
const historyPages = 5

// FindPosted reads the channel's history since oldest (newest first)
// with the messages' metadata, and returns the ts of the first message
// whose metadata matches.
func (c *slackClient) FindPosted(ctx context.Context, channel string, oldest time.Time, eventType, key, value string) (string, error) {
	bot, err := c.bot(ctx)
	if err != nil {
		return "", err
	}
	cursor := ""
	for range historyPages {
		form := url.Values{"channel": {channel}, "oldest": {strconv.FormatInt(oldest.Unix(), 10)}, "limit": {"200"}, "include_all_metadata": {"true"}}
		if cursor != "" {
			form.Set("cursor", cursor)
		}
		var page struct {
			Messages []struct {
				TS       string        `json:"ts"`
				BotID    string        `json:"bot_id"`
				Metadata SlackMetadata `json:"metadata"`
			} `json:"messages"`
			ResponseMetadata struct {
				NextCursor string `json:"next_cursor"`
			} `json:"response_metadata"`
		}
		if err := c.do(ctx, "conversations.history", "application/x-www-form-urlencoded", []byte(form.Encode()), &page); err != nil {
			return "", err
		}
		for _, m := range page.Messages {
			// Another app in the channel may post the same metadata:
			// only this bot's message is the one it posted.
			if m.BotID == bot && m.Metadata.EventType == eventType && m.Metadata.EventPayload[key] == value {
				return m.TS, nil
			}
		}
		if cursor = page.ResponseMetadata.NextCursor; cursor == "" {
			return "", nil
		}
	}
	return "", nil
}

func (c *slackClient) PostMessage(ctx context.Context, msg SlackMessage) (string, string, error) {
	msg.TS = ""
	r, err := c.call(ctx, "chat.postMessage", msg)
	return r.Channel, r.TS, err
}

func (c *slackClient) UpdateMessage(ctx context.Context, msg SlackMessage) error {
	msg.ThreadTS = ""
	_, err := c.call(ctx, "chat.update", msg)
	return err
}

// OpenConnection calls apps.connections.open (with an app-level token) and
// returns the Socket Mode WebSocket URL; it is good for one connection.
func (c *slackClient) OpenConnection(ctx context.Context) (string, error) {
	r, err := c.call(ctx, "apps.connections.open", struct{}{})
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(r.URL, "wss://") && !strings.HasPrefix(r.URL, "ws://") {
		return "", fmt.Errorf("slack apps.connections.open: answer has no WebSocket URL")
	}
	return r.URL, nil
}
