#!/usr/bin/env bash
# make cluster-down: stop what scripts/cluster-up.sh started, workers first (SIGTERM: they
# finish their jobs within jobs.drain_timeout), then the NATS nodes. The data, logs and
# passwords under .brr-cluster/ stay for the next cluster-up; --purge removes them.
# Running it again, or with nothing running, is fine.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

DIR="${BRR_CLUSTER_DIR:-$ROOT/.brr-cluster}"
purge=0
for arg in "$@"; do
	case "$arg" in
	--purge) purge=1 ;;
	-h | --help)
		echo "usage: $0 [--purge]   (--purge also removes $DIR)"
		exit 0
		;;
	*) die "unknown argument $arg (usage: $0 [--purge])" ;;
	esac
done

# stop sends SIGTERM to the process in pid file $1 when it runs and its command line
# holds $2, waits up to $3 seconds for it to exit, then SIGKILLs it.
stop() {
	local pidfile="$1" what="$2" limit="$3" name pid i
	name="$(basename "$pidfile" .pid)"
	[[ -f "$pidfile" ]] || return 0
	pid="$(<"$pidfile")"
	if [[ ! "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null ||
		! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$what"; then
		note "$name not running"
		rm -f "$pidfile"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < limit * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		note "$name (pid $pid) still running ${limit}s after SIGTERM: sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	else
		note "$name stopped (pid $pid)"
	fi
	rm -f "$pidfile"
}

if [[ ! -d "$DIR" ]]; then
	step "no cluster under $DIR: nothing to stop"
	exit 0
fi
step "stopping the brr-workers"
for i in 1 2 3; do
	stop "$DIR/worker-$i.pid" brr-worker 40
done
step "stopping the NATS nodes"
for i in 1 2 3; do
	stop "$DIR/nats-$i.pid" nats-server 30
done
if ((purge)); then
	rm -rf "$DIR"
	step "removed $DIR (stores, data dirs, logs, passwords)"
else
	step "data kept in $DIR: make cluster-up resumes it, make cluster-down PURGE=1 removes it"
fi
