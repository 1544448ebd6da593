package config

import (
	"errors"
	"strings"
	"testing"
)

func TestSigningKeysAreValidated(t *testing.T) {
	good := "ed25519:" + strings.Repeat("A", 43) + "="
	cfg, err := Load(strings.NewReader("signing:\n  key_dir: /var/lib/kaar/keys\n  trusted_planners: [\""+good+"\"]\n  trusted_channels:\n    slack: [\""+good+"\"]\n"), nil)
	if err != nil {
		t.Fatalf("valid signing section: %v", err)
	}
	if cfg.Signing.KeyDir != "/var/lib/kaar/keys" || len(cfg.Signing.TrustedPlanners) != 1 || len(cfg.Signing.TrustedChannels.Slack) != 1 {
		t.Errorf("signing %+v", cfg.Signing)
	}
	for key, yaml := range map[string]string{
		"signing.trusted_planners[0]":         "signing:\n  trusted_planners: [\"ssh-ed25519 AAAA\"]\n",
		"signing.trusted_channels.mcp[1]":     "signing:\n  trusted_channels:\n    mcp: [\"" + good + "\", \"ed25519:c2hvcnQ=\"]\n",
		"signing.trusted_channels.webhook[0]": "signing:\n  trusted_channels:\n    webhook: [\"\"]\n",
		"signing.trusted_channels.teams":      "signing:\n  trusted_channels:\n    teams: []\n",
	} {
		_, err := Load(strings.NewReader(yaml), nil)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Key != key {
			t.Errorf("%q: error %v, want one naming %s", yaml, err, key)
		}
	}
}
