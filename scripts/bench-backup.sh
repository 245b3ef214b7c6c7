#!/usr/bin/env bash
# Backup benchmark: brr and restic side by side, in one run, on the same corpus and disk.
#
# Corpus (built once, cached in $BENCH_DIR/corpus): a copy of the Go toolchain tree
# (many small compressible files), 384 MiB of random data in 3 files, and a duplicate of
# one of them. Phases, each timed wall-clock for the whole command (for brr that includes
# publishing the job and waiting for its result): first backup, unchanged re-backup,
# restore; then the repository size and the peak RSS.
#
# restic is 0.18.1, go installed into .tools/bin (pinned; not the distribution's).
# The run is made RUNS times, each with its own table: by default twice when the
# 1-minute load average is 1 or more when it starts (a shared machine), once otherwise.
#
#   scripts/bench-backup.sh            (or: make bench-backup)
#   BENCH_DIR=/path scripts/bench-backup.sh   work dir (default /tmp/brr-bench)
#   RUNS=N ...      run it N times
#   NO_BUILD=1 ...  use bin/ as it is      DROP_CACHES=0 ...  never drop page caches
#   BRR_NATS=external ...  run brr-worker against a separate nats-server (built from the
#                          module into $BENCH_DIR when not on PATH) instead of its embedded
#                          one, and report the two processes' peak RSS apart
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_DIR="${BENCH_DIR:-/tmp/brr-bench}"
corpus="$BENCH_DIR/corpus"
mkdir -p "$BENCH_DIR"

worker_pid="" server_pid=""
cleanup() {
	local rc=$?
	end_process "$worker_pid"
	end_process "$server_pid"
	rm -rf "$BENCH_DIR/restic-restore" "$BENCH_DIR/brr-restore"
	[[ $rc -ne 0 ]] && echo "bench-backup FAILED (exit $rc); worker log: $BENCH_DIR/worker.log" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

apt_updated=0
apt_install() {
	if [[ $apt_updated == 0 ]]; then
		apt-get update -qq || die "apt-get update failed"
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

step "tools"
need_cmd curl
RESTIC_VERSION=0.18.1
restic="$ROOT/.tools/bin/restic"
if [[ ! -x "$restic" ]] || [[ "$("$restic" version)" != "restic $RESTIC_VERSION "* ]]; then
	note "installing restic $RESTIC_VERSION into .tools/bin (a few minutes, once)"
	mkdir -p "$ROOT/.tools/bin"
	GOBIN="$ROOT/.tools/bin" go install "github.com/restic/restic/cmd/restic@v$RESTIC_VERSION" ||
		die "go install restic failed"
fi
restic() { "$restic" "$@"; }
[[ -x /usr/bin/time ]] || { note "installing time"; apt_install time; }
note "$(restic version | head -1)"
build_binaries

# ---- runs ----------------------------------------------------------------------------
# A noisy machine gets two runs: this script again, once per run, each with its table.
if [[ -z "${RUNS:-}" ]]; then
	RUNS=1
	if awk '{exit !($1 >= 1)}' /proc/loadavg; then RUNS=2; fi
	note "load average $(cut -d' ' -f1-3 /proc/loadavg): $RUNS run(s)"
fi
if ((RUNS > 1)); then
	for ((i = 1; i <= RUNS; i++)); do
		step "run $i of $RUNS"
		RUNS=1 NO_BUILD=1 "$0" || exit $?
	done
	exit 0
fi

# ---- corpus --------------------------------------------------------------------------
build_corpus "$corpus"
corpus_bytes="$(du -sb "$corpus" | cut -f1)"
corpus_files="$(find "$corpus" -type f | wc -l)"
note "corpus: $(human "$corpus_bytes") in $corpus_files files"

# ---- page cache ----------------------------------------------------------------------
page_caches "$corpus"

# Set by timed (lib.sh), through printf -v.
T_restic_backup="" T_restic_rebackup="" T_restic_restore="" T_brr_backup="" T_brr_rebackup="" T_brr_restore=""
RSS_restic_init=0 RSS_restic_backup=0 RSS_restic_rebackup=0 RSS_restic_restore=0

# before_timed runs before every timed phase.
before_timed() { drop_caches; }

# ---- restic --------------------------------------------------------------------------
step "restic: init + first backup, unchanged re-backup, restore"
export RESTIC_REPOSITORY="$BENCH_DIR/restic-repo"
export RESTIC_PASSWORD_FILE="$BENCH_DIR/restic-password"
export RESTIC_CACHE_DIR="$BENCH_DIR/restic-cache"
rm -rf "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR" "$BENCH_DIR/restic-restore"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RESTIC_PASSWORD_FILE"
chmod 0600 "$RESTIC_PASSWORD_FILE"
t0="$(now)"
timed restic_init "$restic" init
timed restic_backup "$restic" backup --host bench "$corpus"
T_restic_backup="$(elapsed "$t0" "$(now)")" # init + backup, as a user would run them
timed restic_rebackup "$restic" backup --host bench "$corpus"
timed restic_restore "$restic" restore latest --target "$BENCH_DIR/restic-restore"
restic_repo_bytes="$(du -sb "$RESTIC_REPOSITORY" | cut -f1)"
restic_rss=0
for v in "$RSS_restic_init" "$RSS_restic_backup" "$RSS_restic_rebackup" "$RSS_restic_restore"; do
	if ((v > restic_rss)); then restic_rss=$v; fi
done
note "backup ${T_restic_backup}s, re-backup ${T_restic_rebackup}s, restore ${T_restic_restore}s"
step "restic: compare the restore with the corpus"
# restic restores the absolute source path under the target.
diff -rq "$corpus" "$BENCH_DIR/restic-restore$corpus" || die "restic's restore differs from the corpus"
# restic's restore is removed at the end, not now: ext4 without a journal skips inodes freed
# in the last minute when it allocates new ones, so deleting 15,000 files here would make
# brr's restore, a few seconds later, pay for restic's.

# ---- brr -----------------------------------------------------------------------------
data="$BENCH_DIR/brr-data"
rm -rf "$data" "$BENCH_DIR/brr-restore"
nats_port="" http_port=""
take_ports nats_port http_port
nats="nats://127.0.0.1:$nats_port"
if [[ "${BRR_NATS:-embedded}" == external ]]; then
	server="$(command -v nats-server || true)"
	if [[ -z "$server" ]]; then
		server="$BENCH_DIR/nats-server"
		[[ -x "$server" ]] || (cd "$ROOT" && go build -o "$server" github.com/nats-io/nats-server/v2) ||
			die "build nats-server failed"
	fi
	rm -rf "$BENCH_DIR/nats-data"
	step "brr: start nats-server (JetStream on 127.0.0.1:$nats_port) and brr-worker (fresh data dir $data)"
	"$server" -js -sd "$BENCH_DIR/nats-data" -a 127.0.0.1 -p "$nats_port" >"$BENCH_DIR/nats-server.log" 2>&1 &
	server_pid=$!
	for _ in {1..50}; do port_in_use "$nats_port" && break; sleep 0.1; done
	"$WORKER" --data-dir "$data" --nats "$nats" --http "127.0.0.1:$http_port" \
		--log-format json >"$BENCH_DIR/worker.log" 2>&1 &
	worker_pid=$!
	nats_note="the worker connects to a separate nats-server"
else
	step "brr: start brr-worker (embedded NATS on 127.0.0.1:$nats_port, fresh data dir $data)"
	"$WORKER" --data-dir "$data" --listen "127.0.0.1:$nats_port" --http "127.0.0.1:$http_port" \
		--log-format json >"$BENCH_DIR/worker.log" 2>&1 &
	worker_pid=$!
	nats_note="embedded NATS server included"
fi
wait_ready "http://127.0.0.1:$http_port/readyz" "$worker_pid" 60 "$BENCH_DIR/worker.log"
note "worker pid $worker_pid, VmHWM at start $(vmhwm "$worker_pid") KiB"

step "brr: first backup, unchanged re-backup, restore"
brr_hwm=0
track_hwm() {
	local v
	v="$(vmhwm "$worker_pid")"
	if ((v > brr_hwm)); then brr_hwm=$v; fi
	note "worker VmHWM after $1: $v KiB"
}
timed brr_backup "$BRR" --nats "$nats" backup "$corpus" --wait
track_hwm "the first backup"
timed brr_rebackup "$BRR" --nats "$nats" backup "$corpus" --wait
track_hwm "the re-backup"
cpu_before="$(proc_cpu "$worker_pid")"
timed brr_restore "$BRR" --nats "$nats" restore latest "$BENCH_DIR/brr-restore" --wait
cpu_brr_restore="$(awk -v a="$cpu_before" -v b="$(proc_cpu "$worker_pid")" 'BEGIN {printf "%.2f", b - a}')"
track_hwm "the restore"
brr_repo_bytes="$(du -sb "$data/repo" | cut -f1)"
note "backup ${T_brr_backup}s, re-backup ${T_brr_rebackup}s, restore ${T_brr_restore}s"
step "brr: compare the restore with the corpus"
diff -rq "$corpus" "$BENCH_DIR/brr-restore" || die "brr's restore differs from the corpus"
rm -rf "$BENCH_DIR/brr-restore"

step "brr: stop the worker"
server_hwm=0
[[ -n "$server_pid" ]] && server_hwm="$(vmhwm "$server_pid")"
rc=0
stop_process "$worker_pid" 60 || rc=$?
worker_pid=""
[[ $rc -eq 0 ]] || note "brr-worker exited $rc after SIGTERM (want 0)"
if [[ -n "$server_pid" ]]; then
	stop_process "$server_pid" 30 || true
	server_pid=""
fi

# ---- report --------------------------------------------------------------------------
mibs() { awk -v b="$corpus_bytes" -v t="$1" 'BEGIN {printf "%.1f", b / 1048576 / t}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
verdict() { awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN {ok = (op == ">=" ? r >= t : r <= t); print (ok ? "met" : "MISSED")}'; }

r_backup="$(ratio "$T_restic_backup" "$T_brr_backup")"
r_rebackup="$(ratio "$T_restic_rebackup" "$T_brr_rebackup")"
r_restore="$(ratio "$T_restic_restore" "$T_brr_restore")"
r_repo="$(ratio "$brr_repo_bytes" "$restic_repo_bytes")"
r_rss="$(ratio "$brr_hwm" "$restic_rss")"

echo
echo "bench-backup $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $("$BRR" --version 2>/dev/null || echo "brr ?") (as built), $(restic version | head -1 | cut -d' ' -f1-2)"
echo "corpus: $(human "$corpus_bytes") in $corpus_files files; $cache_note"
printf '%-22s | %-22s | %-22s | %-6s | %-30s\n' phase brr restic ratio "target"
printf -- '%.0s-' {1..112}
echo
printf '%-22s | %-22s | %-22s | %-6s | %-30s\n' \
	"first backup" "${T_brr_backup}s $(mibs "$T_brr_backup") MiB/s" "${T_restic_backup}s $(mibs "$T_restic_backup") MiB/s" "$r_backup" ">= 3x faster: $(verdict "$r_backup" '>=' 3)" \
	"unchanged re-backup" "${T_brr_rebackup}s" "${T_restic_rebackup}s" "$r_rebackup" ">= 5x faster: $(verdict "$r_rebackup" '>=' 5)" \
	"restore" "${T_brr_restore}s $(mibs "$T_brr_restore") MiB/s" "${T_restic_restore}s $(mibs "$T_restic_restore") MiB/s" "$r_restore" ">= 2.5x faster: $(verdict "$r_restore" '>=' 2.5)" \
	"repo size" "$(human "$brr_repo_bytes")" "$(human "$restic_repo_bytes")" "$r_repo" "<= 1.05x restic: $(verdict "$r_repo" '<=' 1.05)" \
	"peak RSS" "$(human $((brr_hwm * 1024)))" "$(human $((restic_rss * 1024)))" "$r_rss" "<= 0.8x restic: $(verdict "$r_rss" '<=' 0.8)"
echo
echo "ratio: restic time / brr time for the timed phases (higher is better for brr), brr / restic for size and RSS."
echo "brr times are the whole 'brr ... --wait' command: publish, queue, run, events. restic's first backup includes 'restic init'."
echo "brr peak RSS is the worker's VmHWM (read after each phase: its peak over the whole run, $nats_note);"
if ((server_hwm > 0)); then
	echo "the separate nats-server's own VmHWM: $(human $((server_hwm * 1024)))."
fi
echo "restic's is the largest 'Maximum resident set size' of its commands. Logs and timings: $BENCH_DIR/*.log, *.time"
# CPU time is steadier than wall time on a loaded machine: the worker's user+system
# seconds over the restore (the job and everything else the worker did meanwhile)
# against restic's.
cpu_restic_restore="$(time_cpu "$BENCH_DIR/restic_restore.time")"
echo "restore CPU (user+system): brr worker ${cpu_brr_restore}s, restic ${cpu_restic_restore}s, ratio $(ratio "$cpu_restic_restore" "$cpu_brr_restore")"
