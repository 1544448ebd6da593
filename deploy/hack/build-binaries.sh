#!/usr/bin/env bash
# build-binaries.sh OUTDIR [VERSION]: build kaar and the five service
# binaries (kaar-watcher, kaar-planner, kaar-executor, kaar-mcpgateway,
# kaar-notifier) as static executables (CGO_ENABLED=0) into OUTDIR. The
# Dockerfile runs this script, and deploy/test runs the same script on the
# host, so the image's build is tested without Docker.
#
# GOWORK=off: the build uses the module's own go.mod and go.sum, exactly as
# `go install github.com/kaar-dev/kaar/cmd/kaar@version` does.
set -euo pipefail
out="${1:?usage: build-binaries.sh OUTDIR [VERSION]}"
version="${2:-dev}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
export CGO_ENABLED=0 GOWORK=off
cd "$root"
echo "go build kaar" >&2
go build -trimpath -ldflags "-s -w -X github.com/kaar-dev/kaar/cmd/kaar/internal/cli.Version=$version" -o "$out/kaar" ./cmd/kaar
# One go command for the five services: it compiles and links them in
# parallel (an up-to-date binary is not linked again).
pkgs=()
for s in watcher planner executor mcpgateway notifier; do
	pkgs+=("./services/$s/cmd/kaar-$s")
done
echo "go build kaar-watcher, kaar-planner, kaar-executor, kaar-mcpgateway, kaar-notifier" >&2
go build -trimpath -ldflags "-s -w" -o "$out/" "${pkgs[@]}"
