package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TLSFiles names the PEM files of one side of a TLS connection.
type TLSFiles struct {
	// CAFile holds the CA certificates that verify the peer.
	CAFile string
	// CertFile and KeyFile are this side's certificate (chain) and key.
	CertFile string
	KeyFile  string
}

// IsZero reports whether no file is named.
func (f TLSFiles) IsZero() bool { return f == TLSFiles{} }

// options are the nats.go options that set f up on a client.
func (f TLSFiles) options() ([]nats.Option, error) {
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, errors.New("nats tls: a client certificate needs both a cert file and a key file")
	}
	// RootCAs and ClientCert make the connection require TLS (1.2 at
	// least) and read their files at every (re)connection.
	var opts []nats.Option
	if f.CAFile != "" {
		opts = append(opts, nats.RootCAs(f.CAFile))
	}
	if f.CertFile != "" {
		opts = append(opts, nats.ClientCert(f.CertFile, f.KeyFile))
	}
	return opts, nil
}

// ConnectOptions configures a client connection.
type ConnectOptions struct {
	// Name identifies the client in server monitoring ("kaar-executor").
	Name string
	// Logger receives connection events; nil uses slog.Default().
	Logger *slog.Logger
	// CredsFile (a JWT .creds file), NkeyFile (an nkey seed, as kaar
	// serve writes one per role), Token or User/Password authenticate
	// the client.
	CredsFile string
	NkeyFile  string
	Token     string
	User      string
	Password  string
	// TLS verifies the server with TLS.CAFile (the system roots when
	// empty) and presents TLS.CertFile/KeyFile to servers that verify
	// clients. Any field set makes the connection require TLS. The files
	// are read again at every reconnection, so renewed certificates are
	// picked up without a restart.
	TLS TLSFiles
	// InboxPrefix replaces _INBOX for replies: each role may subscribe
	// only under its own (Role.InboxPrefix).
	InboxPrefix string
	// Extra options are applied last and may override the defaults.
	Extra []nats.Option
}

// Connect connects to a NATS server with the reconnect behaviour a
// long-running service needs: reconnect forever (every 2s, jittered),
// buffer up to 8 MiB of publications while disconnected, retry the
// initial connection, and log every disconnect, reconnect and async error
// through slog. It returns once connected, or with ctx's error. A TLS
// mismatch (an unknown certificate authority, a client certificate the
// server refuses, TLS on one side only) ends the wait at once: retrying
// cannot fix a configuration.
func Connect(ctx context.Context, url string, o ConnectOptions) (*nats.Conn, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With(slog.String("nats_client", o.Name))
	tlsOpts, err := o.TLS.options()
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	connected := make(chan struct{}, 1)
	signal := func() {
		select {
		case connected <- struct{}{}:
		default:
		}
	}
	// failed receives the error of a failed first attempt (nats.go
	// reports it through the reconnect error handler when it retries the
	// initial connection).
	failed := make(chan error, 1)
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
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			select {
			case failed <- err:
			default:
			}
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
	auth, err := o.authOptions()
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	opts = append(opts, auth...)
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	opts = append(opts, tlsOpts...)
	opts = append(opts, o.Extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if authRefused(err) {
			return nil, fmt.Errorf("connect to nats %s: %w (%s)", url, err, authHint)
		}
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	if nc.IsConnected() {
		return nc, nil
	}
	return waitConnected(ctx, nc, url, connected, failed, log)
}

// authOptions is the one credential of o that is set, in order of
// precedence: creds file, nkey file, token, user and password; none if
// none is.
func (o ConnectOptions) authOptions() ([]nats.Option, error) {
	switch {
	case o.CredsFile != "":
		return []nats.Option{nats.UserCredentials(o.CredsFile)}, nil
	case o.NkeyFile != "":
		nk, err := NkeyOption(o.NkeyFile)
		if err != nil {
			return nil, err
		}
		return []nats.Option{nk}, nil
	case o.Token != "":
		return []nats.Option{nats.Token(o.Token)}, nil
	case o.User != "":
		return []nats.Option{nats.UserInfo(o.User, o.Password)}, nil
	}
	return nil, nil
}

// waitConnected waits for nc's first connection (connected), giving up at
// once on a failed attempt (failed) that retrying cannot fix, and when ctx
// ends; nc is closed when it gives up.
func waitConnected(ctx context.Context, nc *nats.Conn, url string, connected <-chan struct{}, failed <-chan error, log *slog.Logger) (*nats.Conn, error) {
	var last error
	for {
		select {
		case <-connected:
			return nc, nil
		case err := <-failed:
			if tlsMismatch(err) {
				nc.Close()
				return nil, fmt.Errorf("connect to nats %s: %w (check nats.tls and the server's TLS settings)", url, err)
			}
			if authRefused(err) {
				nc.Close()
				return nil, fmt.Errorf("connect to nats %s: %w (%s)", url, err, authHint)
			}
			last = err
			log.Warn("nats not reachable yet, retrying", slog.String("url", url), slog.Any("error", err))
		case <-ctx.Done():
			if err := nc.LastError(); err != nil {
				last = err
			}
			nc.Close()
			if last != nil {
				return nil, fmt.Errorf("connect to nats %s: %w (last attempt: %v)", url, ctx.Err(), last)
			}
			return nil, fmt.Errorf("connect to nats %s: %w", url, ctx.Err())
		}
	}
}

const authHint = "check the credentials: --creds, nats.nkey_file, nats.creds_file or nats.user and nats.password; " +
	"kaar serve writes one nkey seed per role in ~/.local/state/kaar/credentials"

// authRefused reports a server that refused the credentials (or their
// absence): retrying cannot fix that either.
func authRefused(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) ||
		err != nil && strings.Contains(strings.ToLower(err.Error()), "authorization violation")
}

// tlsMismatch reports errors that retrying cannot fix: client and server
// disagree on TLS or on who signs the certificates.
func tlsMismatch(err error) bool {
	var (
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		host    x509.HostnameError
		op      *net.OpError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &host):
		return true
	case errors.Is(err, nats.ErrSecureConnWanted), errors.Is(err, nats.ErrSecureConnRequired):
		return true
	}
	// The server refused our certificate, or its absence: with TLS 1.2
	// it says so in an alert ("remote error: tls: certificate
	// required"); with TLS 1.3 the client's handshake completes first
	// and the server then closes the connection, which nats.go reports
	// as such.
	return errors.As(err, &op) && op.Op == "remote error" ||
		errors.Is(err, nats.ErrTLS) && strings.Contains(err.Error(), "closed by remote after TLS handshake")
}

// NewJetStream is the JetStream context of a service: the local server's
// when domain is empty, else the JetStream of that domain (a central bus
// reached through a leaf node, nats.jetstream_domain).
func NewJetStream(nc *nats.Conn, domain string) (jetstream.JetStream, error) {
	if domain == "" {
		return jetstream.New(nc)
	}
	return jetstream.NewWithDomain(nc, domain)
}
