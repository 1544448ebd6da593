package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWatcherIngressGrace(t *testing.T) {
	if d := Default().Watcher.IngressGrace.Duration; d != 15*time.Minute {
		t.Errorf("default watcher.ingress_grace = %s, want 15m", d)
	}
	cfg, err := Load(strings.NewReader("watcher:\n  ingress_grace: 20m\n"), nil)
	if err != nil || cfg.Watcher.IngressGrace.Duration != 20*time.Minute {
		t.Errorf("ingress_grace: 20m loaded as %s, %v", cfg.Watcher.IngressGrace.Duration, err)
	}
	cfg, err = Load(strings.NewReader(""), []string{"KAAR_WATCHER_INGRESS_GRACE=3m"})
	if err != nil || cfg.Watcher.IngressGrace.Duration != 3*time.Minute {
		t.Errorf("KAAR_WATCHER_INGRESS_GRACE=3m loaded as %s, %v", cfg.Watcher.IngressGrace.Duration, err)
	}
	for _, v := range []string{"0s", "-1m", "25h"} {
		_, err := Load(strings.NewReader("watcher:\n  ingress_grace: "+v+"\n"), nil)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Key != "watcher.ingress_grace" || !errors.Is(err, ErrInvalid) {
			t.Errorf("ingress_grace: %s: %v, want a FieldError for watcher.ingress_grace", v, err)
		}
	}
}
