// Package deploytest holds kaar's packaging tests: the Dockerfile's build,
// docker-compose.yaml, the Helm chart (rendering, server-side dry runs and
// RBAC against the sandbox's real kube-apiserver), the systemd unit and the
// NATS permissions. It has no code of its own besides the tests.
package deploytest
