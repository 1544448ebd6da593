package events

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"time"
)

// ObjectRef points at a Kubernetes object. Namespace is empty for
// cluster-scoped objects.
type ObjectRef struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	UID        string `json:"uid,omitempty"`
	APIVersion string `json:"api_version,omitempty"`
}

// Validate requires Kind and Name.
func (r ObjectRef) Validate() error {
	if r.Kind == "" {
		return required("kind")
	}
	if r.Name == "" {
		return required("name")
	}
	return nil
}

// IsZero reports an empty reference.
func (r ObjectRef) IsZero() bool { return r == ObjectRef{} }

// String is "Kind/namespace/name" (or "Kind/name" when cluster-scoped).
func (r ObjectRef) String() string {
	if r.Namespace == "" {
		return r.Kind + "/" + r.Name
	}
	return r.Kind + "/" + r.Namespace + "/" + r.Name
}

// ClusterScopeNamespace is the namespace of incidents (and plans) about
// cluster-scoped objects such as Nodes, whose Owner has no namespace:
// subjects, incident ids and plans need one. A Kubernetes namespace is a
// DNS label and cannot contain '_', so it never names a real one.
const ClusterScopeNamespace = "_cluster"

// OwnerKinds are the kinds an incident's Owner has, as Kubernetes spells
// them: the workloads (a bare Pod, a ReplicaSet without Deployment) and
// the other objects a person fixes (a Service, an Ingress, a claim no pod
// uses, a Node in ClusterScopeNamespace, an HPA, and the objects
// warnings are reported on: a ResourceQuota, a LimitRange, a
// PodDisruptionBudget, a cert-manager Certificate). A plan request names
// one of them (a Pod or Job is resolved to its top owner).
func OwnerKinds() []string {
	return []string{"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod",
		"Service", "Ingress", "PersistentVolumeClaim", "Node", "HorizontalPodAutoscaler",
		"ResourceQuota", "LimitRange", "PodDisruptionBudget", "Certificate"}
}

// MaxIncidentPods bounds Incident.Pods; PodCount carries the full count.
const MaxIncidentPods = 10

// IncidentIDLen is the length of an incident id (hex characters).
const IncidentIDLen = 16

var (
	incidentIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)
	reasonRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9_]{0,62}$`)
)

// Incident is one failing workload: every failing pod of one controlling
// owner, container and issue type is one incident, whose identity is
// IncidentID(Cluster, Namespace, Owner.Kind, Owner.Name, Container, Type).
type Incident struct {
	ID        string `json:"id"`
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	// Owner is the top controlling owner (a Deployment, not its ReplicaSet);
	// the pod itself for a bare pod.
	Owner ObjectRef `json:"owner"`
	// OwnerChain is the controller chain from the pod's direct owner up to
	// Owner (Pod -> ReplicaSet -> Deployment gives [ReplicaSet, Deployment]).
	OwnerChain []ObjectRef `json:"owner_chain,omitempty"`
	// Container is the failing container; empty for pod-level issues
	// (Pending, Evicted, StuckTerminating).
	Container string    `json:"container,omitempty"`
	Type      IssueType `json:"type"`
	// Reason is the cause class within the type, lower snake_case, e.g.
	// "exit_code_1", "image_not_found", "oom_killed", "insufficient_cpu",
	// "evicted_memory".
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
	// ExitCode is the last termination's exit code when there was one.
	ExitCode     *int32 `json:"exit_code,omitempty"`
	RestartCount int32  `json:"restart_count,omitempty"`
	// Pods names the first MaxIncidentPods affected pods; PodCount counts
	// them all.
	Pods      []string  `json:"pods,omitempty"`
	PodCount  int       `json:"pod_count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Count is how many times the issue was observed.
	Count    int64    `json:"count"`
	Severity Severity `json:"severity"`
	// Protected is true when the namespace or workload is protected by
	// policy: the incident is reported, but no mutating plan may run.
	Protected bool `json:"protected,omitempty"`
	// Warning is the evidence of a warning (Type of class warning only):
	// the numbers it rests on and, for a trend, the projection.
	Warning *WarningEvidence `json:"warning,omitempty"`
}

// IncidentKey is the human-readable identity of an incident:
// "<cluster>/<namespace>/<ownerKind>/<ownerName>/<container>/<type>".
func IncidentKey(cluster, namespace, ownerKind, ownerName, container string, t IssueType) string {
	return cluster + "/" + namespace + "/" + ownerKind + "/" + ownerName + "/" + container + "/" + string(t)
}

// IncidentID is the deterministic id of an incident: the first 8 bytes of
// SHA-256 over "kaar-incident-v1" and the six parts, each followed by a NUL
// byte, as 16 lower-case hex characters. Parts are used exactly as given
// (ownerKind as Kubernetes spells it, "Deployment"; container empty for
// pod-level issues). This function is frozen: changing it would split
// every open incident in two, so a new scheme needs a new prefix and a
// migration.
func IncidentID(cluster, namespace, ownerKind, ownerName, container string, t IssueType) string {
	h := sha256.New()
	for _, p := range []string{"kaar-incident-v1", cluster, namespace, ownerKind, ownerName, container, string(t)} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:IncidentIDLen/2])
}

func validateIncidentID(field, id string) error {
	if id == "" {
		return required(field)
	}
	if !incidentIDRE.MatchString(id) {
		return fieldErr(field, fmt.Sprintf("%q is not an incident id (16 lower-case hex characters)", id))
	}
	return nil
}

// Validate checks every required field, that ID is the IncidentID of the
// incident's identity, and the bounds.
func (in Incident) Validate() error {
	if err := validateIncidentID("id", in.ID); err != nil {
		return err
	}
	if err := validateCluster("cluster", in.Cluster); err != nil {
		return err
	}
	if err := ValidateToken("namespace", in.Namespace); err != nil {
		return err
	}
	if err := under("owner", in.Owner.Validate()); err != nil {
		return err
	}
	for i, o := range in.OwnerChain {
		if err := under(fmt.Sprintf("owner_chain[%d]", i), o.Validate()); err != nil {
			return err
		}
	}
	if err := in.Type.Validate(); err != nil {
		return err
	}
	if want := IncidentID(in.Cluster, in.Namespace, in.Owner.Kind, in.Owner.Name, in.Container, in.Type); in.ID != want {
		return fieldErr("id", fmt.Sprintf("%q is not the IncidentID of this incident (want %q)", in.ID, want))
	}
	if in.Reason == "" {
		return required("reason")
	}
	if !reasonRE.MatchString(in.Reason) {
		return fieldErr("reason", fmt.Sprintf("%q must be lower snake_case (%s)", in.Reason, reasonRE.String()))
	}
	return firstErr(
		validateNonNegative("restart_count", in.RestartCount),
		validateMaxLen("pods", in.Pods, MaxIncidentPods),
		validateNonNegative("pod_count", in.PodCount),
		podCountCheck(in),
		validateTime("first_seen", in.FirstSeen),
		validateTime("last_seen", in.LastSeen),
		validateNotBefore("last_seen", in.LastSeen, "first_seen", in.FirstSeen),
		validateNonNegative("count", in.Count),
		in.Severity.Validate(),
		validateWarningEvidence(in),
	)
}

func podCountCheck(in Incident) error {
	if in.PodCount < len(in.Pods) {
		return fieldErr("pod_count", fmt.Sprintf("%d is less than the %d pods listed", in.PodCount, len(in.Pods)))
	}
	return nil
}

// Transition is what happened to an incident.
type Transition string

// Incident transitions. An incident is announced when detected, again only
// when it changes (pod count, reason, severity, ...), and once when it
// resolves.
const (
	TransitionDetected Transition = "detected"
	TransitionChanged  Transition = "changed"
	TransitionResolved Transition = "resolved"
)

// Transitions lists every Transition.
func Transitions() []Transition {
	return []Transition{TransitionDetected, TransitionChanged, TransitionResolved}
}

// Validate reports an unknown transition (field "transition").
func (t Transition) Validate() error { return validateEnum("transition", t, Transitions()) }

// EventType is the envelope type of an IncidentEvent with this transition
// ("dev.kaar.incident.detected").
func (t Transition) EventType() string { return typePrefix + "incident." + string(t) }

// IncidentEvent is published on IssueSubject for every transition of an
// incident, with Nats-Msg-Id IncidentMsgID(Incident.ID, Observation).
type IncidentEvent struct {
	Transition Transition `json:"transition"`
	Incident   Incident   `json:"incident"`
	ObservedAt time.Time  `json:"observed_at"`
	// Observation increases by one with every announcement of the incident
	// (starting at 1), and survives watcher restarts through the
	// kaar_incidents bucket.
	Observation int64 `json:"observation"`
}

// Validate checks the transition, the incident, the time and that
// Observation is at least 1.
func (e IncidentEvent) Validate() error {
	if err := e.Transition.Validate(); err != nil {
		return err
	}
	if err := under("incident", e.Incident.Validate()); err != nil {
		return err
	}
	if err := validateTime("observed_at", e.ObservedAt); err != nil {
		return err
	}
	if e.Observation < 1 {
		return fieldErr("observation", "must be at least 1")
	}
	return nil
}
