// Package config is kaar's configuration: one YAML file that is a superset of
// the original server's config.yaml (server, kubernetes, remediation with
// auto_approve, max_pods and strategies), plus kaar's own keys (the NATS bus,
// the cluster name, the approval window, policy).
//
// Load parses the file strictly. The first unknown key stops it; otherwise
// Validate checks every section (one validate method each, next to its
// type) and reports every bad value, each naming its key by its full path
// (for example "server.port") and, where the set is closed, the allowed
// values. The bounds live here only: the services take a validated Config
// and do not check its values again. Issue types and risk levels are
// pkg/events' own lists. Environment variables override file
// values: KAAR_<PATH> with dots as underscores, for example KAAR_SERVER_PORT
// or KAAR_NATS_URL. The result is a typed struct, parsed once in main and
// passed down; nothing reads configuration from globals.
package config
