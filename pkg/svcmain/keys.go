package svcmain

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kaar-dev/kaar/pkg/bus"
	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
)

// Signing roles: each signs with its own key (config signing.*).
const (
	RolePlanner  = "planner"
	RoleGateway  = "mcpgateway"
	RoleNotifier = "notifier"
	RoleCLI      = "cli"
	RoleExecutor = "executor"
)

// SigningRoles lists every role that signs.
func SigningRoles() []string {
	return []string{RolePlanner, RoleGateway, RoleNotifier, RoleCLI, RoleExecutor}
}

// KeyDir is signing.key_dir, else ${XDG_STATE_HOME:-~/.local/state}/kaar/keys.
func KeyDir(cfg config.Config) (string, error) {
	if cfg.Signing.KeyDir != "" {
		return cfg.Signing.KeyDir, nil
	}
	dir, err := bus.StateDir("keys")
	if err != nil {
		return "", fmt.Errorf("signing key directory (set signing.key_dir): %w", err)
	}
	return dir, nil
}

// Signer is the signing key of role: signing.key_file when set (it must
// exist), else <key_dir>/<role>.key, created (0600, with <role>.pub) on
// first use (reported on logger). signing.key_file's mode is checked
// with the other credential files (config.FilePermissionWarnings).
func Signer(cfg config.Config, role string, logger *slog.Logger) (*events.Signer, error) {
	if f := cfg.Signing.KeyFile; f != "" {
		return loadSigner(f)
	}
	dir, err := KeyDir(cfg)
	if err != nil {
		return nil, err
	}
	return EnsureKey(dir, role, logger)
}

// EnsureKey loads <dir>/<role>.key, or creates it (dir 0700, key 0600) with
// its public key in <dir>/<role>.pub. The key appears atomically (written
// aside, then hard-linked into place), so concurrent first starts agree on
// one key and never read a half-written file.
func EnsureKey(dir, role string, logger *slog.Logger) (*events.Signer, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	path := filepath.Join(dir, role+".key")
	s, err := loadSigner(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("signing key directory %s: %w", dir, err)
	}
	if s, err = events.GenerateSigner(); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, "."+role+".key-*")
	if err != nil {
		return nil, fmt.Errorf("create signing key in %s: %w", dir, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // fails once the key is linked into place, as it should
	if _, err := tmp.Write(s.MarshalPEM()); err != nil {
		_ = tmp.Close() // the write error is the one to report
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return loadSigner(path) // another process created it first
	} else if err != nil {
		return nil, fmt.Errorf("create signing key %s: %w", path, err)
	}
	if err := os.WriteFile(filepath.Join(dir, role+".pub"), []byte(s.PublicKey()+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write public key: %w", err)
	}
	logger.Info("created a signing key", slog.String("role", role), slog.String("file", path), slog.String("public_key", s.PublicKey()))
	return s, nil
}

// EnsureKeys creates the missing keys of every role in the key directory
// (nothing when signing.key_file names this process's key: a split
// deployment configures its keys). A role with only its <role>.pub in the
// directory is left alone: its private key lives with its service. The first kaar process of a machine
// thus creates the installation's keys, and every later one, the executor
// included, finds and trusts them.
func EnsureKeys(cfg config.Config, logger *slog.Logger) error {
	if cfg.Signing.KeyFile != "" {
		return nil
	}
	dir, err := KeyDir(cfg)
	if err != nil {
		return err
	}
	for _, role := range SigningRoles() {
		// A role whose public key alone is here (an executor's mount of
		// the others' .pub files) keeps its private key elsewhere.
		if _, err := os.Stat(filepath.Join(dir, role+".pub")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, role+".key")); errors.Is(err, fs.ErrNotExist) {
				continue
			}
		}
		if _, err := EnsureKey(dir, role, logger); err != nil {
			return err
		}
	}
	return nil
}

func loadSigner(path string) (*events.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	// signing.key_file's mode is checked with the other credential files
	// (config.FilePermissionWarnings); keys kaar creates are 0600.
	s, err := events.ParseSignerPEM(b)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return s, nil
}

// Trust is whom the executor believes: the keys listed under
// signing.trusted_*, plus the public keys of the roles found in the key
// directory (<role>.pub), each for its own purpose: the planner's for
// plans, the gateway's for mcp, mcp-elicitation and rest, the notifier's
// for slack and webhook, the CLI's for cli, and the executor's own for
// auto (which the executor honours only with remediation.auto_approve).
func Trust(cfg config.Config) (events.Trust, error) {
	s := cfg.Signing
	t := events.Trust{Planners: append([]string(nil), s.TrustedPlanners...)}
	t.Add(s.TrustedChannels.MCP, events.ViaMCP, events.ViaMCPElicitation, events.ViaREST)
	t.Add(s.TrustedChannels.Slack, events.ViaSlack)
	t.Add(s.TrustedChannels.Webhook, events.ViaWebhook)
	t.Add(s.TrustedChannels.CLI, events.ViaCLI)
	dir, err := KeyDir(cfg)
	if err != nil {
		return t, err
	}
	for _, role := range SigningRoles() {
		pub, err := RolePublicKey(dir, role)
		if err != nil {
			return t, err
		}
		if pub == "" {
			continue
		}
		switch role {
		case RolePlanner:
			if !slices.Contains(t.Planners, pub) {
				t.Planners = append(t.Planners, pub)
			}
		case RoleGateway:
			t.Add([]string{pub}, events.ViaMCP, events.ViaMCPElicitation, events.ViaREST)
		case RoleNotifier:
			t.Add([]string{pub}, events.ViaSlack, events.ViaWebhook)
		case RoleCLI:
			t.Add([]string{pub}, events.ViaCLI)
		case RoleExecutor:
			t.Add([]string{pub}, events.ViaAuto)
		}
	}
	return t, t.Validate()
}

// RolePublicKey is the public key in <dir>/<role>.pub, else (a key
// created by a process that stopped before writing its .pub) of
// <dir>/<role>.key; "" when neither exists. A private key is read only
// in that last case.
func RolePublicKey(dir, role string) (string, error) {
	path := filepath.Join(dir, role+".pub")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b, err := os.ReadFile(filepath.Join(dir, role+".key"))
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("signing key: %w", err)
		}
		s, err := events.ParseSignerPEM(b)
		if err != nil {
			return "", fmt.Errorf("signing key %s: %w", filepath.Join(dir, role+".key"), err)
		}
		return s.PublicKey(), nil
	}
	if err != nil {
		return "", fmt.Errorf("trusted key: %w", err)
	}
	pub := strings.TrimSpace(string(b))
	if _, err := events.ParsePublicKey(pub); err != nil {
		return "", fmt.Errorf("trusted key %s: %w", path, err)
	}
	return pub, nil
}

// Signer is the signing key of role for this service (see Signer).
func (e Env) Signer(role string) (*events.Signer, error) { return Signer(e.Config, role, e.Logger) }

// Trust is the executor's trust for this configuration (see Trust).
func (e Env) Trust() (events.Trust, error) { return Trust(e.Config) }
