package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNATSAccessErrorsNameTheKey: a bus reachable from the network needs
// TLS; credentials are one kind at a time and a seed file must be
// private and hold a seed. Each error names the key and what to set.
func TestNATSAccessErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "executor.nk")
	if err := os.WriteFile(seed, []byte("SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.nk")
	if err := os.WriteFile(open, []byte("SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notSeed := filepath.Join(dir, "password.txt")
	if err := os.WriteFile(notSeed, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, key, _ := pemFiles(t)
	cases := []struct {
		name, yaml string
		key, want  string // "" key: valid
	}{
		{"loopback", "nats:\n  listen: 127.0.0.1:4222\n", "", ""},
		{"localhost", "nats:\n  listen: localhost:4222\n", "", ""},
		{"ipv6 loopback", "nats:\n  listen: \"[::1]:4222\"\n", "", ""},
		{"all interfaces without TLS", "nats:\n  listen: 0.0.0.0:4222\n", "nats.listen", "set nats.tls.cert_file and nats.tls.key_file"},
		{"empty host without TLS", "nats:\n  listen: \":4222\"\n", "nats.listen", "not a loopback address"},
		{"public address without TLS", "nats:\n  listen: 10.0.0.5:4222\n", "nats.listen", "clear text"},
		{"all interfaces with TLS", fmt.Sprintf("nats:\n  listen: 0.0.0.0:4222\n  tls:\n    cert_file: %s\n    key_file: %s\n", cert, key), "", ""},
		{"listen not host:port", "nats:\n  listen: \"4222\"\n", "nats.listen", "not host:port"},
		{"seed file", "nats:\n  nkey_file: " + seed + "\n", "", ""},
		{"seed readable by others", "nats:\n  nkey_file: " + open + "\n", "nats.nkey_file", "chmod 600"},
		{"not a seed", "nats:\n  nkey_file: " + notSeed + "\n", "nats.nkey_file", "nkey user seed"},
		{"missing seed", "nats:\n  nkey_file: " + filepath.Join(dir, "nope.nk") + "\n", "nats.nkey_file", "no such file"},
		{"two credentials", "nats:\n  nkey_file: " + seed + "\n  user: kaar-executor\n  password: x1\n", "nats.nkey_file", "set only one of"},
		{"user without password", "nats:\n  user: kaar-executor\n", "nats.password", "set its password"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(c.yaml), nil)
			if c.key == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error on %s", c.key)
			}
			if !strings.Contains(err.Error(), c.key) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to name %s and say %q", err, c.key, c.want)
			}
		})
	}
}

func TestSetCredentialTellsSeedsFromCredsFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	seed := write("cli.nk", "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4\n")
	creds := write("user.creds", "-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n")
	junk := write("junk", "hello\n")
	n := NATS{User: "kaar-cli", Password: "x"}
	if err := n.SetCredential(seed); err != nil || n.NkeyFile != seed || n.User != "" || n.Password != "" {
		t.Errorf("seed: %+v %v", n, err)
	}
	if err := n.SetCredential(creds); err != nil || n.CredsFile != creds || n.NkeyFile != "" {
		t.Errorf("creds: %+v %v", n, err)
	}
	if err := n.SetCredential(junk); err == nil || !strings.Contains(err.Error(), "--creds") {
		t.Errorf("junk: %v", err)
	}
}
