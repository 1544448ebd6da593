package notifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
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
}

// ErrSlackPermanent marks a Slack API error that retrying will not fix
// (bad token, channel not found, message not found).
var ErrSlackPermanent = errors.New("slack api: permanent error")

// slackClient calls the Web API over HTTP.
type slackClient struct {
	base  string
	token string
	hc    *http.Client
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+method, bytes.NewReader(b))
	if err != nil {
		return out, fmt.Errorf("slack %s: %w", method, err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return out, fmt.Errorf("slack %s: %w", method, err)
	}
	defer func() { _ = resp.Body.Close() }() // a response body: closing only frees the connection
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return out, fmt.Errorf("slack %s: HTTP %d (retry after %q)", method, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("slack %s: HTTP %d, undecodable answer: %w", method, resp.StatusCode, err)
	}
	if !out.OK {
		switch out.Error {
		case "ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout":
			return out, fmt.Errorf("slack %s: %s", method, out.Error)
		}
		return out, fmt.Errorf("slack %s: %s: %w", method, out.Error, ErrSlackPermanent)
	}
	return out, nil
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
