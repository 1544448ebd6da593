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
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		toolCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kaar_mcpgateway_tool_calls_total",
			Help: "Tool calls by tool and outcome (ok, invalid_argument, not_found, conflict, unavailable, canceled, internal), MCP and REST together.",
		}, []string{"tool", "outcome"}),
		toolDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kaar_mcpgateway_tool_duration_seconds",
			Help:    "Tool call latency by tool.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 180, 600},
		}, []string{"tool"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kaar_mcpgateway_approvals_total",
			Help: "Decisions published to APPROVALS (duplicates excluded) by decision (approved, rejected) and channel (mcp, rest).",
		}, []string{"decision", "via"}),
	}
	for _, c := range []prometheus.Collector{m.toolCalls, m.toolDuration, m.decisions} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}
