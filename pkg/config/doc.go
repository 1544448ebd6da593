// Package config is kaar's configuration: one YAML file that is a superset of
// the original server's config.yaml (server, kubernetes, remediation with
// auto_approve, max_pods and strategies), plus kaar's own keys (the NATS bus,
// the cluster name, the approval window, policy).
//
// Load parses the file strictly: an unknown key or a bad value is an error
// that names the key by its full path (for example "server.port") and, where
// the set is closed, the allowed values. Environment variables override file
// values: KAAR_<PATH> with dots as underscores, for example KAAR_SERVER_PORT
// or KAAR_NATS_URL. The result is a typed struct, parsed once in main and
// passed down; nothing reads configuration from globals.
package config
