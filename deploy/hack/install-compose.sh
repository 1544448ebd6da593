#!/usr/bin/env bash
# install-compose.sh: install the pinned Docker Compose into
# bin/docker-compose-<version> (idempotent), link it as the docker CLI plugin
# bin/cli-plugins/docker-compose, and print the binary's path. hack/docker.sh
# points the docker CLI at bin/cli-plugins (DOCKER_CONFIG), so that
# `docker compose` is this one.
#
# Compose is built from its published Go module through the Go module proxy,
# as deploy/hack/install-helm.sh builds Helm: no release archive can be
# downloaded here. `go install module@version` refuses it (its go.mod has
# exclude directives), so the module is downloaded and built in place with its
# own go.mod (GOWORK=off). v5.6.0 is the newest tag that builds with Go 1.26.
set -euo pipefail
COMPOSE_VERSION="${COMPOSE_VERSION:-v5.6.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/bin"
target="$bin/docker-compose-$COMPOSE_VERSION"
link() {
	mkdir -p "$bin/cli-plugins"
	ln -sfn "../docker-compose-$COMPOSE_VERSION" "$bin/cli-plugins/docker-compose"
}
if [[ -x "$target" ]]; then
	link
	echo "$target"
	exit 0
fi
mkdir -p "$bin"
echo "installing docker compose $COMPOSE_VERSION into bin/ (once, ~2-4 min on 2 cores)" >&2
mod="github.com/docker/compose/v5@$COMPOSE_VERSION"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
dir="$(cd "$tmp" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [[ -z "$dir" || ! -d "$dir" ]]; then
	echo "install-compose.sh: go mod download $mod did not give a directory" >&2
	exit 1
fi
(cd "$dir" && CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod go build -trimpath \
	-ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$COMPOSE_VERSION" \
	-o "$target.tmp" ./cmd)
mv "$target.tmp" "$target"
link
echo "$target"
