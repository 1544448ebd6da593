package executor

import "github.com/prometheus/client_golang/prometheus"

// metrics are the executor's Prometheus collectors.
type metrics struct {
	executions     *prometheus.CounterVec
	refusals       *prometheus.CounterVec
	claims         prometheus.Counter
	resumed        prometheus.Counter
	invalid        prometheus.Counter
	retries        prometheus.Counter
	stepDuration   *prometheus.HistogramVec
	verifyDuration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kaar_executor_executions_total",
			Help: "Decisions processed, by outcome (succeeded, failed, refused, rejected).",
		}, []string{"outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kaar_executor_refusals_total",
			Help: "Approvals refused, by reason (expired, stale, digest_mismatch, not_approved, already_executed, paused).",
		}, []string{"reason"}),
		claims: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kaar_executor_claims_total",
			Help: "Plans claimed for execution (proposed -> executing).",
		}),
		resumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kaar_executor_resumed_total",
			Help: "Executions taken over after an executor crash interrupted them.",
		}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kaar_executor_invalid_messages_total",
			Help: "Decision messages that did not validate and were terminated.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kaar_executor_api_retries_total",
			Help: "Kubernetes API calls retried after a transient error.",
		}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kaar_executor_step_duration_seconds",
			Help:    "Time to apply one plan step, by action and status.",
			Buckets: prometheus.ExponentialBuckets(0.005, 3, 9),
		}, []string{"action", "status"}),
		verifyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kaar_executor_verification_duration_seconds",
			Help:    "Time from the last step to the verification verdict, by result (healthy, unhealthy).",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600},
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.executions, m.refusals, m.claims, m.resumed, m.invalid, m.retries, m.stepDuration, m.verifyDuration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
