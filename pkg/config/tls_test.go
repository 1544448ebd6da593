package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pemFiles writes a self-signed certificate (usable as a CA file too), its
// key, and the key of another certificate.
func pemFiles(t *testing.T) (cert, key, otherKey string) {
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
	k, key := newKey("key.pem")
	_, otherKey = newKey("other-key.pem")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kaar test"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return write("cert.pem", "CERTIFICATE", der), key, otherKey
}

func TestTLSKeysAccepted(t *testing.T) {
	cert, key, _ := pemFiles(t)
	src := fmt.Sprintf(`
server: {tls_cert_file: %[1]s, tls_key_file: %[2]s}
nats:
  url: tls://nats:4222
  replicas: 3
  tls: {ca_file: %[1]s, cert_file: %[1]s, key_file: %[2]s, verify_clients: true}
`, cert, key)
	cfg, err := Load(strings.NewReader(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := NATSTLS{CAFile: cert, CertFile: cert, KeyFile: key, VerifyClients: true}
	if cfg.NATS.TLS != want || cfg.NATS.Replicas != 3 || cfg.Server.TLSCertFile != cert || cfg.Server.TLSKeyFile != key {
		t.Errorf("nats = %+v, server = %+v", cfg.NATS, cfg.Server)
	}
	// Environment overrides reach the nested section.
	cfg, err = Load(strings.NewReader(""), []string{"KAAR_NATS_TLS_CA_FILE=" + cert, "KAAR_NATS_REPLICAS=3"})
	if err != nil || cfg.NATS.TLS.CAFile != cert || cfg.NATS.Replicas != 3 {
		t.Errorf("env: %+v, %v", cfg.NATS, err)
	}
	if d := Default(); d.NATS.Replicas != 1 || d.NATS.TLS != (NATSTLS{}) || d.Server.TLSCertFile != "" {
		t.Errorf("defaults: nats = %+v, server = %+v", d.NATS, d.Server)
	}
}

func TestTLSKeysErrorsNameTheKey(t *testing.T) {
	cert, key, otherKey := pemFiles(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	cases := []struct {
		name, src, key string
	}{
		{"gateway cert without key", "server: {tls_cert_file: " + cert + "}", `"server.tls_key_file"`},
		{"gateway key without cert", "server: {tls_key_file: " + key + "}", `"server.tls_cert_file"`},
		{"gateway cert unreadable", "server: {tls_cert_file: " + missing + ", tls_key_file: " + key + "}", `"server.tls_cert_file"`},
		{"gateway key unreadable", "server: {tls_cert_file: " + cert + ", tls_key_file: " + missing + "}", `"server.tls_key_file"`},
		{"gateway key of another cert", "server: {tls_cert_file: " + cert + ", tls_key_file: " + otherKey + "}", `"server.tls_cert_file"`},
		{"nats cert without key", "nats: {tls: {cert_file: " + cert + "}}", `"nats.tls.key_file"`},
		{"nats key without cert", "nats: {tls: {key_file: " + key + "}}", `"nats.tls.cert_file"`},
		{"nats ca unreadable", "nats: {tls: {ca_file: " + missing + "}}", `"nats.tls.ca_file"`},
		{"nats ca not a certificate", "nats: {tls: {ca_file: " + key + "}}", `"nats.tls.ca_file"`},
		{"nats key of another cert", "nats: {tls: {cert_file: " + cert + ", key_file: " + otherKey + "}}", `"nats.tls.cert_file"`},
		{"verify_clients without ca", "nats: {tls: {cert_file: " + cert + ", key_file: " + key + ", verify_clients: true}}", `"nats.tls.verify_clients"`},
		{"verify_clients without cert", "nats: {tls: {ca_file: " + cert + ", verify_clients: true}}", `"nats.tls.verify_clients"`},
		{"unknown tls key", "nats: {tls: {ca: " + cert + "}}", `"nats.tls.ca"`},
		{"replicas 2", "nats: {replicas: 2}", `"nats.replicas"`},
		{"replicas 0", "nats: {replicas: 0}", `"nats.replicas"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.src), nil)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.key) {
				t.Errorf("error %q does not name %s (or is not ErrInvalid)", err, tc.key)
			}
			t.Log(err)
		})
	}
}
