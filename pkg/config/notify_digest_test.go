package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// notify.warning_digest: on by default (daily at 09:00 UTC, 20 lines),
// turned off with enabled: false (then not checked), and every bad value
// reported under its key.
func TestWarningDigestConfig(t *testing.T) {
	d := loadOK(t, "").Notify.WarningDigest
	if !d.Enabled || d.Every.Duration != 24*time.Hour || d.At != "09:00" || d.Timezone != "UTC" || d.MaxLines != 20 {
		t.Fatalf("default digest %+v", d)
	}
	d = loadOK(t, "notify:\n  warning_digest: {every: 168h, at: \"08:30\", timezone: Europe/Berlin, max_lines: 50}\n").Notify.WarningDigest
	if d.Every.Duration != 168*time.Hour || d.At != "08:30" || d.Timezone != "Europe/Berlin" || d.MaxLines != 50 {
		t.Fatalf("digest %+v", d)
	}
	if loadOK(t, "notify:\n  warning_digest: {enabled: false, every: 5m}\n").Notify.WarningDigest.Enabled {
		t.Fatal("enabled: false kept the digest on")
	}
	cfg, err := Load(strings.NewReader(""), []string{"KAAR_NOTIFY_WARNING_DIGEST_ENABLED=false"})
	if err != nil || cfg.Notify.WarningDigest.Enabled {
		t.Fatalf("environment override: %v, enabled %t", err, cfg.Notify.WarningDigest.Enabled)
	}
	for _, c := range []struct{ yaml, key, problem string }{
		{"every: 30m", "notify.warning_digest.every", "between 1h0m0s and 168h0m0s"},
		{"every: 200h", "notify.warning_digest.every", "between"},
		{"every: 5h", "notify.warning_digest.every", "must divide a day"},
		{"every: 36h", "notify.warning_digest.every", "whole days"},
		{"at: \"9am\"", "notify.warning_digest.at", "not a time of day"},
		{"timezone: Mars/Olympus", "notify.warning_digest.timezone", "not a time zone"},
		{"timezone: \"\"", "notify.warning_digest.timezone", "not a time zone"},
		{"max_lines: 0", "notify.warning_digest.max_lines", "between 1 and 50"},
		{"max_lines: 51", "notify.warning_digest.max_lines", "between 1 and 50"},
		{"every: soon", "notify.warning_digest.every", "duration"},
		{"hour: 9", "notify.warning_digest.hour", "unknown key"},
	} {
		_, err := Load(strings.NewReader("notify:\n  warning_digest: {"+c.yaml+"}\n"), nil)
		var fe *FieldError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), `"`+c.key+`"`) || !strings.Contains(err.Error(), c.problem) {
			t.Errorf("%s: error %v, want one naming %s and saying %q", c.yaml, err, c.key, c.problem)
		}
	}
}
