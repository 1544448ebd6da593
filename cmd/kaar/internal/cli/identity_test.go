package cli

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/kaar-dev/kaar/pkg/bus"
)

// The CLI's decisions name its bus credential, whatever $USER says.
func TestBusIdentityNamesTheCredential(t *testing.T) {
	t.Setenv("USER", "root")
	dir := t.TempDir()
	jwt := func(claims string) string {
		return "eyJhbGciOiJlZDI1NTE5LW5rZXkifQ." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".sig"
	}
	creds := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	named := creds("ops.creds", "-----BEGIN NATS USER JWT-----\n"+jwt(`{"name":"alice","sub":"UALICE"}`)+"\n------END NATS USER JWT------\n")
	unnamed := creds("bot.creds", "-----BEGIN NATS USER JWT-----\n"+jwt(`{"sub":"UBOT"}`)+"\n------END NATS USER JWT------\n")
	broken := creds("broken.creds", "not a creds file")
	for _, tc := range []struct {
		o    bus.ConnectOptions
		want string
	}{
		{bus.ConnectOptions{User: "alice", Password: "x"}, "cli:alice"},
		{bus.ConnectOptions{NkeyFile: "/var/lib/kaar/credentials/cli.nk"}, "cli:kaar-cli"},
		{bus.ConnectOptions{NkeyFile: "/etc/kaar/alice.seed"}, "cli:nkey:alice.seed"},
		{bus.ConnectOptions{CredsFile: named}, "cli:alice"},
		{bus.ConnectOptions{CredsFile: unnamed}, "cli:UBOT"},
		{bus.ConnectOptions{CredsFile: broken}, "cli:creds:broken.creds"},
		{bus.ConnectOptions{}, "cli:unauthenticated"},
	} {
		if got := busIdentity(tc.o); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.o, got, tc.want)
		}
	}
}
