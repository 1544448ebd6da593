package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// RandomPort asks the embedded server to listen on a free port.
const RandomPort = server.RANDOM_PORT

// EmbeddedOptions configures an in-process NATS JetStream server.
type EmbeddedOptions struct {
	// ServerName defaults to "kaar-embedded".
	ServerName string
	// StoreDir is the JetStream file storage directory. Empty means a
	// temporary directory removed by Shutdown (tests, demos).
	StoreDir string
	// Host defaults to 127.0.0.1.
	Host string
	// Port defaults to 4222; RandomPort picks a free one.
	Port int
	// DontListen serves in-process clients only (Embedded.Connect); no TCP
	// port is opened.
	DontListen bool
	// MaxMemory and MaxStore bound JetStream memory and file storage in
	// bytes; 0 lets the server choose (a share of RAM and disk).
	MaxMemory int64
	MaxStore  int64
	// TLS.CertFile and TLS.KeyFile, when set, make the client port
	// require TLS with that certificate, whose names must include the
	// host clients dial. TLS.CAFile verifies client certificates.
	// In-process clients (Embedded.Connect) need no TLS.
	TLS TLSFiles
	// VerifyClients refuses clients without a certificate signed by a CA
	// of TLS.CAFile (mutual TLS).
	VerifyClients bool
	// Logger receives the server's log lines; nil silences the server.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept connections;
	// default 10s.
	ReadyTimeout time.Duration
	// Credentials are the users the server accepts: one nkey per role,
	// each limited to Role.Permissions. Nil makes ephemeral ones (tests).
	// The server never accepts an anonymous client.
	Credentials *Credentials
	// Cluster, when its Port is set, joins this server to a JetStream
	// cluster over routes (every server of the cluster given the same
	// Credentials, so each role is the same user on every node).
	Cluster ClusterOptions
	// JetStreamDomain names this server's JetStream, for the clients of
	// other servers linked by leaf nodes ($JS.<domain>.API): the hub's,
	// and a leaf cluster's own (LeafDomain).
	JetStreamDomain string
	// LeafNodes makes this server a hub that accepts leaf nodes.
	LeafNodes LeafNodeOptions
	// LeafRemote makes this server a leaf node of a hub.
	LeafRemote LeafRemoteOptions
}

// ClusterOptions are an embedded server's cluster (route) settings.
type ClusterOptions struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// Host and Port are where this node listens for routes (Host
	// defaults to 127.0.0.1).
	Host string
	Port int
	// Routes are the route URLs of the cluster's nodes
	// (nats-route://127.0.0.1:6222); this node's own may be among them.
	Routes []string
}

// Embedded is a running in-process NATS server with JetStream.
type Embedded struct {
	srv     *server.Server
	tempDir string
	logger  *slog.Logger
	creds   *Credentials
	// owner is this process's own identity, allowed everything; its
	// seed never leaves memory, so only code holding the Embedded can
	// use it (Connect).
	owner nkeys.KeyPair
}

// StartEmbedded starts a NATS server with JetStream in this process and
// waits until it accepts connections.
func StartEmbedded(ctx context.Context, o EmbeddedOptions) (*Embedded, error) {
	if o.ServerName == "" {
		o.ServerName = "kaar-embedded"
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = server.DEFAULT_PORT
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	tlsConfig, err := o.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if o.Credentials == nil {
		if o.Credentials, err = NewEphemeralCredentials(); err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
	}
	owner, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ownerPub, _ := owner.PublicKey()
	e := &Embedded{logger: o.Logger, creds: o.Credentials, owner: owner}
	if o.StoreDir == "" {
		dir, err := os.MkdirTemp("", "kaar-nats-")
		if err != nil {
			return nil, fmt.Errorf("embedded nats: temp store dir: %w", err)
		}
		e.tempDir, o.StoreDir = dir, dir
	}
	opts := &server.Options{
		ServerName:         o.ServerName,
		Host:               o.Host,
		Port:               o.Port,
		DontListen:         o.DontListen,
		JetStream:          true,
		StoreDir:           o.StoreDir,
		JetStreamMaxMemory: o.MaxMemory,
		JetStreamMaxStore:  o.MaxStore,
		NoSigs:             true,
		NoLog:              o.Logger == nil,
		// Authentication always: one user per role, and the owner.
		Nkeys: append(o.Credentials.nkeyUsers(""), &server.NkeyUser{Nkey: ownerPub}),
	}
	o.Credentials.inLeafDomains(opts.Nkeys, o.LeafNodes.Clusters)
	if tlsConfig != nil {
		opts.TLSConfig, opts.TLS, opts.TLSVerify = tlsConfig, true, o.VerifyClients
		opts.TLSTimeout = 5 // seconds
	}
	opts.JetStreamDomain = o.JetStreamDomain
	if err := errors.Join(o.Cluster.apply(opts), o.LeafNodes.apply(opts), o.LeafRemote.apply(opts)); err != nil {
		e.removeTemp()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		e.removeTemp()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if o.Logger != nil {
		srv.SetLoggerV2(slogAdapter{o.Logger.With(slog.String("component", "nats-server"))}, false, false, false)
	}
	e.srv = srv
	srv.Start()
	wait := o.ReadyTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		wait = time.Until(dl)
	}
	if !srv.ReadyForConnections(wait) {
		e.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready for connections after %s", wait)
	}
	if !srv.JetStreamEnabled() {
		e.Shutdown()
		return nil, errors.New("embedded nats: JetStream did not start")
	}
	return e, nil
}

// apply sets the cluster options of opts; nothing without a port.
func (c ClusterOptions) apply(opts *server.Options) error {
	if c.Port == 0 {
		return nil
	}
	if c.Name == "" {
		return errors.New("cluster: a name is required")
	}
	host := c.Host
	if host == "" {
		host = "127.0.0.1"
	}
	opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: c.Port}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil {
			return fmt.Errorf("cluster: route %q: %w", r, err)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// tlsConfig is the client port's TLS configuration; nil without TLS.
func (o EmbeddedOptions) tlsConfig() (*tls.Config, error) {
	f := o.TLS
	if f.CertFile == "" && f.KeyFile == "" {
		if o.VerifyClients {
			return nil, errors.New("tls: verifying client certificates needs TLS: set a cert file and a key file")
		}
		return nil, nil
	}
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, errors.New("tls: the server certificate needs both a cert file and a key file")
	}
	if o.VerifyClients && f.CAFile == "" {
		return nil, errors.New("tls: verifying client certificates needs a CA file")
	}
	c, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: f.CertFile, KeyFile: f.KeyFile, CaFile: f.CAFile, Verify: o.VerifyClients})
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	if c == nil { // GenTLSConfig returns nil, nil for an unreadable CA file
		return nil, fmt.Errorf("tls: cannot read CA file %s", f.CAFile)
	}
	return c, nil
}

// ClientURL is the URL clients connect to (tls:// with TLS). With DontListen it is a
// placeholder: use Connect, which connects in-process.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Server exposes the underlying server (monitoring, advanced tests).
func (e *Embedded) Server() *server.Server { return e.srv }

// Connect opens a client connection to the embedded server, in-process
// (no TCP) so it also works with DontListen, as the server's owner: every
// subject is allowed. It is for the code that started the server (tests,
// "kaar nats"); kaar's services connect with ConnectAs, each as its role.
// It uses no TLS, whatever o.TLS says: nothing crosses a network, and the
// server accepts plain in-process clients even when its port requires TLS.
func (e *Embedded) Connect(ctx context.Context, o ConnectOptions) (*nats.Conn, error) {
	pub, _ := e.owner.PublicKey()
	return e.connect(ctx, o, nats.Nkey(pub, e.owner.Sign))
}

// ConnectAs opens an in-process connection authenticated as role, with
// that role's permissions and inbox prefix.
func (e *Embedded) ConnectAs(ctx context.Context, role Role, o ConnectOptions) (*nats.Conn, error) {
	auth, err := e.creds.option(role)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	o.InboxPrefix = role.InboxPrefix()
	return e.connect(ctx, o, auth)
}

// Credentials are the server's users.
func (e *Embedded) Credentials() *Credentials { return e.creds }

func (e *Embedded) connect(ctx context.Context, o ConnectOptions, auth nats.Option) (*nats.Conn, error) {
	o.TLS = TLSFiles{}
	o.CredsFile, o.NkeyFile, o.Token, o.User, o.Password = "", "", "", "", ""
	o.Extra = append([]nats.Option{nats.InProcessServer(e.srv), auth}, o.Extra...)
	if o.Logger == nil {
		o.Logger = e.logger
	}
	// A tls:// URL would make the client insist on TLS.
	return Connect(ctx, strings.Replace(e.srv.ClientURL(), "tls://", "nats://", 1), o)
}

// Shutdown stops the server, waits for it, and removes its temporary
// store directory if it made one. Safe to call more than once.
func (e *Embedded) Shutdown() {
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
	}
	e.removeTemp()
}

func (e *Embedded) removeTemp() {
	if e.tempDir != "" {
		_ = os.RemoveAll(e.tempDir)
		e.tempDir = ""
	}
}

// slogAdapter sends nats-server logs to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.l.Info(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any) {
	a.l.Error(fmt.Sprintf(format, v...), slog.Bool("fatal", true))
}
func (a slogAdapter) Errorf(format string, v ...any) { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
