#!/usr/bin/env bash
# build-images.sh: build the compose demo's three images without a registry.
#
#   ghcr.io/kaar-dev/kaar:dev               kaar and the five services
#   ghcr.io/kaar-dev/nats-server:dev        nats-server (the version of go.mod)
#   ghcr.io/kaar-dev/kaar-demo-cluster:dev  the sandbox control plane and the
#                                           demo shop (kaar-demo-cluster)
#
# Every image is FROM scratch: static binaries built here by the Go toolchain
# (CGO_ENABLED=0), CA certificates, /etc/passwd with the nonroot user 65532,
# nothing else. The Dockerfile at the root is the one recipe; this script
# stages each image's build context under .cache/images/<image> (rootfs/,
# owned/ and bin/, see the Dockerfile) and runs `docker compose build` for
# each image whose inputs changed (the kaar image by the provision service),
# with the daemon's layer cache. Docker's own build needs no network: nothing is
# pulled. The same script serves a machine that reaches registries.
#
# Cold, the sandbox's control-plane binaries are built first (pkg/sandbox,
# ~12 min on 2 cores, cached in ~/.cache/kaar); warm, the Go build cache and
# Docker's layer cache make this a few seconds of `go build` plus sending the
# contexts to the daemon.
#
# Needs DOCKER_HOST and DOCKER_CONFIG from `eval "$(hack/docker.sh start)"`
# for the build step; STAGE_ONLY=1 stages the contexts without Docker.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/.cache/images"
version="${VERSION:-dev}"
cd "$root"
export CGO_ENABLED=0 GOWORK=off
t0=$(date +%s)
step() { echo "== build-images: $* ($(($(date +%s) - t0))s)" >&2; }

# rootfs: what every image holds besides its binaries. owned: directories
# the nonroot user writes (its home; the cluster's mount points).
stage_base() {
	local dir="$1"
	mkdir -p "$dir/rootfs/etc/ssl/certs" "$dir/rootfs/tmp" "$dir/owned/home/nonroot" "$dir/bin"
	chmod 1777 "$dir/rootfs/tmp"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/rootfs/etc/passwd"
	printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/rootfs/etc/group"
	local ca
	for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
		if [[ -s "$ca" ]]; then
			cp "$ca" "$dir/rootfs/etc/ssl/certs/ca-certificates.crt"
			return
		fi
	done
	echo "build-images: no CA bundle on this machine (install ca-certificates)" >&2
	exit 1
}

gobuild() { go build -trimpath -ldflags "-s -w" "$@"; }

step "kaar image: go build kaar and the services"
stage_base "$out/kaar"
./deploy/hack/build-binaries.sh "$out/kaar/bin" "$version"
gobuild -o "$out/kaar/bin/" ./deploy/compose/cmd/kaar-httpcheck

step "nats-server image: go build nats-server $(go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)"
stage_base "$out/nats"
mkdir -p "$out/nats/owned/data"
gobuild -o "$out/nats/bin/nats-server" github.com/nats-io/nats-server/v2
gobuild -o "$out/nats/bin/" ./deploy/compose/cmd/kaar-httpcheck

step "demo cluster image: the sandbox's control-plane binaries (built once and cached; cold: ~12 min on 2 cores)"
stage_base "$out/cluster"
gobuild -o "$out/cluster/bin/" ./deploy/compose/cmd/kaar-demo-cluster ./deploy/compose/cmd/kaar-httpcheck
# kaar-demo-cluster itself finds (or builds) the binaries in the sandbox's
# cache ($KAAR_CACHE_DIR or ~/.cache/kaar), so the cache key they are filed
# under (it names the Go version that built it) is the one it looks up in
# the image (/opt/kaar).
cache="${KAAR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kaar}"
bins="$("$out/cluster/bin/kaar-demo-cluster" --ensure-binaries --cache-dir "$cache")"
key="$(basename "$bins")"
sandbox_bins="$out/cluster/rootfs/opt/kaar/sandbox/bin"
if [[ ! -f "$sandbox_bins/$key/manifest.json" ]]; then
	rm -rf "$sandbox_bins"
	mkdir -p "$sandbox_bins"
	# Hard links when the cache is on the same file system: no copy.
	cp -al "$bins" "$sandbox_bins/$key" 2>/dev/null || cp -a "$bins" "$sandbox_bins/$key"
fi
mkdir -p "$out/cluster/owned/var/lib/kaar" "$out/cluster/owned/kube/"{admin,watcher,planner,executor}

if [[ "${STAGE_ONLY:-}" == 1 ]]; then
	step "contexts staged in $out"
	exit 0
fi
# inputs: what an image is made of, as a short hash: the Dockerfile and
# every file of its context (the sandbox's binaries by their cache key,
# which names their content). An image whose label dev.kaar.inputs matches
# is up to date and not built again: the classic builder would otherwise
# send the whole context (the cluster's is ~700 MB) to the daemon to find
# every layer cached.
inputs() {
	{
		sha256sum Dockerfile
		(cd "$1" && find . -type f ! -path './rootfs/opt/kaar/sandbox/bin/*' -print0 | sort -z | xargs -0 sha256sum)
		(cd "$1" && find . -path './rootfs/opt/kaar/sandbox/bin/*' -prune -type d)
	} | sha256sum | cut -c1-16
}
for svc_ctx_image in provision:kaar:ghcr.io/kaar-dev/kaar:dev nats:nats:ghcr.io/kaar-dev/nats-server:dev \
	cluster:cluster:ghcr.io/kaar-dev/kaar-demo-cluster:dev; do
	IFS=: read -r svc ctx image tag <<<"$svc_ctx_image"
	image="$image:$tag"
	want="$(inputs "$out/$ctx")"
	have="$(docker image inspect -f '{{index .Config.Labels "dev.kaar.inputs"}}' "$image" 2>/dev/null || true)"
	if [[ "$want" == "$have" ]]; then
		step "$image is up to date (inputs $want)"
		continue
	fi
	step "docker compose build $svc: $image (inputs $want; FROM scratch, no registry)"
	# The classic builder redraws "Sending build context" with carriage
	# returns; only its last value is kept.
	docker compose -f "$root/docker-compose.yaml" build --build-arg "VERSION=$version" --build-arg "INPUTS=$want" "$svc" 2>&1 |
		tr '\r' '\n' | awk '/^Sending build context/ { last = $0; next } { if (last != "") print last; last = ""; print }' >&2
done
step "images built"
