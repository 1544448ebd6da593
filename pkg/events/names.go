package events

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Subject layout. Every subject starts with SubjectRoot and the cluster
// name, so one NATS deployment can serve several clusters and a NATS user
// can be limited to its cluster's subjects.
//
//	kaar.<cluster>.issue.<namespace>.<type>   IncidentEvent     stream ISSUES
//	kaar.<cluster>.plan.<event>               Plan              stream PLAN_EVENTS
//	kaar.<cluster>.approval.<plan>            Decision          stream APPROVALS (work queue)
//	kaar.<cluster>.audit.<kind>               AuditRecord       stream AUDIT
//	kaar.<cluster>.svc.<service>.<verb>       request/reply, no stream
const (
	// SubjectRoot is the first token of every kaar subject.
	SubjectRoot = "kaar"

	// IssueSubjectsAll matches every issue subject of every cluster.
	IssueSubjectsAll = "kaar.*.issue.>"
	// PlanEventSubjectsAll matches every plan lifecycle subject.
	PlanEventSubjectsAll = "kaar.*.plan.>"
	// ApprovalSubjectsAll matches every approval subject.
	ApprovalSubjectsAll = "kaar.*.approval.>"
	// AuditSubjectsAll matches every audit subject.
	AuditSubjectsAll = "kaar.*.audit.>"
	// ServiceSubjectsAll matches every service endpoint subject.
	ServiceSubjectsAll = "kaar.*.svc.>"
)

// JetStream streams. Each captures the matching *SubjectsAll wildcard.
const (
	// StreamIssues holds incident transitions (limits retention, bounded age).
	StreamIssues = "ISSUES"
	// StreamPlanEvents holds plan lifecycle notifications (limits retention).
	StreamPlanEvents = "PLAN_EVENTS"
	// StreamApprovals holds decisions until the executor acks them
	// (work-queue retention: each decision is consumed once).
	StreamApprovals = "APPROVALS"
	// StreamAudit is the audit trail (limits retention, long age, file
	// storage).
	StreamAudit = "AUDIT"
)

// JetStream key-value buckets.
const (
	// BucketPlans holds one key per plan (key = plan id, value = Plan JSON).
	// A proposed plan is created with a per-key TTL equal to its approval
	// window; the executor's claim is a CAS update, which clears the TTL.
	BucketPlans = "kaar_plans"
	// BucketIncidents holds the watcher's announced-incident state (key =
	// IncidentStateKey), so a restarted watcher does not announce again.
	// No TTL.
	BucketIncidents = "kaar_incidents"
	// BucketExecutions holds execution records and markers (key = plan id).
	// No TTL.
	BucketExecutions = "kaar_executions"
	// BucketControl holds operator switches (key = PauseKey: the kill
	// switch of a cluster's remediation). No TTL.
	BucketControl = "kaar_control"
	// BucketLeases holds the leases that make one replica of a singleton
	// service active (key = LeaseKey: "watcher.<cluster>",
	// "notifier.<cluster>"). No TTL: a lease is taken over when it stops
	// changing (pkg/lease).
	BucketLeases = "kaar_leases"
	// BucketUsage holds the watcher's usage history for the trend
	// warnings (memory samples, restart and ready replica dip times), one
	// key per workload container: "<cluster>.<namespace>.<kind>.<container>.<name>"
	// (container "_" for the workload's own series). TTL: the usage
	// retention, so the keys of workloads that are gone expire.
	BucketUsage = "kaar_usage"
)

// Service names and verbs of the request/reply endpoints
// (kaar.<cluster>.svc.<service>.<verb>).
const (
	ServiceWatcher    = "watcher"
	ServicePlanner    = "planner"
	ServiceExecutor   = "executor"
	ServiceMCPGateway = "mcpgateway"

	// VerbAnalyze (watcher): AnalyzeRequest -> AnalyzeResponse.
	VerbAnalyze = "analyze"
	// VerbPlan (planner): PlanRequest -> PlanResponse.
	VerbPlan = "plan"
	// VerbStatus (executor): ExecutionStatusRequest -> ExecutionStatusResponse.
	VerbStatus = "status"
)

// CloudEvents sources of each service.
const (
	SourceWatcher    = "/kaar/watcher"
	SourcePlanner    = "/kaar/planner"
	SourceExecutor   = "/kaar/executor"
	SourceMCPGateway = "/kaar/mcpgateway"
	SourceCLI        = "/kaar/cli"
)

// MaxClusterNameLen is the longest accepted cluster name.
const MaxClusterNameLen = 63

var clusterRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$`)

// ValidateClusterName checks that name is usable as a NATS subject token,
// a KV key part and a consumer name part:
// ^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$, at most 63 characters.
func ValidateClusterName(name string) error { return validateCluster("cluster", name) }

func validateCluster(field, name string) error {
	if name == "" {
		return required(field)
	}
	if len(name) > MaxClusterNameLen {
		return fieldErr(field, fmt.Sprintf("%q is longer than %d characters", name, MaxClusterNameLen))
	}
	if !clusterRE.MatchString(name) {
		return fieldErr(field, fmt.Sprintf("%q must match %s", name, clusterRE.String()))
	}
	return nil
}

// ValidateToken checks that s can be one NATS subject token: not empty, at
// most 255 bytes, and free of '.', '*', '>' and whitespace. field names the
// value in the error.
func ValidateToken(field, s string) error {
	if s == "" {
		return required(field)
	}
	if len(s) > 255 {
		return fieldErr(field, "longer than 255 bytes")
	}
	if i := strings.IndexFunc(s, func(r rune) bool {
		return r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f
	}); i >= 0 {
		return fieldErr(field, fmt.Sprintf("%q is not a valid subject token (no '.', '*', '>', spaces or control characters)", s))
	}
	return nil
}

func subject(tokens ...string) string {
	return SubjectRoot + "." + strings.Join(tokens, ".")
}

// IssueSubject is kaar.<cluster>.issue.<namespace>.<type>, where incident
// transitions of that namespace and type are published.
func IssueSubject(cluster, namespace string, t IssueType) (string, error) {
	if err := firstErr(ValidateClusterName(cluster), ValidateToken("namespace", namespace), t.Validate()); err != nil {
		return "", err
	}
	return subject(cluster, "issue", namespace, string(t)), nil
}

// IssueFilter is kaar.<cluster>.issue.>, every issue of one cluster (the
// planner's consumer filter).
func IssueFilter(cluster string) (string, error) {
	if err := ValidateClusterName(cluster); err != nil {
		return "", err
	}
	return subject(cluster, "issue", ">"), nil
}

// PlanEvent names a plan lifecycle notification on
// kaar.<cluster>.plan.<event>.
type PlanEvent string

// Plan lifecycle notifications. Their envelope types are
// "dev.kaar.plan.<event>" and their data is the Plan.
const (
	PlanEventProposed   PlanEvent = "proposed"
	PlanEventSuperseded PlanEvent = "superseded"
	PlanEventExpired    PlanEvent = "expired"
)

// PlanEvents lists every PlanEvent.
func PlanEvents() []PlanEvent {
	return []PlanEvent{PlanEventProposed, PlanEventSuperseded, PlanEventExpired}
}

// Validate reports an unknown plan event.
func (e PlanEvent) Validate() error {
	return validateEnum("event", e, PlanEvents())
}

// PlanEventSubject is kaar.<cluster>.plan.<event>.
func PlanEventSubject(cluster string, event PlanEvent) (string, error) {
	if err := firstErr(ValidateClusterName(cluster), event.Validate()); err != nil {
		return "", err
	}
	return subject(cluster, "plan", string(event)), nil
}

// PlanEventFilter is kaar.<cluster>.plan.>.
func PlanEventFilter(cluster string) (string, error) {
	if err := ValidateClusterName(cluster); err != nil {
		return "", err
	}
	return subject(cluster, "plan", ">"), nil
}

// ApprovalSubject is kaar.<cluster>.approval.<plan>, where Decisions about
// one plan are published.
func ApprovalSubject(cluster, planID string) (string, error) {
	if err := firstErr(ValidateClusterName(cluster), validateUUID("plan_id", planID)); err != nil {
		return "", err
	}
	return subject(cluster, "approval", planID), nil
}

// ApprovalFilter is kaar.<cluster>.approval.>, every decision of one
// cluster (the executor's consumer filter).
func ApprovalFilter(cluster string) (string, error) {
	if err := ValidateClusterName(cluster); err != nil {
		return "", err
	}
	return subject(cluster, "approval", ">"), nil
}

// AuditSubject is kaar.<cluster>.audit.<kind>.
func AuditSubject(cluster string, kind AuditKind) (string, error) {
	if err := firstErr(ValidateClusterName(cluster), kind.Validate()); err != nil {
		return "", err
	}
	return subject(cluster, "audit", string(kind)), nil
}

// AuditFilter is kaar.<cluster>.audit.>.
func AuditFilter(cluster string) (string, error) {
	if err := ValidateClusterName(cluster); err != nil {
		return "", err
	}
	return subject(cluster, "audit", ">"), nil
}

// ServiceSubject is kaar.<cluster>.svc.<service>.<verb>, a request/reply
// endpoint.
func ServiceSubject(cluster, service, verb string) (string, error) {
	if err := firstErr(ValidateClusterName(cluster), ValidateToken("service", service), ValidateToken("verb", verb)); err != nil {
		return "", err
	}
	return subject(cluster, "svc", service, verb), nil
}

// PlannerConsumer is the planner's durable consumer name on ISSUES for one
// cluster ("planner-<cluster>"); its filter is IssueFilter(cluster).
func PlannerConsumer(cluster string) (string, error) {
	if err := ValidateClusterName(cluster); err != nil {
		return "", err
	}
	return "planner-" + cluster, nil
}

// ExecutorConsumer is the executor's durable consumer name on APPROVALS for
// one cluster ("executor-<cluster>"); its filter is ApprovalFilter(cluster).
// APPROVALS is a work queue, so there is exactly one such consumer per
// cluster and every executor instance of that cluster binds to it.
func ExecutorConsumer(cluster string) (string, error) {
	if err := ValidateClusterName(cluster); err != nil {
		return "", err
	}
	return "executor-" + cluster, nil
}

// AutoApproveConsumer is the durable consumer name of the executor's
// auto-approver on PLAN_EVENTS (proposed plans): "autoapprove-<cluster>".
func AutoApproveConsumer(cluster string) (string, error) {
	if err := ValidateClusterName(cluster); err != nil {
		return "", err
	}
	return "autoapprove-" + cluster, nil
}

// PlanKey is the kaar_plans key of a plan: its id.
func PlanKey(planID string) (string, error) {
	if err := validateUUID("plan_id", planID); err != nil {
		return "", err
	}
	return planID, nil
}

// ExecutionKey is the kaar_executions key of a plan's execution record: the
// plan id.
func ExecutionKey(planID string) (string, error) { return PlanKey(planID) }

// IncidentStateKey is the kaar_incidents key of an incident:
// <cluster>.<incident id>.
func IncidentStateKey(cluster, incidentID string) (string, error) {
	if err := firstErr(ValidateClusterName(cluster), validateIncidentID("incident_id", incidentID)); err != nil {
		return "", err
	}
	return cluster + "." + incidentID, nil
}

// IncidentMsgID is the Nats-Msg-Id of an incident transition:
// "incident-<id>-<observation>". A restarted watcher that republishes the
// same observation is deduplicated by the stream.
func IncidentMsgID(incidentID string, observation int64) string {
	return "incident-" + incidentID + "-" + strconv.FormatInt(observation, 10)
}

// DecisionMsgID is the Nats-Msg-Id of a decision:
// "decision-<plan>-<digest>-<decision>", so a repeated approval of the same
// plan and digest is one message.
func DecisionMsgID(planID, digest string, decision DecisionKind) string {
	return "decision-" + planID + "-" + strings.TrimPrefix(digest, DigestPrefix) + "-" + string(decision)
}

// PlanEventMsgID is the Nats-Msg-Id of a plan lifecycle notification:
// "plan-<plan>-<event>".
func PlanEventMsgID(planID string, event PlanEvent) string {
	return "plan-" + planID + "-" + string(event)
}

// AuditMsgID is the Nats-Msg-Id of an audit record: "audit-<record id>".
func AuditMsgID(recordID string) string { return "audit-" + recordID }

// LeaseKey is the key of a singleton service's lease for a cluster in
// BucketLeases: "<service>.<cluster>".
func LeaseKey(service, cluster string) string { return service + "." + cluster }
