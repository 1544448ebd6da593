package notifier

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	slackCalls *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	decisions  *prometheus.CounterVec
	refused    *prometheus.CounterVec

	socketUp         prometheus.Gauge
	socketReconnects prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		slackCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kaar_notifier_slack_calls_total",
			Help: "Slack Web API calls by method and result."}, []string{"method", "result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kaar_notifier_webhook_deliveries_total",
			Help: "Webhook delivery attempts by receiver and result (ok, retry, dropped; warning_skipped: a warning transition kept for the digest)."}, []string{"receiver", "result"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kaar_notifier_decisions_total",
			Help: "Decisions published by channel and decision."}, []string{"via", "decision"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kaar_notifier_refused_requests_total",
			Help: "Inbound requests refused, by endpoint and reason."}, []string{"endpoint", "reason"}),
		socketUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kaar_notifier_slack_socket_connected",
			Help: "1 while a Slack Socket Mode connection is open and greeted, else 0."}),
		socketReconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "kaar_notifier_slack_socket_reconnects_total",
			Help: "Slack Socket Mode connections that failed or dropped and are reopened with backoff."}),
	}
	for _, c := range []prometheus.Collector{m.slackCalls, m.deliveries, m.decisions, m.refused, m.socketUp, m.socketReconnects} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("notifier: register metrics: %w", err)
		}
	}
	return m, nil
}
