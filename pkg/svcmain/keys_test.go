package svcmain

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
)

func TestEnsureKeyCreatesAPrivateKeyOnceAndReusesIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	first, err := EnsureKey(dir, RolePlanner, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "planner.key"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("planner.key mode %v, want 0600", perm)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("key dir mode %v (%v), want 0700", st.Mode().Perm(), err)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "planner.pub"))
	if err != nil || string(pub) != first.PublicKey()+"\n" {
		t.Errorf("planner.pub = %q (%v), want %s", pub, err, first.PublicKey())
	}
	again, err := EnsureKey(dir, RolePlanner, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.PublicKey() != first.PublicKey() {
		t.Fatal("a second start made a new key")
	}
}

// TestEnsureKeyConcurrentFirstStarts: services of one kaar serve (or
// several processes) starting at once agree on one key per role.
func TestEnsureKeyConcurrentFirstStarts(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	keys := make([]string, 16)
	for i := range keys {
		wg.Go(func() {
			s, err := EnsureKey(dir, RoleGateway, nil)
			if err != nil {
				t.Error(err)
				return
			}
			keys[i] = s.PublicKey()
		})
	}
	wg.Wait()
	for _, k := range keys {
		if k != keys[0] {
			t.Fatalf("concurrent first starts made different keys: %v", keys)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "mcpgateway.key" && e.Name() != "mcpgateway.pub" {
			t.Errorf("left behind %s", e.Name())
		}
	}
}

func TestSignerFromKeyFile(t *testing.T) {
	s, err := events.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "planner.pem")
	if err := os.WriteFile(path, s.MarshalPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Signing.KeyFile = path
	got, err := Signer(cfg, RolePlanner, nil)
	if err != nil || got.PublicKey() != s.PublicKey() {
		t.Fatalf("Signer from key_file: %v %v", got, err)
	}
	cfg.Signing.KeyFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := Signer(cfg, RolePlanner, nil); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing key_file must fail, not make a new key: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Signing.KeyFile = bad
	if _, err := Signer(cfg, RolePlanner, nil); err == nil {
		t.Error("a file that is no key was accepted")
	}
}

// TestTrustGivesEachRoleItsOwnPurpose: the key directory's keys are
// trusted each for its own role only: the gateway's key never signs plans
// or Slack decisions, the planner's never decisions.
func TestTrustGivesEachRoleItsOwnPurpose(t *testing.T) {
	cfg := config.Default()
	cfg.Signing.KeyDir = t.TempDir()
	if err := EnsureKeys(cfg, nil); err != nil {
		t.Fatal(err)
	}
	pub := map[string]string{}
	for _, r := range SigningRoles() {
		s, err := Signer(cfg, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		pub[r] = s.PublicKey()
	}
	tr, err := Trust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tr.Planners, []string{pub[RolePlanner]}) {
		t.Errorf("planners %v, want only the planner's key", tr.Planners)
	}
	want := map[events.Via]string{
		events.ViaMCP: RoleGateway, events.ViaMCPElicitation: RoleGateway, events.ViaREST: RoleGateway,
		events.ViaSlack: RoleNotifier, events.ViaWebhook: RoleNotifier, events.ViaCLI: RoleCLI, events.ViaAuto: RoleExecutor,
	}
	for via, role := range want {
		if got := tr.Channels[via]; !slices.Equal(got, []string{pub[role]}) {
			t.Errorf("via %s trusts %v, want only the %s key", via, got, role)
		}
	}

	// Configured keys add to the directory's: a rotation lists both.
	next, _ := events.GenerateSigner()
	cfg.Signing.TrustedPlanners = []string{next.PublicKey()}
	cfg.Signing.TrustedChannels.Slack = []string{next.PublicKey()}
	tr, err = Trust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tr.Planners, next.PublicKey()) || !slices.Contains(tr.Planners, pub[RolePlanner]) {
		t.Errorf("planners %v", tr.Planners)
	}
	if slices.Contains(tr.Channels[events.ViaWebhook], next.PublicKey()) || !slices.Contains(tr.Channels[events.ViaSlack], next.PublicKey()) {
		t.Errorf("a key trusted for slack only: webhook %v slack %v", tr.Channels[events.ViaWebhook], tr.Channels[events.ViaSlack])
	}
}

// TestTrustWithoutAKeyDirectory: a split executor trusts exactly what its
// configuration lists.
func TestTrustWithoutAKeyDirectory(t *testing.T) {
	cfg := config.Default()
	cfg.Signing.KeyDir = filepath.Join(t.TempDir(), "none")
	k, _ := events.GenerateSigner()
	cfg.Signing.TrustedPlanners = []string{k.PublicKey()}
	tr, err := Trust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tr.Planners, []string{k.PublicKey()}) || len(tr.Channels[events.ViaMCP]) != 0 {
		t.Errorf("trust %+v", tr)
	}
	if _, err := os.Stat(cfg.Signing.KeyDir); !errors.Is(err, os.ErrNotExist) {
		t.Error("Trust created the key directory")
	}
}

// TestEnsureKeysLeavesPublicOnlyRoles: an executor whose key directory is
// a read-only mount of the other roles' public keys (a split deployment)
// starts without trying to create their private keys.
func TestEnsureKeysLeavesPublicOnlyRoles(t *testing.T) {
	dir := t.TempDir()
	planner, _ := events.GenerateSigner()
	if err := os.WriteFile(filepath.Join(dir, "planner.pub"), []byte(planner.PublicKey()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Signing.KeyDir = dir
	if err := EnsureKeys(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "planner.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a planner key was created beside the planner's public key: %v", err)
	}
	tr, err := Trust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tr.Planners, []string{planner.PublicKey()}) {
		t.Errorf("planners %v, want the mounted public key", tr.Planners)
	}
}
