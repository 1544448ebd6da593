package watcher

import (
	"encoding/json"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// What every transform (informer.go) uses to keep a cached object small,
// so that watching more kinds stays cheap (issue 15's cost floor: the
// watcher's RSS at 10,000 pods, make bench-watcher). A new informer's
// trim function starts from trimMeta, passes the strings many objects
// repeat through intern and label maps through internLabels, and keeps
// only the status fields its classifier reads. BenchmarkCachedPod
// (compact_test.go) measures what a cached pod costs.

// maxInterned bounds each table of the interner: past it the table
// starts over (the objects keep the strings they have; only sharing with
// later objects is lost), so a cluster with many distinct values cannot
// grow it without bound.
const maxInterned = 1 << 16

// maxInternedLen is the longest string worth sharing: namespaces, names,
// images, kinds, label keys and values, reasons. Messages are longer and
// mostly distinct.
const maxInternedLen = 256

// interner holds one copy of each string (and label map) that many
// cached objects repeat: the namespace, owner and image of every pod of a
// ReplicaSet, the keys and values of its labels, condition types,
// reasons. Decoding gives every object its own copies; sharing them is
// what makes 10,000 pods of 200 workloads cost 200 label maps, not 10,000.
// Safe for concurrent use (every informer transforms in its own
// goroutine).
type interner struct {
	mu     sync.Mutex
	strs   map[string]string
	labels map[string]map[string]string
	// slices holds shared slices by type and JSON encoding (internSlice).
	slices map[string]any
	keyBuf []byte
	// yes and no are the shared *bool values (owner references'
	// controller, containers' started).
	yes, no *bool
}

// shared is the watcher's interner. It is a cache, not state: any
// object may hold its own copies instead, and the tables are bounded.
var shared = &interner{strs: map[string]string{}, labels: map[string]map[string]string{}, slices: map[string]any{},
	yes: new(true), no: new(false)}

// intern returns the shared copy of s.
func intern(s string) string { return shared.str(s) }

// internLabels returns the shared map equal to m (nil for an empty one).
// The caches' objects are never modified, so one map can serve every pod
// of a ReplicaSet; callers must not modify it either.
func internLabels(m map[string]string) map[string]string { return shared.labelMap(m) }

func (in *interner) str(s string) string {
	if s == "" || len(s) > maxInternedLen {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.strLocked(s)
}

func (in *interner) strLocked(s string) string {
	if v, ok := in.strs[s]; ok {
		return v
	}
	if len(in.strs) >= maxInterned {
		clear(in.strs)
	}
	// A clone, so that the table never pins a larger buffer s may point
	// into.
	s = strings.Clone(s)
	in.strs[s] = s
	return s
}

func (in *interner) labelMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	in.mu.Lock()
	defer in.mu.Unlock()
	b := in.keyBuf[:0]
	for _, k := range keys {
		b = append(b, k...)
		b = append(b, 0)
		b = append(b, m[k]...)
		b = append(b, 0)
	}
	in.keyBuf = b
	if out, ok := in.labels[string(b)]; ok { // no allocation for the lookup
		return out
	}
	if len(in.labels) >= maxInterned {
		clear(in.labels)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[in.strLocked(k)] = in.strLocked(v)
	}
	in.labels[string(b)] = out
	return out
}

// internSlice returns the shared slice equal to v (nil for an empty
// one): the pods of a ReplicaSet have the same trimmed containers and
// owner references. Equality is by the JSON encoding, so a field a trim
// function starts keeping can never make two different slices one. The
// caches' objects are never modified; callers must not modify it either.
func internSlice[T any](v []T) []T {
	if len(v) == 0 {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var zero T
	key := fmt.Sprintf("%T\x00%s", zero, b)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if out, ok := shared.slices[key].([]T); ok {
		return out
	}
	if len(shared.slices) >= maxInterned {
		clear(shared.slices)
	}
	shared.slices[key] = v
	return v
}

// boolRef returns a shared pointer to b's value; nil stays nil.
func boolRef(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return shared.yes
	}
	return shared.no
}

// trimMeta keeps what the watcher reads of every object's metadata:
// identity, generation, creation and deletion state, owner references
// (with their strings shared) and finalizers. Labels, annotations and
// managedFields go; a trim function that needs a label or annotation
// copies it (internLabels, withRevision).
func trimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:                       m.Name,
		Namespace:                  intern(m.Namespace),
		UID:                        m.UID,
		ResourceVersion:            m.ResourceVersion,
		Generation:                 m.Generation,
		CreationTimestamp:          m.CreationTimestamp,
		DeletionTimestamp:          m.DeletionTimestamp,
		DeletionGracePeriodSeconds: m.DeletionGracePeriodSeconds,
		OwnerReferences:            trimOwnerRefs(m.OwnerReferences),
		Finalizers:                 internAll(m.Finalizers),
	}
}

// trimOwnerRefs copies owner references with shared strings: the pods
// of a ReplicaSet all name it. blockOwnerDeletion is not read.
func trimOwnerRefs(in []metav1.OwnerReference) []metav1.OwnerReference {
	if len(in) == 0 {
		return nil
	}
	out := make([]metav1.OwnerReference, len(in))
	for i, r := range in {
		out[i] = metav1.OwnerReference{APIVersion: intern(r.APIVersion), Kind: intern(r.Kind), Name: r.Name, UID: r.UID,
			Controller: boolRef(r.Controller)}
	}
	return internSlice(out)
}

// internAll returns in with each string shared (a new slice; nil for an
// empty one).
func internAll(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = intern(s)
	}
	return out
}

// keptPodConditions are the pod conditions the classifiers read: Ready
// (not ready, Services' ready pods) always, PodScheduled when it is not
// True (unschedulable). A healthy pod keeps one condition instead of four.
func keptPodCondition(c corev1.PodCondition) bool {
	switch c.Type {
	case corev1.PodReady:
		return true
	case corev1.PodScheduled:
		return c.Status != corev1.ConditionTrue
	}
	return false
}

// trimPodConditions keeps the conditions keptPodCondition names, without
// their probe times, with shared strings.
func trimPodConditions(in []corev1.PodCondition) []corev1.PodCondition {
	n := 0
	for _, c := range in {
		if keptPodCondition(c) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]corev1.PodCondition, 0, n)
	for _, c := range in {
		if keptPodCondition(c) {
			out = append(out, corev1.PodCondition{Type: corev1.PodConditionType(intern(string(c.Type))),
				Status: corev1.ConditionStatus(intern(string(c.Status))), Reason: intern(c.Reason), Message: intern(c.Message),
				LastTransitionTime: c.LastTransitionTime})
		}
	}
	return out
}

// trimContainerState keeps a container state's reason, message, exit
// code and times (no container id, no signal).
func trimContainerState(s corev1.ContainerState) corev1.ContainerState {
	var out corev1.ContainerState
	if w := s.Waiting; w != nil {
		out.Waiting = &corev1.ContainerStateWaiting{Reason: intern(w.Reason), Message: intern(w.Message)}
	}
	if r := s.Running; r != nil {
		out.Running = &corev1.ContainerStateRunning{StartedAt: r.StartedAt}
	}
	if t := s.Terminated; t != nil {
		out.Terminated = &corev1.ContainerStateTerminated{ExitCode: t.ExitCode, Reason: intern(t.Reason), Message: t.Message,
			StartedAt: t.StartedAt, FinishedAt: t.FinishedAt}
	}
	return out
}

// releaseSyncGarbage collects once the caches are synced and returns the
// freed memory to the operating system: the initial lists decode every
// object whole before the transforms trim it, and without this the
// garbage of that burst sets the heap goal (twice the heap live at the
// last collection) and the resident size for as long as the watcher runs
// quietly. One collection, at start-up only.
func releaseSyncGarbage() { debug.FreeOSMemory() }
