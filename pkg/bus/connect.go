package bus

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnectOptions configures a client connection.
type ConnectOptions struct {
	// Name identifies the client in server monitoring ("kaar-executor").
	Name string
	// Logger receives connection events; nil uses slog.Default().
	Logger *slog.Logger
	// CredsFile, Token or User/Password authenticate the client.
	CredsFile string
	Token     string
	User      string
	Password  string
	// Extra options are applied last and may override the defaults.
	Extra []nats.Option
}

// Connect connects to a NATS server with the reconnect behaviour a
// long-running service needs: reconnect forever (every 2s, jittered),
// buffer up to 8 MiB of publications while disconnected, retry the
// initial connection, and log every disconnect, reconnect and async error
// through slog. It returns once connected, or with ctx's error.
func Connect(ctx context.Context, url string, o ConnectOptions) (*nats.Conn, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With(slog.String("nats_client", o.Name))
	connected := make(chan struct{}, 1)
	signal := func() {
		select {
		case connected <- struct{}{}:
		default:
		}
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(2 * time.Second),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.ReconnectBufSize(8 << 20),
		nats.RetryOnFailedConnect(true),
		nats.PingInterval(20 * time.Second),
		nats.ConnectHandler(func(*nats.Conn) { signal() }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", slog.Any("error", err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", slog.String("url", nc.ConnectedUrlRedacted()))
			signal()
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Debug("nats connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{slog.Any("error", err)}
			if sub != nil {
				attrs = append(attrs, slog.String("subject", sub.Subject))
			}
			log.Error("nats async error", attrs...)
		}),
	}
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	opts = append(opts, o.Extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	if nc.IsConnected() {
		return nc, nil
	}
	select {
	case <-connected:
		return nc, nil
	case <-ctx.Done():
		nc.Close()
		return nil, fmt.Errorf("connect to nats %s: %w", url, ctx.Err())
	}
}
