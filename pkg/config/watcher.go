package config

import "time"

// Watcher tunes detection: when a failing pod becomes an incident.
type Watcher struct {
	// RestartThreshold: a crash or OOM kill is reported once the
	// container has restarted more than this many times (1: a single
	// restart that recovered is not an incident).
	RestartThreshold int `yaml:"restart_threshold"`
	// PendingGrace is how long a pod may be unschedulable before it is
	// reported (a scale-up may be on its way).
	PendingGrace Duration `yaml:"pending_grace"`
	// RecoveredAfter is how long a restarted container must run again to
	// count as recovered.
	RecoveredAfter Duration `yaml:"recovered_after"`
	// NotReadyAfter reports a running pod not ready for that long; 0
	// disables the check.
	NotReadyAfter Duration `yaml:"not_ready_after"`
	// StuckTerminatingAfter reports a pod still there that long after its
	// deletion deadline; 0 disables the check.
	StuckTerminatingAfter Duration `yaml:"stuck_terminating_after"`
	// NodeGrace is how long a node may be NotReady, unreachable or under
	// memory, disk or PID pressure before it is reported.
	NodeGrace Duration `yaml:"node_grace"`
	// NodeCordonedAfter is how long a node may stay cordoned while pods
	// are still on it or Pending for want of a schedulable node before
	// its low-severity incident (a drain) becomes a medium one (a node
	// left cordoned).
	NodeCordonedAfter Duration `yaml:"node_cordoned_after"`
	// HPAGrace is how long a HorizontalPodAutoscaler may be unable to
	// compute its replica count before it is reported.
	HPAGrace Duration `yaml:"hpa_grace"`
	// HPAAtMaxAfter is how long a HorizontalPodAutoscaler may want more
	// replicas than its maxReplicas before it is reported.
	HPAAtMaxAfter Duration `yaml:"hpa_at_max_after"`
	// IngressGrace is how long an Ingress of an existing IngressClass may
	// have no address, while no Ingress of its class has one, before its
	// class is reported as having no running controller (a controller
	// writes the address within seconds; a cloud load balancer within
	// minutes).
	IngressGrace Duration `yaml:"ingress_grace"`
	// GroupWait holds a new incident that long before announcing it, so
	// that the pods of a workload failing together are one announcement;
	// 0 (the default) announces the first failing pod at once.
	GroupWait Duration `yaml:"group_wait"`
	// GroupInterval is the shortest time between two announcements of one
	// incident (pods joining it, a new cause): changes are coalesced.
	GroupInterval Duration `yaml:"group_interval"`
	// ResolveWait is how long an incident must be gone before it is
	// announced as resolved (a flapping pod is not resolved and detected
	// again).
	ResolveWait Duration `yaml:"resolve_wait"`
	// Warnings tunes the warning class (watcher.warnings.*).
	Warnings Warnings `yaml:"warnings"`
}

// Bounds of the watcher section.
const (
	maxWatcherDuration = 24 * time.Hour
	maxRestartCount    = 1000
)

func (w Watcher) validate() error {
	var p problems
	if n := w.RestartThreshold; n < 0 || n > maxRestartCount {
		p.addf("watcher.restart_threshold", "%d is not between 0 and %d", n, maxRestartCount)
	}
	for _, d := range []struct {
		key string
		d   time.Duration
		min time.Duration
	}{
		{"watcher.pending_grace", w.PendingGrace.Duration, 0},
		{"watcher.recovered_after", w.RecoveredAfter.Duration, 0},
		{"watcher.not_ready_after", w.NotReadyAfter.Duration, 0},
		{"watcher.stuck_terminating_after", w.StuckTerminatingAfter.Duration, 0},
		{"watcher.node_grace", w.NodeGrace.Duration, time.Second},
		{"watcher.node_cordoned_after", w.NodeCordonedAfter.Duration, time.Second},
		{"watcher.hpa_grace", w.HPAGrace.Duration, time.Second},
		{"watcher.hpa_at_max_after", w.HPAAtMaxAfter.Duration, time.Second},
		{"watcher.ingress_grace", w.IngressGrace.Duration, time.Second},
		{"watcher.group_wait", w.GroupWait.Duration, 0},
		{"watcher.group_interval", w.GroupInterval.Duration, time.Second},
		{"watcher.resolve_wait", w.ResolveWait.Duration, time.Second},
	} {
		if d.d < d.min || d.d > maxWatcherDuration {
			p.addf(d.key, "%s is not between %s and %s", d.d, d.min, maxWatcherDuration)
		}
	}
	w.Warnings.validate(&p)
	return p.join()
}
