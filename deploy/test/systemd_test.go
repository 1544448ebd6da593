package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnitVerifiesAndIsHardened runs systemd-analyze on
// deploy/systemd/kaar.service: `verify` must print nothing at all (it exits
// 0 on directives it ignores, so its output is the verdict), and `security`
// must rate the unit's exposure at most 2.0 of 10. systemd-analyze is part
// of systemd, on every machine kind this project runs on; its absence is a
// failure, not a skip.
func TestSystemdUnitVerifiesAndIsHardened(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (install systemd): %v", err)
	}
	unit, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "systemd", "kaar.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
		"ExecStart=/usr/local/bin/kaar serve ", "StateDirectory=kaar", "KAAR_NATS_STORE_DIR=/var/lib/kaar/"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("kaar.service lacks %q", strings.TrimSpace(want))
		}
	}
	// verify checks that ExecStart's program exists: point it at a real
	// executable of this machine, the only change to the unit.
	dir := t.TempDir()
	path := filepath.Join(dir, "kaar.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/kaar ", "/bin/true ")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=true", "--threshold=20", "--no-pager", path).CombinedOutput()
	if err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		t.Errorf("systemd-analyze security: exposure above 2.0: %v: %s", err, lines[len(lines)-1])
	}
}
