package config

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"
)

// validateAccess checks who may reach the bus: the embedded server's
// client port (nats.listen) and the client credentials.
func (n NATS) validateAccess() []error {
	var errs []error
	if n.Listen != "" {
		host, _, err := net.SplitHostPort(n.Listen)
		switch {
		case err != nil:
			errs = append(errs, fieldErr("nats.listen", fmt.Sprintf("%q is not host:port (%v)", n.Listen, err)))
		case !loopback(host) && (n.TLS.CertFile == "" || n.TLS.KeyFile == ""):
			errs = append(errs, fieldErr("nats.listen", fmt.Sprintf("%q is not a loopback address and the bus would cross the network in clear text: "+
				"set nats.tls.cert_file and nats.tls.key_file (the embedded server then requires TLS), or listen on 127.0.0.1", n.Listen)))
		}
	}
	set := 0
	for _, v := range []string{n.CredsFile, n.NkeyFile, n.User} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		errs = append(errs, fieldErr("nats.nkey_file", "set only one of nats.nkey_file, nats.creds_file and nats.user (with nats.password)"))
	}
	if n.User != "" && n.Password == "" {
		errs = append(errs, fieldErr("nats.password", "nats.user is set: set its password too (or KAAR_NATS_PASSWORD)"))
	}
	if f := n.NkeyFile; f != "" {
		if err := checkSeedFile(f); err != nil {
			errs = append(errs, fieldErr("nats.nkey_file", err.Error()))
		}
	}
	return errs
}

// loopback reports a host only this machine reaches.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkSeedFile: a private file holding an nkey user seed (SU...).
func checkSeedFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if !strings.HasPrefix(string(bytes.TrimSpace(b)), "SU") {
		return fmt.Errorf("%s does not hold an nkey user seed (a line starting with SU, as kaar serve writes in its state directory)", path)
	}
	return nil
}

// SetCredential makes path the bus credential, replacing any configured
// one: nats.nkey_file when it holds an nkey user seed (as kaar serve
// writes per role), nats.creds_file when it is a NATS .creds file (a user
// JWT and its seed). It is what --creds FILE does.
func (n *NATS) SetCredential(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--creds: %w", err)
	}
	n.CredsFile, n.NkeyFile, n.User, n.Password = "", "", "", ""
	switch s := string(b); {
	case strings.Contains(s, "BEGIN NATS USER JWT"):
		n.CredsFile = path
	case strings.HasPrefix(strings.TrimSpace(s), "SU"):
		n.NkeyFile = path
	default:
		return fmt.Errorf("--creds: %s is neither an nkey user seed (SU...) nor a NATS .creds file", path)
	}
	return nil
}
