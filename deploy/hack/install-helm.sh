#!/usr/bin/env bash
# install-helm.sh: install the pinned Helm release into bin/helm-<version>
# (idempotent) and print its path. Helm is built from its published Go module
# through the Go module proxy: this machine kind (and CI) cannot download
# release archives, and `go install` needs nothing but Go.
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
# The Kubernetes version helm's client-go is built from (v0.37 for helm
# v3.22): helm's own Makefile stamps it, and `helm template` reports it as
# .Capabilities.KubeVersion (the default is an old 1.20 otherwise).
K8S_MAJOR=1 K8S_MINOR=37
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/bin"
target="$bin/helm-$HELM_VERSION"
if [[ -x "$target" ]]; then
	echo "$target"
	exit 0
fi
mkdir -p "$bin"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "installing helm $HELM_VERSION into bin/ (once, ~2-4 min on 2 cores)" >&2
# GOWORK=off and GOFLAGS=-mod=mod: build helm with its own go.mod, never the
# project's workspace.
(cd "$tmp" && CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod GOBIN="$tmp" \
	go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$K8S_MAJOR -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$K8S_MINOR \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$K8S_MAJOR -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$K8S_MINOR" \
	"helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
mv "$tmp/helm" "$target"
echo "$target"
