package config

import (
	"strings"
	"testing"
)

func TestJetStreamDomainIsAToken(t *testing.T) {
	c, err := Load(strings.NewReader("nats:\n  url: nats://leaf:4222\n  jetstream_domain: central\n"), nil)
	if err != nil || c.NATS.JetStreamDomain != "central" {
		t.Fatalf("valid domain: %+v %v", c.NATS, err)
	}
	for _, bad := range []string{"Central", "a.b", "-x", "has space"} {
		_, err := Load(strings.NewReader("nats:\n  jetstream_domain: \""+bad+"\"\n"), nil)
		if err == nil || !strings.Contains(err.Error(), "nats.jetstream_domain") {
			t.Errorf("domain %q: %v, want an error naming nats.jetstream_domain", bad, err)
		}
	}
}
