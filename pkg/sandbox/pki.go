package sandbox

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pkiFiles are the key material of one sandbox, all under StateDir/pki.
type pkiFiles struct {
	CACert     string // CA that signed the API server's certificate (in kubeconfigs)
	ServerCert string
	ServerKey  string
	SAKey      string // service-account signing key (private)
	SAPub      string // service-account verification key (public)
	// The aggregation layer: kube-apiserver proxies metrics.k8s.io to
	// metrics-server with the front-proxy client certificate, which
	// metrics-server trusts through the front-proxy CA (requestheader).
	FrontProxyCACert string
	ProxyClientCert  string
	ProxyClientKey   string
	// metrics-server's serving certificate, signed by the CA (the
	// APIService's caBundle) for the name kube-apiserver checks.
	MetricsServerCert string
	MetricsServerKey  string
}

// proxyClientName is the front-proxy client certificate's common name,
// the one name metrics-server accepts request headers from.
const proxyClientName = "front-proxy-client"

func pkiIn(dir string) pkiFiles {
	return pkiFiles{
		CACert:     filepath.Join(dir, "ca.crt"),
		ServerCert: filepath.Join(dir, "apiserver.crt"),
		ServerKey:  filepath.Join(dir, "apiserver.key"),
		SAKey:      filepath.Join(dir, "sa.key"),
		SAPub:      filepath.Join(dir, "sa.pub"),

		FrontProxyCACert:  filepath.Join(dir, "front-proxy-ca.crt"),
		ProxyClientCert:   filepath.Join(dir, "front-proxy-client.crt"),
		ProxyClientKey:    filepath.Join(dir, "front-proxy-client.key"),
		MetricsServerCert: filepath.Join(dir, "metrics-server.crt"),
		MetricsServerKey:  filepath.Join(dir, "metrics-server.key"),
	}
}

// generatePKI writes a fresh CA, an API server certificate for 127.0.0.1
// and localhost, a service-account key pair, the front-proxy CA and client
// certificate, and metrics-server's serving certificate. ECDSA P-256 keeps
// it fast.
func generatePKI(dir string) (pkiFiles, error) {
	files := pkiIn(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return files, fmt.Errorf("pki: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return files, fmt.Errorf("pki: ca key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kaar-sandbox-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return files, fmt.Errorf("pki: ca: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return files, fmt.Errorf("pki: ca: %w", err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return files, fmt.Errorf("pki: server key: %w", err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return files, fmt.Errorf("pki: server cert: %w", err)
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return files, fmt.Errorf("pki: service-account key: %w", err)
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return files, fmt.Errorf("pki: service-account key: %w", err)
	}
	fpCA, fpCAKey, fpCADER, err := newCA("kaar-sandbox-front-proxy-ca", now)
	if err != nil {
		return files, err
	}
	proxyKey, proxyDER, err := newLeaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: proxyClientName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, fpCA, fpCAKey, now)
	if err != nil {
		return files, fmt.Errorf("pki: front-proxy client: %w", err)
	}
	msKey, msDER, err := newLeaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "metrics-server"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:    []string{"localhost", "metrics-server.kube-system.svc"},
	}, caCert, caKey, now)
	if err != nil {
		return files, fmt.Errorf("pki: metrics-server: %w", err)
	}
	writes := []struct {
		path, typ string
		der       []byte
		key       *ecdsa.PrivateKey
	}{
		{files.CACert, "CERTIFICATE", caDER, nil},
		{files.ServerCert, "CERTIFICATE", srvDER, nil},
		{files.ServerKey, "", nil, srvKey},
		{files.SAKey, "", nil, saKey},
		{files.SAPub, "PUBLIC KEY", saPub, nil},
		{files.FrontProxyCACert, "CERTIFICATE", fpCADER, nil},
		{files.ProxyClientCert, "CERTIFICATE", proxyDER, nil},
		{files.ProxyClientKey, "", nil, proxyKey},
		{files.MetricsServerCert, "CERTIFICATE", msDER, nil},
		{files.MetricsServerKey, "", nil, msKey},
	}
	for _, w := range writes {
		typ, der := w.typ, w.der
		if w.key != nil {
			typ = "EC PRIVATE KEY"
			if der, err = x509.MarshalECPrivateKey(w.key); err != nil {
				return files, fmt.Errorf("pki: %s: %w", w.path, err)
			}
		}
		if err := os.WriteFile(w.path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			return files, fmt.Errorf("pki: %w", err)
		}
	}
	return files, nil
}

// newCA returns a self-signed CA certificate and its key.
func newCA(name string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: %s key: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: %s: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: %s: %w", name, err)
	}
	return cert, key, der, nil
}

// newLeaf returns a key and a certificate from tmpl (subject, usages and
// names) signed by ca.
func newLeaf(tmpl *x509.Certificate, ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.AddDate(10, 0, 0)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	return key, der, err
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}

// randomToken returns a 32-hex-character bearer token.
func randomToken() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
