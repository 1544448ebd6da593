package mcpgateway

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus collectors.
type metrics struct {
	toolCalls    *prometheus.CounterVec
	toolDuration *prometheus.HistogramVec
	decisions    *prometheus.CounterVec
	authFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		toolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kaar_mcpgateway_tool_calls_total",
			Help: "Tool calls by tool and outcome (ok, invalid_argument, forbidden, not_found, conflict, declined, input_required, unavailable, canceled, internal), MCP and REST together.",
		}, []string{"tool", "outcome"}),
		toolDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kaar_mcpgateway_tool_duration_seconds",
			Help:    "Tool call latency by tool.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 180, 600},
		}, []string{"tool"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kaar_mcpgateway_approvals_total",
			Help: "Decisions published to APPROVALS (duplicates excluded) by decision (approved, rejected) and channel (mcp, mcp-elicitation, rest).",
		}, []string{"decision", "via"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kaar_mcpgateway_auth_failures_total",
			Help: "HTTP requests refused because their bearer token is not accepted (missing tokens excluded).",
		}),
	}
	for _, c := range []prometheus.Collector{m.toolCalls, m.toolDuration, m.decisions, m.authFailures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}
