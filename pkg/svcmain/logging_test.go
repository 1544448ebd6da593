package svcmain

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kaar-dev/kaar/pkg/config"
)

// Every process's logger reports the credential files others may read,
// naming the key, the file and its mode.
func TestLoggerWarnsAboutOpenCredentialFiles(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("[]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tokens, 0o644); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("mcp: {token_file: "+tokens+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadFile(cfgFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, _, err := NewLogger(cfg.Server, &out); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"level=WARN", "key=mcp.token_file", "file=" + tokens, "mode=0644"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, out.String())
		}
	}
	if err := os.Chmod(tokens, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = config.LoadFile(cfgFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if _, _, err := NewLogger(cfg.Server, &out); err != nil || out.Len() != 0 {
		t.Errorf("private files: %v %q", err, out.String())
	}
}
