package watcher

import (
	"cmp"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// createFailureKinds are the controllers whose FailedCreate events are
// read: those without a condition that says so. ReplicaSets have
// ReplicaFailure; a ReplicationController is not followed. A CronJob's
// is about its Jobs (the cronjob controller could not create one).
var createFailureKinds = map[string]bool{"StatefulSet": true, "DaemonSet": true, "Job": true, "CronJob": true}

// CreateFailureOf reads one event: a controller's Warning FailedCreate
// about a StatefulSet, DaemonSet or Job gives that object and its report.
func CreateFailureOf(ev *corev1.Event) (ref corev1.ObjectReference, fc CreateFailure, ok bool) {
	if ev == nil || ev.Type != corev1.EventTypeWarning || ev.Reason != reasonFailedCreate ||
		!createFailureKinds[ev.InvolvedObject.Kind] || ev.InvolvedObject.UID == "" {
		return corev1.ObjectReference{}, CreateFailure{}, false
	}
	ref = ev.InvolvedObject
	ref.Namespace = cmp.Or(ref.Namespace, ev.Namespace)
	return ref, CreateFailure{Message: ev.Message, At: eventTime(ev)}, true
}

// createMemory remembers, per controller, its last FailedCreate report,
// until the controller is seen with all its pods (clear): a report older
// than that is history, even when a re-listed event brings it back. Safe
// for concurrent use.
type createMemory struct {
	mu      sync.Mutex
	last    map[types.UID]CreateFailure
	cleared map[types.UID]time.Time
}

func newCreateMemory() *createMemory {
	return &createMemory{last: map[types.UID]CreateFailure{}, cleared: map[types.UID]time.Time{}}
}

// observe records a report; it returns whether it is news.
func (m *createMemory) observe(uid types.UID, fc CreateFailure) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.cleared[uid]; ok && !fc.At.After(c) {
		return false
	}
	if prev, ok := m.last[uid]; ok && (fc.At.Before(prev.At) || prev == fc) {
		return false
	}
	m.last[uid] = fc
	return true
}

// get returns the last report about uid, nil for none.
func (m *createMemory) get(uid types.UID) *CreateFailure {
	m.mu.Lock()
	defer m.mu.Unlock()
	fc, ok := m.last[uid]
	if !ok {
		return nil
	}
	return &fc
}

// clear forgets the reports about uid up to now: its controller has all
// its pods.
func (m *createMemory) clear(uid types.UID, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.last[uid]; !ok {
		return
	}
	delete(m.last, uid)
	m.cleared[uid] = now
}

// forget drops everything about uid (its controller was deleted).
func (m *createMemory) forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.last, uid)
	delete(m.cleared, uid)
}
