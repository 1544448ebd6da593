// Package executor is kaar's only writer to the cluster. It consumes the
// approval decisions of the APPROVALS work queue (one durable consumer per
// cluster, explicit acks) and, for an approval that names an unexpired
// plan and its exact digest, executes that plan at most once:
//
//   - catalogue (catalogue.go): every step is checked against the action
//     catalogue on the executor's own reading, never the plan's: it acts
//     on the plan's target (or on pods listed by uid, at most
//     remediation.max_pods), outside protected namespaces, with a JSON
//     patch whose first operation tests the planned generation and whose
//     writes stay on the paths of its action (the undo patch too); risk
//     comes from the action, not from the plan. Anything else is refused
//     (invalid_step) before the claim, and checks that need the cluster
//     (control.go: pods the target controls, a rollback to a template it
//     ran) run after the claim, before the first step; a Service step
//     (catalogue_service.go) is guarded by the Service's resourceVersion
//     (it has no generation), tests the selector or targetPort it
//     replaces, and writes only that field, with the value its params
//     name;
//   - claim: compare-and-set of the plan in kaar_plans from proposed to
//     executing (the update also clears the key's TTL, so a claimed plan
//     outlives its approval window); a duplicate delivery of the claiming
//     decision is a no-op and any other decision is refused;
//   - stale check: the target's generation (a pod's or a Service's
//     resourceVersion) and
//     UID must still be what the plan was made from, otherwise the plan is
//     refused as stale and the planner is asked for a new one;
//   - steps: typed client-go patches (JSON patches guarded by a test of
//     /metadata/generation, moved forward after each step that changes the
//     generation) and pod deletions with a UID precondition, retried with
//     backoff on transient errors; non-mutating steps are only recorded;
//   - verification: the workload is watched until it is healthy (pure
//     functions in health.go; a Service in health_service.go: a ready
//     endpoint and every targetPort declared by a selected pod) or
//     remediation.verify_timeout passes.
//
// Every refusal, claim, step and verdict goes to the audit stream, and the
// execution record in kaar_executions (key = plan id) follows the
// execution as it goes. The kaar.<cluster>.svc.executor.status endpoint
// answers from the plans and executions buckets.
//
// Files follow the pipeline: consume.go (messages), claim.go (checks,
// claim, rejection), catalogue.go and control.go (what a step may do),
// execute.go, steps.go, verify.go and health.go,
// record.go (audit and execution records), replan.go, status.go.
package executor
