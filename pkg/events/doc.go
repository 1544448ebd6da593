// Package events is kaar's contract: the messages that flow between the
// watcher, the planner, the executor and the MCP gateway, and the names under
// which they flow.
//
// It holds, and only holds:
//
//   - the CloudEvents 1.0 compatible [Envelope] every bus message is wrapped
//     in ([New], [Decode], [DecodeData]);
//   - the payload types ([IncidentEvent], [Plan], [Decision], [AuditRecord],
//     [Execution], ...) with their JSON names frozen by golden files in
//     testdata/golden, and a Validate method on each;
//   - deterministic identities and digests ([IncidentID], [ComputeDigest]);
//   - every NATS subject, stream, KV bucket, consumer and message-id name
//     ([IssueSubject], [StreamIssues], [BucketPlans], [PlannerConsumer],
//     [IncidentMsgID], ...);
//   - request/reply bodies for the services' NATS endpoints and the
//     [ErrorReply] convention ([EncodeReply], [DecodeReply]).
//
// Like k8s.io/api, it has no logic beyond names, constructors, digests and
// validation, and depends on nothing but the standard library and
// github.com/google/uuid. Services depend on it and never on each other.
//
// # Validation
//
// Every validation failure is a *[ValidationError] that names the field at
// fault with its JSON path ("data.steps[0].target.name") and, for enums, the
// allowed values; it matches [ErrInvalid] with errors.Is. Validate methods
// report the first problem found, in field order.
//
// # Compatibility
//
// JSON field names never change within a schema version ([SchemaVersion]).
// Decoders ignore unknown fields so that a newer producer can add optional
// fields without breaking older consumers; a change that removes or
// re-means a field needs a new schema version.
package events
