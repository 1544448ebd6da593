package config

import (
	"fmt"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
)

// Warnings tunes the warning class (watcher.warnings): what is about to
// fail, from trends, capacity and configuration risks. Warnings rank below
// every failure, are planned only on request and never page (see
// notify.warning_digest).
type Warnings struct {
	// Enabled turns every warning on or off (default on).
	Enabled *bool `yaml:"enabled"`
	// Disabled lists warning types not to report (e.g. MutableImageTag).
	Disabled []string `yaml:"disabled"`
	// QuotaThreshold is the share of a ResourceQuota's hard limit, in
	// percent, at which QuotaNearLimit warns (default 90).
	QuotaThreshold int `yaml:"quota_threshold"`
	// NodeThreshold is the share of a node's allocatable cpu, memory or
	// pods requested by its pods, in percent, at which NodeNearlyFull
	// warns (default 90).
	NodeThreshold int `yaml:"node_threshold"`
	// CertificateHorizon: CertificateExpiring warns about certificates
	// that expire within it (default 14 days, 336h).
	CertificateHorizon Duration `yaml:"certificate_horizon"`
	// UsageInterval is how often container usage is sampled from the
	// metrics API (default 1m).
	UsageInterval Duration `yaml:"usage_interval"`
	// UsageRetention is how long samples are kept on the bus, so a
	// restarted watcher keeps its trends (default 24h).
	UsageRetention Duration `yaml:"usage_retention"`
	// MemoryWindow is the span of samples a memory trend is fitted over
	// (default 1h); MemoryHorizon how far ahead a projected crossing of
	// the limit warns (default 24h); MemoryConfidence the least R² of the
	// fit that warns (default 0.8).
	MemoryWindow     Duration `yaml:"memory_window"`
	MemoryHorizon    Duration `yaml:"memory_horizon"`
	MemoryConfidence float64  `yaml:"memory_confidence"`
	// RestartWindow and RestartMin: RecurringRestarts warns about a
	// container that restarted at least RestartMin times within
	// RestartWindow without being in CrashLoopBackOff (defaults 24h, 3).
	RestartWindow Duration `yaml:"restart_window"`
	RestartMin    int      `yaml:"restart_min"`
	// DipWindow and DipMin: ReadyReplicasDipping warns about a workload
	// whose ready replicas fell below the desired count at least DipMin
	// times within DipWindow (defaults 1h, 3).
	DipWindow Duration `yaml:"dip_window"`
	DipMin    int      `yaml:"dip_min"`
}

// MaxWarningEvents is the most restart or dip times the watcher keeps
// per series (in memory and in the kaar_usage bucket): restart_min and
// dip_min cannot ask for more, or the warning could never be reached.
const MaxWarningEvents = 64

// DefaultWarnings are the defaults of watcher.warnings.
func DefaultWarnings() Warnings {
	return Warnings{QuotaThreshold: 90, NodeThreshold: 90, CertificateHorizon: Duration{14 * 24 * time.Hour},
		UsageInterval: Duration{time.Minute}, UsageRetention: Duration{24 * time.Hour},
		MemoryWindow: Duration{time.Hour}, MemoryHorizon: Duration{24 * time.Hour}, MemoryConfidence: 0.8,
		RestartWindow: Duration{24 * time.Hour}, RestartMin: 3, DipWindow: Duration{time.Hour}, DipMin: 3}
}

// On reports whether warnings of type t are reported.
func (w Warnings) On(t events.IssueType) bool {
	if w.Enabled != nil && !*w.Enabled {
		return false
	}
	for _, d := range w.Disabled {
		if d == string(t) {
			return false
		}
	}
	return true
}

func (w Warnings) validate(p *problems) {
	const key = "watcher.warnings"
	for _, d := range w.Disabled {
		if !events.IssueType(d).IsWarning() {
			p.add(fieldErr(key+".disabled", fmt.Sprintf("%q is not a warning type", d), enumStrings(events.TypesOf(events.ClassWarning))...))
		}
	}
	for _, c := range []struct {
		key    string
		v, min int
		max    int
	}{
		{key + ".quota_threshold", w.QuotaThreshold, 1, 100},
		{key + ".node_threshold", w.NodeThreshold, 1, 100},
		{key + ".restart_min", w.RestartMin, 2, MaxWarningEvents},
		{key + ".dip_min", w.DipMin, 2, MaxWarningEvents},
	} {
		if c.v < c.min || c.v > c.max {
			p.addf(c.key, "%d is not between %d and %d", c.v, c.min, c.max)
		}
	}
	for _, d := range []struct {
		key      string
		d        time.Duration
		min, max time.Duration
	}{
		{key + ".certificate_horizon", w.CertificateHorizon.Duration, time.Hour, 365 * 24 * time.Hour},
		{key + ".usage_interval", w.UsageInterval.Duration, time.Second, time.Hour},
		{key + ".usage_retention", w.UsageRetention.Duration, time.Minute, 7 * 24 * time.Hour},
		{key + ".memory_window", w.MemoryWindow.Duration, time.Minute, 7 * 24 * time.Hour},
		{key + ".memory_horizon", w.MemoryHorizon.Duration, time.Minute, 30 * 24 * time.Hour},
		{key + ".restart_window", w.RestartWindow.Duration, time.Minute, 7 * 24 * time.Hour},
		{key + ".dip_window", w.DipWindow.Duration, time.Minute, 7 * 24 * time.Hour},
	} {
		if d.d < d.min || d.d > d.max {
			p.addf(d.key, "%s is not between %s and %s", d.d, d.min, d.max)
		}
	}
	if c := w.MemoryConfidence; !(c > 0 && c <= 1) {
		p.addf(key+".memory_confidence", "%g is not greater than 0 and at most 1 (the least R² of a fit that warns)", c)
	}
	if w.MemoryWindow.Duration > w.UsageRetention.Duration {
		p.addf(key+".memory_window", "%s is longer than watcher.warnings.usage_retention (%s): the samples would be gone", w.MemoryWindow.Duration, w.UsageRetention.Duration)
	}
	// Restart and dip times are kept with the samples: a key written
	// only at a restart expires usage_retention later.
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{key + ".restart_window", w.RestartWindow.Duration}, {key + ".dip_window", w.DipWindow.Duration}} {
		if d.d > w.UsageRetention.Duration {
			p.addf(d.key, "%s is longer than watcher.warnings.usage_retention (%s): the history would be gone", d.d, w.UsageRetention.Duration)
		}
	}
	if w.MemoryWindow.Duration < 3*w.UsageInterval.Duration {
		p.addf(key+".memory_window", "%s holds fewer than 3 samples at watcher.warnings.usage_interval %s", w.MemoryWindow.Duration, w.UsageInterval.Duration)
	}
}
