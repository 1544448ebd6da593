package watcher

import (
	"cmp"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Evidence is what Classify knows of a pod besides its status.
type Evidence struct {
	// PullCauses is, per container name, the cause of the container's
	// last image pull failure as the kubelet reported it in a Warning
	// Failed event. A pod in ImagePullBackOff only says "Back-off pulling
	// image" and the event that named the cause may have expired (events
	// live an hour), so the watcher remembers it per pod.
	PullCauses map[string]PullCause
	// Mount is the kubelet's last report that it cannot mount one of the
	// pod's volumes (a Warning FailedMount event), nil for none.
	Mount *MountFailure
	// Probes are, per container name, the last failures of its probes
	// (the kubelet's Warning Unhealthy events; probe.go).
	Probes map[string]ContainerProbes
}

// PullCause is the cause of one image pull failure.
type PullCause struct {
	// Reason is the cause class: image_not_found, unauthorized,
	// registry_unavailable, rate_limited, or pull_failed when the message
	// says nothing Classify knows.
	Reason string
	// Image is the image the kubelet failed to pull (from the message),
	// so a cause is not applied to a container whose image has changed.
	Image string
	// Message is the kubelet's message, for people.
	Message string
	// At is the last time the kubelet reported it.
	At time.Time
}

// Kubernetes event fields the watcher reads.
const (
	eventReasonFailed       = "Failed"
	pullFailedMessagePrefix = "failed to pull image "
	// eventFieldSelector is the server-side filter of the events informer:
	// only kubelet failures of pods are worth caching.
	eventFieldSelector = "involvedObject.kind=Pod,type=Warning,reason=Failed"
)

// PullCauseOf reads one event: when it is the kubelet reporting that it
// failed to pull the image of a pod's container, it returns the container
// and the cause. Every other event gives ok false.
func PullCauseOf(ev *corev1.Event) (container string, c PullCause, ok bool) {
	if ev == nil || ev.InvolvedObject.Kind != "Pod" || ev.Type != corev1.EventTypeWarning || ev.Reason != eventReasonFailed {
		return "", PullCause{}, false
	}
	msg := strings.TrimSpace(ev.Message)
	if !strings.HasPrefix(strings.ToLower(msg), pullFailedMessagePrefix) {
		return "", PullCause{}, false // "Error: ErrImagePull", config errors, ...
	}
	container = containerOfFieldPath(ev.InvolvedObject.FieldPath)
	if container == "" {
		return "", PullCause{}, false
	}
	image := ""
	if rest := msg[len(pullFailedMessagePrefix):]; strings.HasPrefix(rest, `"`) {
		if end := strings.IndexByte(rest[1:], '"'); end >= 0 {
			image = rest[1 : 1+end]
		}
	}
	return container, PullCause{Reason: pullReason(reasonErrImagePull, msg), Image: image, Message: msg, At: eventTime(ev)}, true
}

// EvidenceFrom gathers the evidence about the pod with uid in events (any
// order; events about other objects are ignored): the latest pull failure
// cause of each container. An empty uid matches events of any pod.
func EvidenceFrom(uid types.UID, events []corev1.Event) Evidence {
	var ev Evidence
	for i := range events {
		e := &events[i]
		if uid != "" && e.InvolvedObject.UID != "" && e.InvolvedObject.UID != uid {
			continue
		}
		if c, cause, ok := PullCauseOf(e); ok {
			if ev.PullCauses == nil {
				ev.PullCauses = map[string]PullCause{}
			}
			mergeCause(ev.PullCauses, c, cause)
		}
		if mf, ok := MountFailureOf(e); ok {
			ev.Mount, _ = newerMount(ev.Mount, mf)
		}
		if c, f, ok := ProbeFailureOf(e); ok {
			ev.Probes, _ = mergeProbe(ev.Probes, c, f)
		}
	}
	return ev
}

// mergeCause keeps the latest cause per container (an older report never
// replaces a newer one); it reports whether m changed.
func mergeCause(m map[string]PullCause, container string, c PullCause) bool {
	if prev, ok := m[container]; ok && (c.At.Before(prev.At) || prev == c) {
		return false
	}
	m[container] = c
	return true
}

// containerOfFieldPath reads "spec.containers{web}" or
// "spec.initContainers{init}".
func containerOfFieldPath(p string) string {
	open, end := strings.IndexByte(p, '{'), strings.LastIndexByte(p, '}')
	if !strings.HasPrefix(p, "spec.") || open < 0 || end <= open+1 {
		return ""
	}
	return p[open+1 : end]
}

// eventTime is when an event was last reported: the newest timestamp the
// reporter maintains (series, then lastTimestamp for core/v1 reporters
// such as the kubelet, then eventTime), or when it was created.
func eventTime(ev *corev1.Event) time.Time {
	switch {
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		return ev.Series.LastObservedTime.Time
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp.Time
	}
	return ev.CreationTimestamp.Time
}

// pullMemory remembers the pull failure causes of every pod it has seen
// events for, so the cause outlives the events (and their aggregation
// into "Back-off pulling image"). Entries go when the pod is deleted; prune
// drops those of pods the cache no longer has (an event that arrived
// after its pod was deleted). Safe for concurrent use.
type pullMemory struct {
	mu   sync.Mutex
	pods map[types.UID]*podPulls
}

type podPulls struct {
	namespace, name string
	causes          map[string]PullCause
}

func newPullMemory() *pullMemory { return &pullMemory{pods: map[types.UID]*podPulls{}} }

// observe records ev when it is a pull failure; it returns the pod it is
// about and whether what is remembered changed.
func (m *pullMemory) observe(ev *corev1.Event) (namespace, name string, uid types.UID, changed bool) {
	container, cause, ok := PullCauseOf(ev)
	if !ok || ev.InvolvedObject.UID == "" {
		return "", "", "", false
	}
	ref := ev.InvolvedObject
	namespace = cmp.Or(ref.Namespace, ev.Namespace)
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pods[ref.UID]
	if p == nil {
		p = &podPulls{namespace: namespace, name: ref.Name, causes: map[string]PullCause{}}
		m.pods[ref.UID] = p
	}
	return namespace, ref.Name, ref.UID, mergeCause(p.causes, container, cause)
}

// evidence returns a copy of what is remembered about the pod uid.
func (m *pullMemory) evidence(uid types.UID) Evidence {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pods[uid]
	if p == nil {
		return Evidence{}
	}
	causes := make(map[string]PullCause, len(p.causes))
	for k, v := range p.causes {
		causes[k] = v
	}
	return Evidence{PullCauses: causes}
}

// forget drops what is remembered about the pod uid.
func (m *pullMemory) forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pods, uid)
}

// prune drops the pods for which exists is false and returns how many.
func (m *pullMemory) prune(exists func(namespace, name string, uid types.UID) bool) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for uid, p := range m.pods {
		if !exists(p.namespace, p.name, uid) {
			delete(m.pods, uid)
			n++
		}
	}
	return n
}

// size is the number of pods remembered.
func (m *pullMemory) size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pods)
}
