package config

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// Signing is who signs plans and decisions, and whom the executor trusts.
//
// The planner signs every plan and every deciding channel signs its
// decisions (ed25519). The executor acts only on a plan signed by a key in
// trusted_planners and a decision signed by a key trusted for its channel.
// On one machine nothing needs configuring: kaar creates one key per role
// (planner, mcpgateway, notifier, cli, executor) in key_dir on first use and
// trusts the public keys it finds there. A split deployment gives each
// service its key_file and lists the public keys ("ed25519:<base64>",
// printed by `kaar keys init`) in the executor's trusted_* keys. To rotate,
// add the new public key, move the signer to the new key, then remove the
// old one: plans signed by a key no longer listed are refused.
type Signing struct {
	// KeyDir holds the per-role keys (<role>.key, 0600, and <role>.pub);
	// default ${XDG_STATE_HOME:-~/.local/state}/kaar/keys.
	KeyDir string `yaml:"key_dir"`
	// KeyFile is this process's private key (PKCS #8 PEM), for a service
	// run alone; it overrides <key_dir>/<role>.key.
	KeyFile string `yaml:"key_file"`
	// TrustedPlanners are the public keys plans may be signed with.
	TrustedPlanners []string `yaml:"trusted_planners"`
	// TrustedChannels are the public keys each channel's decisions may be
	// signed with.
	TrustedChannels TrustedChannels `yaml:"trusted_channels"`
}

// TrustedChannels lists the decision keys per channel.
type TrustedChannels struct {
	// MCP is the gateway: decisions via mcp, mcp-elicitation and rest.
	MCP []string `yaml:"mcp"`
	// Slack and Webhook are the notifier's.
	Slack   []string `yaml:"slack"`
	Webhook []string `yaml:"webhook"`
	// CLI is `kaar plans approve|reject`.
	CLI []string `yaml:"cli"`
}

func (s Signing) validate() error {
	var p problems
	for _, c := range []struct {
		key  string
		keys []string
	}{
		{"signing.trusted_planners", s.TrustedPlanners},
		{"signing.trusted_channels.mcp", s.TrustedChannels.MCP},
		{"signing.trusted_channels.slack", s.TrustedChannels.Slack},
		{"signing.trusted_channels.webhook", s.TrustedChannels.Webhook},
		{"signing.trusted_channels.cli", s.TrustedChannels.CLI},
	} {
		for i, k := range c.keys {
			if !validPublicKey(k) {
				p.addf(fmt.Sprintf("%s[%d]", c.key, i), "%q is not a public key: want ed25519: followed by the base64 of 32 bytes (kaar keys init prints them)", k)
			}
		}
	}
	return p.join()
}

func validPublicKey(k string) bool {
	b64, ok := strings.CutPrefix(k, "ed25519:")
	if !ok {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	return err == nil && len(b) == 32
}
