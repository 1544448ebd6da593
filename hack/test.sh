#!/usr/bin/env bash
# Runs every module's tests with -race. One sandbox control plane (real etcd,
# kube-apiserver, controller-manager, scheduler, kwok) is started for the
# whole run and shared by the packages that need a cluster, through
# KAAR_SANDBOX_KUBECONFIG; each test works in its own namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
state=$root/.cache/test-sandbox
modules=$(go work edit -json | sed -n 's/.*"DiskPath": "\.\/\(.*\)".*/\1/p')
start=$(date +%s)

echo "== building and starting the shared sandbox (first run builds the control plane: ~10 min on 2 cores; cached afterwards)"
(cd pkg/sandbox && go build -o "$root/bin/kaar-sandbox" ./cmd/kaar-sandbox)
"$root/bin/kaar-sandbox" down --state-dir "$state" >/dev/null 2>&1 || true
"$root/bin/kaar-sandbox" up --state-dir "$state"
trap '"$root/bin/kaar-sandbox" down --state-dir "$state" >/dev/null 2>&1 || true' EXIT
export KAAR_SANDBOX_KUBECONFIG
KAAR_SANDBOX_KUBECONFIG=$("$root/bin/kaar-sandbox" kubeconfig --state-dir "$state")

failed=()
for m in $modules; do
  echo "== go test -race $m"
  if ! (cd "$m" && go test -race -count=1 -timeout 20m ./...); then
    failed+=("$m")
  fi
done
echo "== make test took $(( $(date +%s) - start ))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all tests passed"
