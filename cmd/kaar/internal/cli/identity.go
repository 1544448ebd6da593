package cli

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/kaar-dev/kaar/pkg/bus"
)

// busIdentity names the CLI's bus credential, recorded as decided_by: a
// decision is the credential holder's, not whatever $USER says. It is
// "cli:" followed by nats.user, the role of an nkey seed (its file is
// <role>.nk, as kaar serve writes them: "cli:kaar-cli"), or the name in
// a .creds file's user JWT; "cli:unauthenticated" on a bus without
// authentication.
func busIdentity(o bus.ConnectOptions) string {
	switch {
	case o.User != "":
		return "cli:" + o.User
	case o.NkeyFile != "":
		base := filepath.Base(o.NkeyFile)
		if r, err := bus.ParseRole(strings.TrimSuffix(base, ".nk")); err == nil && strings.HasSuffix(base, ".nk") {
			return "cli:" + r.User()
		}
		return "cli:nkey:" + base
	case o.CredsFile != "":
		if name := credsName(o.CredsFile); name != "" {
			return "cli:" + name
		}
		return "cli:creds:" + filepath.Base(o.CredsFile)
	}
	return "cli:unauthenticated"
}

// credsName is the name claim (else the subject, the user's public key)
// of the user JWT in a NATS .creds file; "" when it cannot be read. The
// server verified the JWT when the connection was made.
func credsName(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if !strings.Contains(sc.Text(), "BEGIN NATS USER JWT") || !sc.Scan() {
			continue
		}
		parts := strings.Split(strings.TrimSpace(sc.Text()), ".")
		if len(parts) != 3 {
			return ""
		}
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			return ""
		}
		var claims struct {
			Name string `json:"name"`
			Sub  string `json:"sub"`
		}
		if json.Unmarshal(payload, &claims) != nil {
			return ""
		}
		if claims.Name != "" {
			return claims.Name
		}
		return claims.Sub
	}
	return ""
}
