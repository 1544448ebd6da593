#!/usr/bin/env bash
# compose.sh: the compose demo (docker-compose.yaml) as `make compose-up` and
# `make compose-down` run it, and as deploy/test's end-to-end test runs it.
#
#   hack/compose.sh up     Docker (hack/docker.sh start: installs Docker
#                          Engine and Compose when absent, starts dockerd if
#                          none runs), the images (deploy/hack/build-images.sh),
#                          then `docker compose up --wait` (every container
#                          healthy) and the MCP endpoint and token
#   hack/compose.sh down   `docker compose down -v`, then hack/docker.sh stop
#                          (the daemon it started, if no container is left)
#
# COMPOSE_PROJECT_NAME, KAAR_MCP_PORT, KAAR_WEBHOOK_PORT and KAAR_CLUSTER_PORT
# choose the project and the host ports (default kaar, 8000, 8081, 6443).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
t0=$(date +%s)
say() { echo "== compose: $* ($(($(date +%s) - t0))s)" >&2; }
eval "$(hack/docker.sh start)"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-kaar}"
compose() { docker compose -f "$root/docker-compose.yaml" "$@"; }

up() {
	say "building the images (FROM scratch, static Go binaries, no registry)"
	deploy/hack/build-images.sh
	say "starting $COMPOSE_PROJECT_NAME: NATS, the demo cluster, provision, watcher, planner, executor, mcpgateway, notifier"
	# --wait: until every service is healthy (the cluster once the demo
	# shop is installed) and provision has completed.
	if ! compose up -d --wait --wait-timeout "${KAAR_COMPOSE_WAIT:-900}" >&2; then
		compose ps -a >&2 || true
		compose logs --tail 40 >&2 || true
		say "docker compose up failed"
		exit 1
	fi
	compose ps >&2
	say "up"
	cat <<EOF

The compose demo runs (project $COMPOSE_PROJECT_NAME).

  MCP endpoint (streamable HTTP):  http://127.0.0.1:${KAAR_MCP_PORT:-8000}/mcp
  REST:                            http://127.0.0.1:${KAAR_MCP_PORT:-8000}/mcp/v1/tools
  Token (role approver, a person): kaar-demo-approver-token
    curl -H "Authorization: Bearer kaar-demo-approver-token" http://127.0.0.1:${KAAR_MCP_PORT:-8000}/mcp/v1/tools
  Other demo tokens: deploy/compose/demo-secrets/mcp-tokens.yaml (admin, assistant, read)

  Docker:  eval "\$(hack/docker.sh start)"; docker compose ps
  kubectl: docker compose cp cluster:/kube/admin/kubeconfig-host /tmp/kaar-demo.kubeconfig
           kubectl --kubeconfig /tmp/kaar-demo.kubeconfig get pods -n shop
  Stop:    make compose-down
EOF
}

down() {
	compose down -v --remove-orphans >&2
	hack/docker.sh stop
	say "down"
}

case "${1:-}" in
up) up ;;
down) down ;;
*)
	echo "usage: hack/compose.sh up|down" >&2
	exit 2
	;;
esac
