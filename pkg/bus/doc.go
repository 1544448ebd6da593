// Package bus is kaar's NATS JetStream plumbing: an embedded server for the
// all-in-one binary and the tests ([StartEmbedded]) that authenticates
// every client ([Credentials]: one nkey per [Role]), a client connection
// with production reconnect behaviour ([Connect]), the roles and their
// least-privilege permissions ([Role.Permissions], rendered for nats-server
// by [PermissionsConf]), the declaration of every stream, key-value bucket
// and durable consumer named in pkg/events, by the provisioner alone, with
// whole-configuration drift repair ([Provision]) and the services' check
// that it happened ([CheckBound]), and the two typed helpers every service
// shares: [Publish] (an envelope with a Nats-Msg-Id, reporting duplicates)
// and [PlanStore] (plans in the kaar_plans bucket with a per-key TTL,
// compare-and-set updates and expiry notifications). A leaf cluster's
// node runs its own JetStream and a central server accepts it
// (LeafNodeOptions, LeafRemoteOptions): the central streams source the
// leaf's (Config.Leaves, ResumeLeafSources), the leaf's permissions keep
// it to its cluster (LeafPermissions).
//
// Everything else (consuming, request/reply endpoints, the incidents and
// executions buckets) the services do with nats.go's jetstream and micro
// packages directly, using the names from pkg/events.
package bus
