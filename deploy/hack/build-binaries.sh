#!/usr/bin/env bash
# build-binaries.sh OUTDIR [VERSION]: build kaar and the four service
# binaries as static executables (CGO_ENABLED=0) into OUTDIR. The Dockerfile
# runs this script, and deploy/test runs the same script on the host, so the
# image's build is tested without Docker.
#
# Each module is built on its own (GOWORK=off): its go.mod replace
# directives point at the local modules it needs, and its go.sum is the one
# that is checked.
set -euo pipefail
out="${1:?usage: build-binaries.sh OUTDIR [VERSION]}"
version="${2:-dev}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
export CGO_ENABLED=0 GOWORK=off
build() { # module dir, package, binary name, extra ldflags
	echo "go build $3" >&2
	(cd "$root/$1" && go build -trimpath -ldflags "-s -w $4" -o "$out/$3" "$2")
}
build cmd/kaar . kaar "-X github.com/kaar-dev/kaar/cmd/kaar/internal/cli.Version=$version"
for s in watcher planner executor mcpgateway; do
	build "services/$s" "./cmd/kaar-$s" "kaar-$s" ""
done
