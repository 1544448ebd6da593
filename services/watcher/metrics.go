package watcher

import (
	"fmt"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the watcher's Prometheus metrics, registered in New.
type metrics struct {
	detections    *prometheus.CounterVec
	incidents     *prometheus.GaugeVec
	publishErrors prometheus.Counter
	handling      prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		detections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kaar_watcher_detections_total",
			Help: "Incidents announced as detected, by issue type.",
		}, []string{"type"}),
		incidents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kaar_watcher_incidents",
			Help: "Incidents currently present, by issue type (announced or within their group wait).",
		}, []string{"type"}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kaar_watcher_publish_errors_total",
			Help: "Incident transitions that could not be published or recorded (retried with back-off).",
		}),
		handling: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kaar_watcher_event_handling_duration_seconds",
			Help:    "Time to evaluate one owner's pods and publish its due transitions.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100µs .. ~26s
		}),
	}
	for _, t := range events.IssueTypes() {
		m.detections.WithLabelValues(string(t))
		m.incidents.WithLabelValues(string(t)).Set(0)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.detections, m.incidents, m.publishErrors, m.handling} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register watcher metrics (one watcher per registry): %w", err)
		}
	}
	return m, nil
}

// setIncidents publishes the tracker's per-type counts.
func (m *metrics) setIncidents(counts map[events.IssueType]int) {
	for _, t := range events.IssueTypes() {
		m.incidents.WithLabelValues(string(t)).Set(float64(counts[t]))
	}
}
