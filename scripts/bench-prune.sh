#!/usr/bin/env bash
# Prune benchmark: brr and restic side by side, in one run, on repositories of over a
# million blobs.
#
# Corpus: FILES small files (default 1,000,000, 64-256 bytes of distinct content each;
# a small file is one blob, so each repository holds about FILES blobs plus trees), written
# by scripts/mkcorpus. Both tools back it up, then half of the files are rewritten and both
# back it up again; then each forgets the first snapshot and prunes (keep-last 1), which
# leaves about FILES/2 blobs of garbage spread over every pack. Timed: the prune, wall
# clock for the whole command (for brr: publish, run, events). Peak RSS: restic's prune
# command; for brr the worker's VmHWM, on a worker restarted just before the prune so that
# the backups' peak does not count (its start-up, repository open and index load do).
# brr deletes in two phases: a prune condemns (and repacks), a prune after the grace period
# deletes. The bench sets prune.grace to 1s (BRR_PRUNE_GRACE=1s; production: 1h) and runs
# prune twice, 1 s apart; the time reported is the two together, the RSS the peak of both.
#
#   scripts/bench-prune.sh            (or: make bench-prune)
#   FILES=200000 scripts/bench-prune.sh      a smaller, quicker run
#   BENCH_DIR=/path ...  work dir (default /tmp/brr-bench-prune)   NO_BUILD=1 ...  use bin/ as is
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_DIR="${BENCH_DIR:-/tmp/brr-bench-prune}"
FILES="${FILES:-1000000}"
corpus="$BENCH_DIR/corpus"
mkdir -p "$BENCH_DIR"

worker_pid=""
cleanup() {
	local rc=$?
	end_process "$worker_pid"
	[[ $rc -ne 0 ]] && echo "bench-prune FAILED (exit $rc); logs in $BENCH_DIR" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "tools"
need_cmd curl
need_cmd restic "apt-get install restic"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is not installed: apt-get install time"
note "$(restic version | head -1)"
build_binaries
mkcorpus="$BENCH_DIR/mkcorpus"
(cd "$ROOT" && go build -o "$mkcorpus" ./scripts/mkcorpus) || die "build scripts/mkcorpus failed"

# Set by timed (lib.sh), through printf -v.
T_restic_b1="" T_restic_b2="" T_restic_prune="" T_brr_b1="" T_brr_b2="" T_brr_prune="" T_brr_prune2="" RSS_restic_prune=0

start_worker() {
	"$WORKER" --data-dir "$data" --listen "127.0.0.1:$nats_port" --http "127.0.0.1:$http_port" \
		--log-format json >>"$BENCH_DIR/worker.log" 2>&1 &
	worker_pid=$!
	wait_ready "http://127.0.0.1:$http_port/readyz" "$worker_pid" 300 "$BENCH_DIR/worker.log"
}

stop_worker() {
	local rc=0
	stop_process "$worker_pid" 120 || rc=$?
	worker_pid=""
	[[ $rc -eq 0 ]] || note "brr-worker exited $rc after SIGTERM (want 0)"
}

export RESTIC_REPOSITORY="$BENCH_DIR/restic-repo"
export RESTIC_PASSWORD_FILE="$BENCH_DIR/restic-password"
export RESTIC_CACHE_DIR="$BENCH_DIR/restic-cache"
export BRR_PRUNE_GRACE=1s
data="$BENCH_DIR/brr-data"
rm -rf "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR" "$data" "$BENCH_DIR/worker.log"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RESTIC_PASSWORD_FILE"
chmod 0600 "$RESTIC_PASSWORD_FILE"
nats_port="" http_port=""
take_ports nats_port http_port
nats="nats://127.0.0.1:$nats_port"

step "corpus: $FILES files in $corpus (generation 0)"
rm -rf "$corpus"
"$mkcorpus" -dir "$corpus" -files "$FILES" -gen 0
note "$(human "$(du -sb "$corpus" | cut -f1)") on disk"

step "first backups (restic, then brr)"
restic init >"$BENCH_DIR/restic-init.log" 2>&1 || die "restic init failed"
timed restic_b1 restic backup --host bench "$corpus"
start_worker
timed brr_b1 "$BRR" --nats "$nats" backup "$corpus" --wait
note "restic ${T_restic_b1}s, brr ${T_brr_b1}s"

step "rewrite half of the files (generation 1), second backups"
"$mkcorpus" -dir "$corpus" -files "$FILES" -rewrite 2 -gen 1
timed restic_b2 restic backup --host bench "$corpus"
timed brr_b2 "$BRR" --nats "$nats" backup "$corpus" --wait
note "restic ${T_restic_b2}s, brr ${T_brr_b2}s"

step "restic: forget --keep-last 1 --prune"
timed restic_prune restic forget --keep-last 1 --prune
restic_repo_after="$(du -sb "$RESTIC_REPOSITORY" | cut -f1)"

step "brr: restart the worker, then prune --keep-last 1"
brr_repo_before="$(du -sb "$data/repo" | cut -f1)"
stop_worker
start_worker
hwm_start="$(vmhwm "$worker_pid")"
timed brr_prune "$BRR" --nats "$nats" --json prune --keep-last 1 --wait
sleep 1
timed brr_prune2 "$BRR" --nats "$nats" --json prune --keep-last 1 --wait
hwm_prune="$(vmhwm "$worker_pid")"
note "phase 1 (forget, condemn, repack) ${T_brr_prune}s, phase 2 (delete) ${T_brr_prune2}s"
T_brr_prune="$(awk -v a="$T_brr_prune" -v b="$T_brr_prune2" 'BEGIN {printf "%.2f", a + b}')"
brr_repo_after="$(du -sb "$data/repo" | cut -f1)"
note "brr ${T_brr_prune}s, worker VmHWM $(human $((hwm_prune * 1024))) (at start $(human $((hwm_start * 1024))))"

step "check both repositories after the prune"
restic check >"$BENCH_DIR/restic-check.log" 2>&1 || die "restic check failed after prune"
"$BRR" --nats "$nats" --json verify --wait >"$BENCH_DIR/brr-verify.log" 2>&1 || die "brr verify failed after prune: $BENCH_DIR/brr-verify.log"
brr_blobs="$(grep -o '"blobs":[0-9]*' "$BENCH_DIR/brr-verify.log" | tail -1 | cut -d: -f2)"
stop_worker

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
echo
echo "bench-prune $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, brr $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev), $(restic version | head -1 | cut -d' ' -f1-2)"
echo "corpus: $FILES files, 2 snapshots (half the files rewritten), prune keeps the last one; brr blobs after prune: ${brr_blobs:-?}"
printf '%-26s | %-22s | %-22s | %-6s\n' measure brr restic ratio
printf -- '%.0s-' {1..84}
echo
printf '%-26s | %-22s | %-22s | %-6s\n' \
	"backup 1 (all new)" "${T_brr_b1}s" "${T_restic_b1}s" "$(ratio "$T_restic_b1" "$T_brr_b1")" \
	"backup 2 (half changed)" "${T_brr_b2}s" "${T_restic_b2}s" "$(ratio "$T_restic_b2" "$T_brr_b2")" \
	"prune (2 runs for brr)" "${T_brr_prune}s" "${T_restic_prune}s" "$(ratio "$T_restic_prune" "$T_brr_prune")" \
	"prune peak RSS" "$(human $((hwm_prune * 1024)))" "$(human $((RSS_restic_prune * 1024)))" "$(ratio "$hwm_prune" "$RSS_restic_prune")" \
	"repo after prune" "$(human "$brr_repo_after")" "$(human "$restic_repo_after")" "$(ratio "$brr_repo_after" "$restic_repo_after")"
echo
echo "target: brr prune peak RSS under 500 MB at >= 1M blobs: $(awk -v k="$hwm_prune" 'BEGIN {print (k * 1024 < 500e6 ? "met" : "MISSED")}')"
echo "ratio: restic time / brr time (higher is better for brr); brr / restic for RSS and size."
echo "brr's repo was $(human "$brr_repo_before") before the prune. Logs: $BENCH_DIR/*.log, *.time"
