#!/usr/bin/env bash
# docker.sh: Docker Engine and Compose for the compose demo and its test.
#
#   hack/docker.sh start   install what is missing, use the running daemon or
#                          start one; prints shell assignments for eval:
#                          DOCKER_HOST, DOCKER_CONFIG (the pinned compose
#                          plugin) and KAAR_DOCKERD_STARTED (1 if this call
#                          started the daemon)
#   hack/docker.sh stop    stop the daemon this script started (by its pid
#                          file) unless containers are left on it (then it
#                          says so); a daemon it did not start is left alone
#
# What is installed when absent: Docker Engine with Debian's docker.io
# (apt-get, as root) and Docker Compose, built from its Go module into bin/
# by deploy/hack/install-compose.sh and used as the docker CLI plugin
# (DOCKER_CONFIG=.cache/docker/config, whose cli-plugins links to bin/).
#
# Which daemon: $DOCKER_HOST if it answers, else this script's own daemon
# (.cache/docker) if it runs, else the system's /var/run/docker.sock if it
# answers, else a new daemon: dockerd with its own data root, exec root,
# socket and pid file under .cache/docker, and overlay2 storage (vfs where
# overlay2 does not start). Registries are not needed: the images are built
# locally (deploy/hack/build-images.sh).
#
# Every failure is loud: a missing daemon is an error, never a skip.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$root/.cache/docker"
sock="$state/docker.sock"
pidfile="$state/dockerd.pid"
log="$state/dockerd.log"
config="$state/config"

say() { echo "docker.sh: $*" >&2; }
die() {
	say "$*"
	exit 1
}

answers() { DOCKER_HOST="$1" docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

ensure_engine() {
	if command -v dockerd >/dev/null && command -v docker >/dev/null; then
		return
	fi
	[[ $(id -u) -eq 0 ]] || die "Docker Engine is not installed and this is not root: install docker.io (apt-get install -y docker.io) and retry"
	say "installing Docker Engine (apt-get install -y docker.io, ~1 min)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 || die "apt-get update failed"
	apt-get install -y -qq docker.io >&2 || die "apt-get install docker.io failed"
	command -v dockerd >/dev/null || die "docker.io installed but dockerd is not on PATH"
}

ensure_compose() {
	"$root/deploy/hack/install-compose.sh" >/dev/null
	mkdir -p "$config"
	ln -sfn "$root/bin/cli-plugins" "$config/cli-plugins"
	[[ -f "$config/config.json" ]] || echo '{}' >"$config/config.json"
	DOCKER_CONFIG="$config" docker compose version >/dev/null || die "docker compose does not run from $config/cli-plugins"
}

own_pid() {
	[[ -s "$pidfile" ]] || return 1
	local pid
	pid="$(cat "$pidfile")"
	kill -0 "$pid" 2>/dev/null && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]] && echo "$pid"
}

start_daemon() {
	local driver="$1"
	mkdir -p "$state/data" "$state/exec"
	say "starting dockerd ($driver storage, data root $state/data, socket $sock)"
	# setsid: the daemon outlives the calling shell and go test's process
	# group; it is stopped by `docker.sh stop`.
	setsid dockerd --storage-driver="$driver" --data-root "$state/data" --exec-root "$state/exec" \
		-H "unix://$sock" --pidfile "$pidfile" >>"$log" 2>&1 </dev/null &
	local i
	for i in $(seq 1 60); do
		if answers "unix://$sock"; then
			return 0
		fi
		if ! kill -0 $! 2>/dev/null; then
			return 1
		fi
		sleep 0.5
	done
	kill $! 2>/dev/null || true
	return 1
}

start() {
	ensure_engine
	ensure_compose
	local host="" started=0
	if [[ -n "${DOCKER_HOST:-}" ]] && answers "$DOCKER_HOST"; then
		host="$DOCKER_HOST"
	elif own_pid >/dev/null && answers "unix://$sock"; then
		host="unix://$sock"
	elif answers unix:///var/run/docker.sock; then
		host=unix:///var/run/docker.sock
	else
		[[ $(id -u) -eq 0 ]] || die "no Docker daemon answers and starting one needs root"
		if own_pid >/dev/null; then
			die "dockerd $(own_pid) (pid file $pidfile) runs but does not answer on $sock: see $log"
		fi
		rm -f "$sock" "$pidfile"
		# A data root keeps its storage driver: reuse the one it was made with.
		local driver=overlay2
		if [[ -d "$state/data/vfs" && ! -d "$state/data/overlay2" ]]; then
			driver=vfs
		fi
		if ! start_daemon "$driver"; then
			[[ "$driver" == vfs ]] && die "dockerd did not start: see $log"
			say "dockerd with overlay2 did not start; retrying with vfs"
			rm -rf "$state/data/overlay2"
			start_daemon vfs || die "dockerd did not start: see $log"
		fi
		host="unix://$sock"
		started=1
	fi
	printf 'export DOCKER_HOST=%q DOCKER_CONFIG=%q KAAR_DOCKERD_STARTED=%d\n' "$host" "$config" "$started"
}

stop() {
	local pid
	if ! pid="$(own_pid)"; then
		rm -f "$pidfile"
		return 0
	fi
	local left
	left="$(DOCKER_HOST="unix://$sock" docker ps -aq 2>/dev/null | wc -l)"
	if [[ "$left" -gt 0 ]]; then
		say "dockerd $pid still has $left containers (another compose project?): left running"
		return 0
	fi
	say "stopping dockerd $pid"
	kill "$pid"
	local i
	for i in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.5
	done
	die "dockerd $pid did not stop within 30 s"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*) die "usage: hack/docker.sh start|stop" ;;
esac
