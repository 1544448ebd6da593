package planner

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of kaar_planner_plans_total.
const (
	// outcomeProposed: a plan with a mutating step was stored.
	outcomeProposed = "proposed"
	// outcomeDiagnostic: a diagnostic-only plan was stored.
	outcomeDiagnostic = "diagnostic"
	// outcomeUnchanged: an equivalent plan was already proposed.
	outcomeUnchanged = "unchanged"
	// outcomeSuperseded: a proposed plan was replaced or made obsolete.
	outcomeSuperseded = "superseded"
	// outcomeExpired: a proposed plan's approval window ran out.
	outcomeExpired = "expired"
	// outcomeFailed: planning failed (the message is retried).
	outcomeFailed = "failed"
	// outcomeWarning: a warning arrived on the issue stream and was not
	// planned (warnings are planned only on request).
	outcomeWarning = "warning_not_planned"
)

// Sources of a planning, the label of the latency histogram.
const (
	sourceIssue   = "issue"
	sourceRequest = "request"
)

// metrics are the planner's Prometheus metrics.
type metrics struct {
	plans          *prometheus.CounterVec
	dryRunFailures *prometheus.CounterVec
	latency        *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		plans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kaar_planner_plans_total",
			Help: "Plans handled by the planner, by issue type and outcome (proposed, diagnostic, unchanged, superseded, expired, failed, warning_not_planned).",
		}, []string{"type", "outcome"}),
		dryRunFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kaar_planner_dryrun_failures_total",
			Help: "Mutating steps the API server rejected in a server-side dry run, by action.",
		}, []string{"action"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kaar_planner_planning_duration_seconds",
			Help:    "Time to plan one incident (evidence, dry runs, storage), by source (issue, request).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}, []string{"source"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.plans, m.dryRunFailures, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register planner metrics: %w", err)
		}
	}
	return m, nil
}
