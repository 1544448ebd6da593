package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWatcherSection(t *testing.T) {
	def := Default().Watcher
	if def.RestartThreshold != 1 || def.PendingGrace.Duration != 30*time.Second || def.RecoveredAfter.Duration != 10*time.Minute ||
		def.NotReadyAfter.Duration != 10*time.Minute || def.StuckTerminatingAfter.Duration != 5*time.Minute ||
		def.GroupWait.Duration != 0 || def.GroupInterval.Duration != 30*time.Second || def.ResolveWait.Duration != 10*time.Second {
		t.Errorf("default watcher section = %+v", def)
	}
	cfg, err := Load(strings.NewReader("watcher:\n  restart_threshold: 3\n  pending_grace: 2m\n  not_ready_after: 0s\n  group_wait: 2s\n  group_interval: 1m\n"),
		[]string{"KAAR_WATCHER_STUCK_TERMINATING_AFTER=1m", "KAAR_WATCHER_RESOLVE_WAIT=20s"})
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.Watcher; w.RestartThreshold != 3 || w.PendingGrace.Duration != 2*time.Minute || w.NotReadyAfter.Duration != 0 ||
		w.StuckTerminatingAfter.Duration != time.Minute || w.RecoveredAfter.Duration != 10*time.Minute ||
		w.GroupWait.Duration != 2*time.Second || w.GroupInterval.Duration != time.Minute || w.ResolveWait.Duration != 20*time.Second {
		t.Errorf("loaded watcher section = %+v", w)
	}
	for _, tc := range []struct{ yaml, key string }{
		{"watcher:\n  restart_threshold: -1\n", "watcher.restart_threshold"},
		{"watcher:\n  pending_grace: -5s\n", "watcher.pending_grace"},
		{"watcher:\n  recovered_after: 48h\n", "watcher.recovered_after"},
		{"watcher:\n  pending: 1m\n", "watcher.pending"},
		{"watcher:\n  group_wait: -1s\n", "watcher.group_wait"},
		{"watcher:\n  group_interval: 0s\n", "watcher.group_interval"},
		{"watcher:\n  resolve_wait: 25h\n", "watcher.resolve_wait"},
	} {
		_, err := Load(strings.NewReader(tc.yaml), nil)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Key != tc.key || !errors.Is(err, ErrInvalid) {
			t.Errorf("Load(%q) = %v, want a FieldError for %s", tc.yaml, err, tc.key)
		}
	}
}
