package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeysInitThenShow(t *testing.T) {
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	run := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
		return out.String() + errb.String(), code
	}
	out, code := run("keys", "show")
	if code == 0 || !strings.Contains(out, "kaar keys init") {
		t.Fatalf("show before init (%d):\n%s", code, out)
	}
	out, code = run("keys", "init")
	if code != 0 {
		t.Fatalf("init (%d):\n%s", code, out)
	}
	dir := filepath.Join(state, "kaar", "keys")
	for _, role := range []string{"planner", "mcpgateway", "notifier", "cli", "executor"} {
		st, err := os.Stat(filepath.Join(dir, role+".key"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s.key: %v %v", role, st, err)
		}
		if !strings.Contains(out, role) {
			t.Errorf("init does not print the %s key:\n%s", role, out)
		}
	}
	if n := strings.Count(out, "ed25519:"); n != 5 {
		t.Errorf("init printed %d public keys, want 5:\n%s", n, out)
	}
	again, code := run("keys", "show")
	if code != 0 || again != out {
		t.Errorf("show after init differs (%d):\n%s\nwant:\n%s", code, again, out)
	}
	if out, code := run("keys", "rotate"); code == 0 || !strings.Contains(out, "want init or show") {
		t.Errorf("unknown verb (%d):\n%s", code, out)
	}
}
