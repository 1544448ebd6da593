package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/kaar-dev/kaar/pkg/events"
)

// MinTokenLength is the shortest bearer token (mcp.tokens, and the
// gateway's mcp.token_file) and shared secret (webhooks, inbound senders).
const MinTokenLength = 16

// maxIdentityLength bounds a name recorded as decided_by.
const maxIdentityLength = 64

// Validate checks every section and reports every problem it finds, each
// a *FieldError naming its key, joined with errors.Join; nil means the
// configuration is valid.
func (c *Config) Validate() error {
	return errors.Join(
		c.Server.validate(),
		c.Kubernetes.validate(),
		c.Remediation.validate(),
		c.NATS.validate(),
		c.Policy.validate(),
		c.Watcher.validate(),
		c.MCP.validate(),
		c.Notify.validate(),
		c.Signing.validate(),
	)
}

// problems collects the errors of one section.
type problems []error

func (p *problems) add(err error) {
	if err != nil {
		*p = append(*p, err)
	}
}

func (p *problems) addf(key, format string, args ...any) {
	p.add(fieldErr(key, fmt.Sprintf(format, args...)))
}

func (p problems) join() error { return errors.Join(p...) }

// enumStrings lists the values of a pkg/events enumeration as strings.
func enumStrings[T ~string](values []T) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = string(v)
	}
	return out
}

// checkClusterName applies the bus's rule for cluster names
// (events.ValidateClusterName) to the key.
func checkClusterName(key, name string) error {
	if events.ValidateClusterName(name) != nil {
		return fieldErr(key, fmt.Sprintf("%q is not a valid cluster name: use 1-%d lower-case letters, digits, '-' or '_', starting and ending with a letter or digit", name, events.MaxClusterNameLen))
	}
	return nil
}

// checkNamespace checks an optional namespace name.
func checkNamespace(key, ns string) error {
	if ns != "" && !validDNSLabel(ns) {
		return fieldErr(key, fmt.Sprintf("%q is not a valid namespace name", ns))
	}
	return nil
}

// checkKeyPair checks a certificate and its key: both or neither, readable,
// and matching.
func checkKeyPair(certKey, certFile, keyKey, keyFile string) error {
	switch {
	case certFile == "" && keyFile == "":
		return nil
	case keyFile == "":
		return fieldErr(keyKey, "must be set with "+certKey)
	case certFile == "":
		return fieldErr(certKey, "must be set with "+keyKey)
	}
	if _, err := os.ReadFile(certFile); err != nil {
		return fieldErr(certKey, err.Error())
	}
	if _, err := os.ReadFile(keyFile); err != nil {
		return fieldErr(keyKey, err.Error())
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return fieldErr(certKey, fmt.Sprintf("%s with %s: %v", certFile, keyKey+" "+keyFile, err))
	}
	return nil
}

// checkCAFile checks that path holds at least one PEM certificate.
func checkCAFile(key, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fieldErr(key, err.Error())
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return fieldErr(key, fmt.Sprintf("%s holds no PEM certificate", path))
	}
	return nil
}

func oneOf(key, v string, allowed ...string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return fieldErr(key, fmt.Sprintf("%q is not allowed", v), allowed...)
}

func validToken(s string) bool {
	if len(s) < 1 || len(s) > 63 {
		return false
	}
	for i, r := range s {
		alnum := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')
		if !alnum && (i == 0 || i == len(s)-1 || (r != '-' && r != '_')) {
			return false
		}
	}
	return true
}

func validDNSLabel(s string) bool {
	return validToken(s) && !strings.Contains(s, "_")
}

// validateIdentity checks a name recorded as decided_by: not empty,
// printable, at most maxIdentityLength characters.
func validateIdentity(key, v string) error {
	if v == "" {
		return fieldErr(key, "must not be empty")
	}
	if len(v) > maxIdentityLength {
		return fieldErr(key, fmt.Sprintf("%q is longer than %d characters", v, maxIdentityLength))
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fieldErr(key, fmt.Sprintf("%q contains a control character", v))
		}
	}
	return nil
}
