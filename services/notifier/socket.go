package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Socket Mode (https://api.slack.com/apis/socket-mode): for clusters that
// Slack cannot reach over HTTP, the notifier opens a WebSocket to Slack
// itself. apps.connections.open, called with the app-level xapp- token,
// returns a single-use wss:// URL; Slack then sends "hello", envelopes
// ("interactive" for button clicks) and, before it recycles the
// connection, "disconnect". Every envelope is acknowledged at once by
// sending {"envelope_id": ...} back (Slack redelivers envelopes that are
// not acknowledged within 3 seconds), then its payload takes exactly the
// path of a signed HTTP interaction (interact). No request signature is
// involved: the app token authenticates the socket.

const (
	// socketPingInterval is how often the notifier pings Slack, so a
	// connection that died silently is noticed and replaced.
	socketPingInterval = 30 * time.Second
	socketPingTimeout  = 15 * time.Second
	// socketWriteTimeout bounds an acknowledgement.
	socketWriteTimeout = 5 * time.Second
	// socketWorkers bounds the interactions processed at once.
	socketWorkers = 8
	// socketDrain is how long interactions already acknowledged may go
	// on after the notifier is asked to stop.
	socketDrain = 5 * time.Second
)

// socketEnvelope is a Socket Mode message from Slack.
type socketEnvelope struct {
	Type       string          `json:"type"`
	EnvelopeID string          `json:"envelope_id"`
	Payload    json.RawMessage `json:"payload"`
	// Reason is set on "disconnect": warning, refresh_requested or
	// link_disabled.
	Reason string `json:"reason"`
}

// errSocketDisconnect reports that Slack asked for a new connection.
var errSocketDisconnect = errors.New("slack socket mode: disconnect requested")

// runSocket keeps one Socket Mode connection open until ctx ends: a
// connection Slack asks to replace is replaced at once, one that fails or
// drops is reopened with backoff (RetryBase doubling to RetryMax, from
// RetryBase again once a connection has said hello). It returns nil when
// ctx ends, after the interactions already acknowledged are done.
func (s *Service) runSocket(ctx context.Context) error {
	// Acknowledged clicks are finished even when ctx ends meanwhile, for
	// at most socketDrain, as the HTTP server's shutdown lets requests
	// finish.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopDrain := context.AfterFunc(ctx, func() { time.AfterFunc(socketDrain, cancelWork) })
	defer stopDrain()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, socketWorkers)
	dispatch := func(env socketEnvelope) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.interact(work, env.Payload, "socket"); err != nil {
				s.log.Warn("slack socket mode: interaction ignored", slog.String("envelope", env.EnvelopeID), slog.Any("error", err))
			}
		})
	}

	var failures uint64
	for {
		hello, err := s.socketSession(ctx, dispatch)
		s.metrics.socketUp.Set(0)
		if ctx.Err() != nil {
			return nil
		}
		if hello {
			failures = 0
		}
		if errors.Is(err, errSocketDisconnect) && hello {
			s.log.Info("slack socket mode: reconnecting as Slack asked", slog.Any("reason", err))
			continue
		}
		failures++
		d := backoff(s.cfg.RetryBase, s.cfg.RetryMax, failures)
		level := slog.LevelWarn
		if errors.Is(err, ErrSlackPermanent) {
			level = slog.LevelError // a bad or revoked app token: retried, but say so loudly
		}
		s.log.Log(ctx, level, "slack socket mode: connection lost, reconnecting", slog.Duration("in", d), slog.Any("error", err))
		s.metrics.socketReconnects.Inc()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// socketSession opens one connection and reads it until it fails, Slack
// asks for a new one, or ctx ends. hello reports whether Slack greeted
// the connection.
func (s *Service) socketSession(ctx context.Context, dispatch func(socketEnvelope)) (hello bool, err error) {
	conn, err := s.socketDial(ctx)
	if err != nil {
		return false, err
	}
	defer func() { _ = conn.CloseNow() }() // the session is over either way
	conn.SetReadLimit(maxBody)

	cctx, stop := context.WithCancel(ctx)
	var pinger sync.WaitGroup
	defer pinger.Wait()
	defer stop()
	pinger.Go(func() { s.socketPing(cctx, conn) })

	for {
		typ, data, err := conn.Read(cctx)
		if err != nil {
			if ctx.Err() != nil {
				return hello, nil
			}
			return hello, fmt.Errorf("slack socket mode: read: %w", err)
		}
		if typ != websocket.MessageText {
			continue
		}
		var env socketEnvelope
		if err := json.Unmarshal(data, &env); err != nil {
			s.log.Warn("slack socket mode: undecodable message ignored", slog.Int("bytes", len(data)), slog.Any("error", err))
			continue
		}
		if env.EnvelopeID != "" {
			if err := socketAck(cctx, conn, env.EnvelopeID); err != nil {
				// Not acknowledged: Slack sends the envelope again on the
				// next connection, so it is not processed here.
				if ctx.Err() != nil {
					return hello, nil
				}
				return hello, fmt.Errorf("slack socket mode: acknowledge %s: %w", env.EnvelopeID, err)
			}
		}
		switch env.Type {
		case "hello":
			if !hello {
				s.log.Info("slack socket mode connected")
			}
			hello = true
			s.metrics.socketUp.Set(1)
		case "disconnect":
			_ = conn.Close(websocket.StatusNormalClosure, "")
			return hello, fmt.Errorf("%w (%s)", errSocketDisconnect, env.Reason)
		case "interactive":
			if env.EnvelopeID == "" || len(env.Payload) == 0 {
				s.log.Warn("slack socket mode: interactive envelope without id or payload ignored")
				continue
			}
			dispatch(env)
		default:
			// events_api, slash_commands and anything newer: acknowledged,
			// not kaar's.
			s.log.Debug("slack socket mode: envelope ignored", slog.String("type", env.Type))
		}
	}
}

// socketDial asks Slack for a Socket Mode URL and connects to it.
func (s *Service) socketDial(ctx context.Context) (*websocket.Conn, error) {
	octx, cancel := context.WithTimeout(ctx, s.cfg.DeliveryTimeout)
	u, err := s.socket.OpenConnection(octx)
	cancel()
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, s.cfg.DeliveryTimeout)
	conn, resp, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPClient: s.hc})
	cancel()
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("slack socket mode: connect: %w", err)
	}
	return conn, nil
}

// socketAck acknowledges the envelope id, within socketWriteTimeout.
func socketAck(ctx context.Context, conn *websocket.Conn, id string) error {
	ack, _ := json.Marshal(map[string]string{"envelope_id": id})
	wctx, cancel := context.WithTimeout(ctx, socketWriteTimeout)
	defer cancel()
	return conn.Write(wctx, websocket.MessageText, ack)
}

// socketPing pings Slack every socketPingInterval and closes conn when a
// pong does not come back, which ends the session's read.
func (s *Service) socketPing(ctx context.Context, conn *websocket.Conn) {
	t := time.NewTicker(socketPingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, socketPingTimeout)
		err := conn.Ping(pctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("slack socket mode: ping failed", slog.Any("error", err))
				_ = conn.CloseNow()
			}
			return
		}
	}
}
