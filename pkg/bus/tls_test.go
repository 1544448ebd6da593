package bus

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, as PEM files in a test directory.
type testPKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	// OtherCA signed nothing here: trusting it alone must fail.
	OtherCA string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caCert, caKey := newCA(t, dir, "ca")
	other, _ := newCA(t, dir, "other-ca")
	p := testPKI{CA: caCert.file, OtherCA: other.file}
	p.ServerCert, p.ServerKey = issue(t, dir, "server", caCert, caKey, x509.ExtKeyUsageServerAuth)
	p.ClientCert, p.ClientKey = issue(t, dir, "client", caCert, caKey, x509.ExtKeyUsageClientAuth)
	return p
}

type caFile struct {
	cert *x509.Certificate
	file string
}

func newCA(t *testing.T, dir, name string) (caFile, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kaar test " + name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return caFile{cert: cert, file: writePEM(t, dir, name+".pem", "CERTIFICATE", der)}, key
}

func issue(t *testing.T, dir, name string, ca caFile, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "PRIVATE KEY", keyDER)
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startTLS starts an embedded server whose client port requires TLS.
func startTLS(t *testing.T, p testPKI, verifyClients bool) *Embedded {
	t.Helper()
	e, err := StartEmbedded(testCtx(t, 15*time.Second), EmbeddedOptions{Port: RandomPort, Logger: testLogger(t),
		TLS: TLSFiles{CAFile: p.CA, CertFile: p.ServerCert, KeyFile: p.ServerKey}, VerifyClients: verifyClients, Credentials: testCreds(t)})
	if err != nil {
		t.Fatalf("StartEmbedded with TLS: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

func TestEmbeddedTLSAcceptsAClientTrustingItsCA(t *testing.T) {
	p := newTestPKI(t)
	e := startTLS(t, p, false)
	if !strings.HasPrefix(e.ClientURL(), "tls://") {
		t.Errorf("ClientURL = %s, want tls://", e.ClientURL())
	}
	ctx := testCtx(t, 15*time.Second)
	nc, err := Connect(ctx, e.ClientURL(), ConnectOptions{Name: "tls-client", Logger: testLogger(t), TLS: TLSFiles{CAFile: p.CA},
		NkeyFile: e.Credentials().SeedFile(RoleProvisioner), InboxPrefix: RoleProvisioner.InboxPrefix()})
	if err != nil {
		t.Fatalf("Connect with the CA: %v", err)
	}
	defer nc.Close()
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Fatalf("not a TLS connection: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The bus works over it: declare kaar's streams.
	provision(t, js, Config{Clusters: []string{testCluster}})

	// A nats:// URL is upgraded: the server requires TLS.
	plain := strings.Replace(e.ClientURL(), "tls://", "nats://", 1)
	nc2, err := Connect(ctx, plain, ConnectOptions{Name: "upgraded", Logger: testLogger(t), TLS: TLSFiles{CAFile: p.CA},
		NkeyFile: e.Credentials().SeedFile(RoleProvisioner), InboxPrefix: RoleProvisioner.InboxPrefix()})
	if err != nil {
		t.Fatalf("Connect %s with the CA: %v", plain, err)
	}
	nc2.Close()

	// In-process clients need no TLS.
	nc3, err := e.Connect(ctx, ConnectOptions{Name: "in-process", TLS: TLSFiles{CAFile: p.OtherCA}})
	if err != nil {
		t.Fatalf("in-process Connect: %v", err)
	}
	nc3.Close()
}

func TestConnectWithoutTheCAFailsAtOnce(t *testing.T) {
	p := newTestPKI(t)
	e := startTLS(t, p, false)
	// A long deadline: the certificate error must end the wait, not ctx.
	ctx := testCtx(t, 2*time.Minute)
	for name, files := range map[string]TLSFiles{
		"system roots": {},
		"another CA":   {CAFile: p.OtherCA},
	} {
		nc, err := Connect(ctx, e.ClientURL(), ConnectOptions{Name: "untrusting", Logger: testLogger(t), TLS: files})
		if err == nil {
			nc.Close()
			t.Fatalf("%s: connected to a server signed by an unknown CA", name)
		}
		if ctx.Err() != nil || !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "nats.tls") {
			t.Errorf("%s: err = %v, want a certificate error pointing at nats.tls", name, err)
		}
		t.Logf("%s: refused: %v", name, err)
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("%s: err = %v, want x509.UnknownAuthorityError in the chain", name, err)
		}
	}
}

func TestConnectWantsTLSFromAPlainServer(t *testing.T) {
	p := newTestPKI(t)
	e, err := StartEmbedded(testCtx(t, 15*time.Second), EmbeddedOptions{Port: RandomPort, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	ctx := testCtx(t, 2*time.Minute)
	nc, err := Connect(ctx, e.ClientURL(), ConnectOptions{Name: "wants-tls", Logger: testLogger(t), TLS: TLSFiles{CAFile: p.CA}})
	if err == nil {
		nc.Close()
		t.Fatal("a client with nats.tls connected without TLS")
	}
	if ctx.Err() != nil || !strings.Contains(err.Error(), "secure connection not available") {
		t.Errorf("err = %v, want nats' secure connection not available", err)
	}
}

func TestVerifyClientsRefusesAClientWithoutCertificate(t *testing.T) {
	p := newTestPKI(t)
	e := startTLS(t, p, true)
	ctx := testCtx(t, 2*time.Minute)
	nc, err := Connect(ctx, e.ClientURL(), ConnectOptions{Name: "anonymous", Logger: testLogger(t), TLS: TLSFiles{CAFile: p.CA}})
	if err == nil {
		nc.Close()
		t.Fatal("a client without a certificate was accepted")
	}
	if ctx.Err() != nil || !strings.Contains(err.Error(), "tls") {
		t.Errorf("err = %v, want the server's TLS refusal", err)
	}
	t.Logf("refused: %v", err)

	nc, err = Connect(ctx, e.ClientURL(), ConnectOptions{Name: "mtls", Logger: testLogger(t),
		TLS: TLSFiles{CAFile: p.CA, CertFile: p.ClientCert, KeyFile: p.ClientKey}, NkeyFile: e.Credentials().SeedFile(RoleProvisioner), InboxPrefix: RoleProvisioner.InboxPrefix()})
	if err != nil {
		t.Fatalf("Connect with a client certificate: %v", err)
	}
	nc.Close()

	// In-process clients are the server's own process: no certificate.
	nc, err = e.Connect(ctx, ConnectOptions{Name: "in-process"})
	if err != nil {
		t.Fatalf("in-process Connect with verify_clients: %v", err)
	}
	nc.Close()
}

func TestEmbeddedTLSOptionsAreChecked(t *testing.T) {
	p := newTestPKI(t)
	for name, o := range map[string]EmbeddedOptions{
		"verify without TLS":    {VerifyClients: true, TLS: TLSFiles{CAFile: p.CA}},
		"cert without key":      {TLS: TLSFiles{CertFile: p.ServerCert}},
		"verify without CA":     {VerifyClients: true, TLS: TLSFiles{CertFile: p.ServerCert, KeyFile: p.ServerKey}},
		"key of another cert":   {TLS: TLSFiles{CertFile: p.ServerCert, KeyFile: p.ClientKey}},
		"CA file that is a key": {TLS: TLSFiles{CAFile: p.ServerKey, CertFile: p.ServerCert, KeyFile: p.ServerKey}},
	} {
		o.Port = RandomPort
		e, err := StartEmbedded(testCtx(t, 15*time.Second), o)
		if err == nil {
			e.Shutdown()
			t.Errorf("%s: started", name)
			continue
		}
		if !strings.Contains(err.Error(), "tls") {
			t.Errorf("%s: err = %v, want it to name TLS", name, err)
		}
	}
	// A client certificate needs its key.
	_, err := Connect(testCtx(t, 5*time.Second), "tls://127.0.0.1:1", ConnectOptions{TLS: TLSFiles{CertFile: p.ClientCert}})
	if err == nil || !strings.Contains(err.Error(), "key file") {
		t.Errorf("client cert without key: %v", err)
	}
}
