package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/kaar-dev/kaar/pkg/svcmain"
)

const keysHelp = `Manages the signing keys: the planner signs plans, the gateway, notifier and CLI sign
decisions, the executor signs its auto-approvals, and the executor acts only on what keys
it trusts signed (signing.trusted_planners, signing.trusted_channels).

  kaar keys init   create the missing key of every role in signing.key_dir (0600 files in a
                   0700 directory; kaar serve does this itself on first start) and print the
                   public keys, in the form the executor's signing.trusted_* keys take
  kaar keys show   print the public keys of signing.key_dir, or of signing.key_file

A split deployment gives each service its key file (signing.key_file) and lists the public
keys in the executor's configuration. Rotation: add the new public key to the trust lists,
move the signer to its new key, remove the old public key once its plans have expired.`

// runKeys is "kaar keys init|show".
func runKeys(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keys", keysHelp, stderr)
	var cf commonFlags
	cf.register(fs)
	if len(args) == 0 || (args[0] != "init" && args[0] != "show") {
		fs.Usage()
		return fmt.Errorf("keys: want init or show")
	}
	verb := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if cfg.Signing.KeyFile != "" {
		s, err := svcmain.Signer(cfg, "", slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s  %s\n", cfg.Signing.KeyFile, s.PublicKey())
		return nil
	}
	dir, err := svcmain.KeyDir(cfg)
	if err != nil {
		return err
	}
	logger := slog.New(slog.DiscardHandler)
	if verb == "init" {
		if err := svcmain.EnsureKeys(cfg, logger); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "# signing keys in %s\n", dir)
	cfgKey := map[string]string{
		svcmain.RolePlanner:  "signing.trusted_planners",
		svcmain.RoleGateway:  "signing.trusted_channels.mcp",
		svcmain.RoleNotifier: "signing.trusted_channels.slack and .webhook",
		svcmain.RoleCLI:      "signing.trusted_channels.cli",
		svcmain.RoleExecutor: "auto-approval (the executor's own key)",
	}
	found := 0
	for _, role := range svcmain.SigningRoles() {
		pub, err := svcmain.RolePublicKey(dir, role)
		if err != nil {
			return err
		}
		if pub == "" {
			fmt.Fprintf(stdout, "%-10s (no key yet: kaar keys init)\n", role)
			continue
		}
		found++
		fmt.Fprintf(stdout, "%-10s %s  # %s, for %s\n", role, pub, filepath.Join(dir, role+".key"), cfgKey[role])
	}
	if found == 0 && verb == "show" {
		return fmt.Errorf("no signing keys in %s: run kaar keys init (or kaar serve)", dir)
	}
	return nil
}
