package mcpgateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
)

// gatewayPKI writes a throwaway CA, a server certificate for 127.0.0.1
// signed by it, its key, and the key of another certificate.
type gatewayPKI struct{ CA, Cert, Key, OtherKey string }

func newGatewayPKI(t *testing.T) gatewayPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newKey := func(name string) (*ecdsa.PrivateKey, string) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return k, write(name, "PRIVATE KEY", der)
	}
	caKey, _ := newKey("ca-key.pem")
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kaar test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, keyFile := newKey("key.pem")
	_, other := newKey("other-key.pem")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kaar gateway"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return gatewayPKI{CA: write("ca.pem", "CERTIFICATE", caDER), Cert: write("cert.pem", "CERTIFICATE", der), Key: keyFile, OtherKey: other}
}

// TestGatewayServesHTTPSWithACertificate is the story "an operator gives
// the gateway a certificate": clients that trust its CA get /health over
// HTTPS; plain HTTP and clients that do not trust the CA get nothing.
func TestGatewayServesHTTPSWithACertificate(t *testing.T) {
	p := newGatewayPKI(t)
	e := newEnv(t, func(c *Config) {
		c.Host, c.Port, c.ShutdownTimeout = "127.0.0.1", 0, 5*time.Second
		c.TLSCertFile, c.TLSKeyFile = p.Cert, p.Key
	})
	if e.gw.Scheme() != "https" {
		t.Errorf("Scheme() = %q", e.gw.Scheme())
	}
	ctx, cancel := context.WithCancel(e.ctx)
	ran := make(chan error, 1)
	go func() { ran <- e.gw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-e.gw.Ready():
	case err := <-ran:
		t.Fatalf("Run: %v", err)
	}
	addr := e.gw.Addr().String()

	caPEM, err := os.ReadFile(p.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	t.Cleanup(trusting.CloseIdleConnections)
	resp, err := trusting.Get("https://" + addr + "/health")
	if err != nil {
		t.Fatalf("GET /health over HTTPS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Errorf("GET /health over HTTPS: %d %s (tls %v)", resp.StatusCode, body, resp.TLS != nil)
	}

	// Plain HTTP reaches no handler: Go's TLS server answers 400.
	plain := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(plain.CloseIdleConnections)
	resp, err = plain.Get("http://" + addr + "/health")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("plain HTTP served /health over an HTTPS port: %s", body)
		}
		t.Logf("plain HTTP: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}

	// A client that does not trust the CA refuses the server.
	untrusting := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(untrusting.CloseIdleConnections)
	if resp, err = untrusting.Get("https://" + addr + "/health"); err == nil {
		resp.Body.Close()
		t.Fatal("a client without the CA accepted the gateway's certificate")
	}
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("untrusting client: %v, want x509.UnknownAuthorityError", err)
	}
}

func TestGatewayTLSConfigErrorsNameTheKey(t *testing.T) {
	p := newGatewayPKI(t)
	e := newEnv(t)
	for _, tc := range []struct {
		name, cert, key, field string
	}{
		{"cert without key", p.Cert, "", "server.tls_key_file"},
		{"key without cert", "", p.Key, "server.tls_cert_file"},
		{"key of another cert", p.Cert, p.OtherKey, "server.tls_cert_file"},
		{"missing cert", filepath.Join(t.TempDir(), "none.pem"), p.Key, "server.tls_cert_file"},
	} {
		cfg := Config{Cluster: testCluster, TLSCertFile: tc.cert, TLSKeyFile: tc.key}
		_, err := New(cfg, Deps{NATS: e.nc, Logger: testLogger(), Signer: testGatewayKey})
		if !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want an invalid %s", tc.name, err, tc.field)
		}
	}
	// Without a certificate the gateway serves plain HTTP.
	if e.gw.Scheme() != "http" {
		t.Errorf("Scheme() without a certificate = %q", e.gw.Scheme())
	}
	c := config.Default()
	c.Server.TLSCertFile, c.Server.TLSKeyFile = p.Cert, p.Key
	if g := ConfigFrom(c); g.TLSCertFile != p.Cert || g.TLSKeyFile != p.Key {
		t.Errorf("ConfigFrom: %+v", g)
	}
}
