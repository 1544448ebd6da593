#!/usr/bin/env bash
# Runs every test of the module with -race: go test ./... at the root. One
# sandbox control plane (real etcd, kube-apiserver, controller-manager,
# scheduler, kwok) is started for the whole run and shared by the packages
# that need a cluster, through KAAR_SANDBOX_KUBECONFIG; each test works in
# its own namespace, so packages and tests run in parallel.
#
# The tests mostly wait on the control plane, NATS and timers, not the
# CPU: TEST_P packages run at once (go test -p; default 4, go's default is
# GOMAXPROCS, 2 here) and TEST_PARALLEL parallel tests per package
# (-parallel; default 8, go's default is 2).
#
# go test starts packages in the order given: the three longest (about
# 2-3 minutes each, mostly their slowest test: the watcher's API server
# outage on a private sandbox, cmd/kaar's chaos suite) come first, so that
# they do not start last and end the run late.
#
# The lint (make lint: gofmt, go vet, golangci-lint, go mod tidy -diff,
# govulncheck) runs beside the tests, from the start: it needs no cluster,
# and on a fresh checkout it takes about 65 s that would otherwise come
# before the first test. Its output is printed when it ends; a lint failure
# fails the run as a test failure does. LINT=0 leaves it out.
#
# -vet=off: the lint runs the whole of go vet already; go test's own vet
# pass would only repeat a part of it on the two cores the tests share.
#
# TEST_FLAGS adds go test flags (for example TEST_FLAGS=-v).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
state=$root/.cache/test-sandbox
start=$(date +%s)

lint_dir=$(mktemp -d)
lint_pid=""
if [ "${LINT:-1}" != 0 ]; then
  ( rc=0; make --no-print-directory lint >"$lint_dir/out" 2>&1 || rc=$?; echo "$rc" >"$lint_dir/rc" ) &
  lint_pid=$!
  echo "== lint started beside the tests (make lint)"
fi

echo "== building and starting the shared sandbox (first run builds the control plane and metrics-server: ~15 min on 2 cores; cached afterwards, each build group under its own key)"
go build -o "$root/bin/kaar-sandbox" ./pkg/sandbox/cmd/kaar-sandbox
"$root/bin/kaar-sandbox" down --state-dir "$state" >/dev/null 2>&1 || true
"$root/bin/kaar-sandbox" up --state-dir "$state"
trap '"$root/bin/kaar-sandbox" down --state-dir "$state" >/dev/null 2>&1 || true; rm -rf "$lint_dir"' EXIT
export KAAR_SANDBOX_KUBECONFIG
KAAR_SANDBOX_KUBECONFIG=$("$root/bin/kaar-sandbox" kubeconfig --state-dir "$state")
echo "== sandbox ready after $(( $(date +%s) - start ))s"

status=0
# shellcheck disable=SC2086
go test -race -vet=off -count=1 -p "${TEST_P:-4}" -parallel "${TEST_PARALLEL:-8}" -timeout 25m ${TEST_FLAGS:-} ./services/watcher ./cmd/kaar ./deploy/test ./... || status=$?
if [ -n "$lint_pid" ]; then
  wait "$lint_pid" || true
  echo "== lint (make lint):"
  cat "$lint_dir/out"
  lint_rc=$(cat "$lint_dir/rc" 2>/dev/null || echo 1)
  if [ "$lint_rc" -ne 0 ]; then
    echo "== lint FAILED (exit $lint_rc)"
    [ "$status" -ne 0 ] || status=$lint_rc
  fi
fi
echo "== make test took $(( $(date +%s) - start ))s"
if [ "$status" -ne 0 ]; then
  echo "FAILED"
  exit "$status"
fi
echo "all tests passed"
