package planner

import "errors"

// Sentinel errors, for callers to test with errors.Is.
var (
	// ErrInvalidConfig: a Config value is out of range; the message names
	// the configuration key.
	ErrInvalidConfig = errors.New("invalid planner configuration")
	// ErrTargetGone: the incident's workload no longer exists.
	ErrTargetGone = errors.New("target workload not found")
	// ErrNoIncident: the watcher knows no incident for the requested
	// workload.
	ErrNoIncident = errors.New("no incident for workload")
	// ErrWatcherUnavailable: the watcher did not answer an analyze request.
	ErrWatcherUnavailable = errors.New("watcher unavailable")
)
