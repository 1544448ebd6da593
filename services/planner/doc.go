// Package planner is kaar's second stage: it turns incidents into
// remediation plans that a person (or a policy) can approve.
//
// Input comes two ways: a durable JetStream consumer on the ISSUES stream
// (incident detected, changed, resolved), and the request/reply endpoint
// kaar.<cluster>.svc.planner.plan, which asks the watcher for the incident
// of one workload (svc.watcher.analyze) instead of classifying pods again.
//
// For each incident the planner reads the cluster (never Secrets) to gather
// bounded, cited evidence: the previous logs of the crashed container
// (credential-looking lines redacted), the events of the pod and its owner,
// the last termination, requests and limits, the rollout history and the
// owner chain (evidence.go). It then walks remediation.strategies for the
// issue type in configuration order (strategy.go): diagnostic steps are
// kept, and the first mutating strategy that applies and passes a
// server-side dry run is chosen. A custom strategy
// (remediation.custom_strategies) is a named sequence of catalogue steps,
// proposed whole or not at all. Mutating steps (actions*.go, one file per
// action family; testdata/plans holds a plan of each) are JSON
// patches against the controlling owner whose first operation tests
// /metadata/generation, so a step cannot apply to a spec it was not planned
// for; deletes carry UID preconditions and only ever target pods a
// controller recreates. Tolerations and node selectors are only proposed
// when a Ready node would then accept the pods. Protected namespaces, and
// with policy.gitops_managed=diagnostic_only workloads managed by Argo CD,
// Flux or Helm, get diagnostic steps only; otherwise a managed workload's
// plan says that the lasting change belongs in Git or the chart.
//
// Plans are sealed (digest), stored in the kaar_plans bucket with a per-key
// TTL equal to the approval window, and announced on PLAN_EVENTS and AUDIT
// (store.go). A redelivered incident that yields an equivalent plan is a
// no-op; a different plan supersedes the incident's proposed one; a
// resolved incident supersedes it without a successor. Replicas share the
// durable consumer; after creating a plan each re-lists the incident's
// proposed plans and supersedes all but the newest, so they converge on
// one plan per incident. A KV watch
// publishes plan-expired when an unclaimed plan's TTL runs out (expiry.go).
//
// The planner only reads the cluster. Server-side dry runs still need the
// patch and delete verbs in RBAC (the API server authorizes a dry run like
// the real request); deny non-dry-run writes to the planner's identity with
// an admission policy.
package planner
