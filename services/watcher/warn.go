package watcher

import (
	"time"

	"github.com/kaar-dev/kaar/pkg/config"
	"github.com/kaar-dev/kaar/pkg/events"
)

// Warnings (issue class warning): what is about to fail. They are
// incidents like the failures, with the same identity, announcement,
// deduplication and resolution (the tracker), reported on the object a
// person would change, with their numbers in Incident.Warning. Three
// families feed them, each in a file of its own:
//   - configuration risks of a workload's pod template (warn_config.go):
//     MissingResources, MissingProbes, MutableImageTag, SingleNodeRisk,
//     and PDBBlocksDrain on the PodDisruptionBudget;
//   - capacity (warn_capacity.go): QuotaNearLimit, NodeNearlyFull,
//     LimitRangeExceedsQuota, CertificateExpiring, and HPAAtMaxReplicas
//     (hpa.go);
//   - trends of usage and status sampled over time (warn_trend.go):
//     MemoryNearLimit, RecurringRestarts, ReadyReplicasDipping.
//
// A source is a function of an owner and the time that returns the
// owner's warnings as controller observations (ControllerIssue with
// Container and Warning set) and when to look again. reconcile adds them
// to the owner's other observations, so a warning that is no longer
// observed resolves like any incident. Warnings are evaluated only when
// Config.Warnings.Enabled; each type can be turned off
// (watcher.warnings.disabled).

// WarningOptions tune the warnings: the watcher.warnings section.
type WarningOptions struct {
	// Enabled turns the warnings on. The zero Config has them off; kaar's
	// configuration has them on by default (watcher.warnings.enabled).
	Enabled bool
	// Config is the watcher.warnings section (thresholds, windows,
	// disabled types); zero fields take config.DefaultWarnings().
	Config config.Warnings
}

// on reports whether warnings of type t are evaluated.
func (o WarningOptions) on(t events.IssueType) bool { return o.Enabled && o.Config.On(t) }

// withDefaults fills the zero thresholds and windows.
func (o WarningOptions) withDefaults() WarningOptions {
	d := config.DefaultWarnings()
	c := &o.Config
	defInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	defDur := func(v *config.Duration, def config.Duration) {
		if v.Duration == 0 {
			*v = def
		}
	}
	defInt(&c.QuotaThreshold, d.QuotaThreshold)
	defInt(&c.NodeThreshold, d.NodeThreshold)
	defInt(&c.RestartMin, d.RestartMin)
	defInt(&c.DipMin, d.DipMin)
	defDur(&c.CertificateHorizon, d.CertificateHorizon)
	defDur(&c.UsageInterval, d.UsageInterval)
	defDur(&c.UsageRetention, d.UsageRetention)
	defDur(&c.MemoryWindow, d.MemoryWindow)
	defDur(&c.MemoryHorizon, d.MemoryHorizon)
	defDur(&c.RestartWindow, d.RestartWindow)
	defDur(&c.DipWindow, d.DipWindow)
	if c.MemoryConfidence == 0 {
		c.MemoryConfidence = d.MemoryConfidence
	}
	return o
}

// warningSource evaluates one family of warnings for owner k.
type warningSource func(k ownerKey, now time.Time) ([]ctrlObs, time.Time)

// warningObs evaluates every warning source for owner k. Each source
// returns nothing for kinds it does not know and when its informers are
// not running.
func (s *Service) warningObs(k ownerKey, now time.Time) ([]ctrlObs, time.Time) {
	if !s.cfg.Warnings.Enabled || !s.filter.watched(k.Namespace) && k.Kind != kindNode {
		return nil, time.Time{}
	}
	var out []ctrlObs
	var recheck time.Time
	for _, src := range s.warningSources {
		obs, rc := src(k, now)
		recheck = earliest(recheck, rc)
		out = append(out, obs...)
	}
	return out, recheck
}

// keepOn drops the warnings of types turned off (HPAAtMaxReplicas comes
// from the HPA classifier, the others from the warning sources).
func (s *Service) keepOn(obs []ctrlObs) []ctrlObs {
	out := obs[:0:0]
	for _, o := range obs {
		var issues []ControllerIssue
		for _, iss := range o.Issues {
			if !iss.Type.IsWarning() || s.cfg.Warnings.on(iss.Type) {
				issues = append(issues, iss)
			}
		}
		if len(issues) > 0 {
			o.Issues = issues
			out = append(out, o)
		}
	}
	return out
}
