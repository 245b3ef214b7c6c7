#!/usr/bin/env bash
# Prune benchmark: brr and restic 0.18.1 side by side, in one run, on repositories of over
# a million blobs. restic is installed with go install (pinned, into .tools/bin); the Debian
# package only when that fails, with a loud note, as its version differs.
#
# Corpus: FILES small files (default 1,000,000, 64-256 bytes of distinct content each;
# a small file is one blob, so each repository holds about FILES blobs plus trees), written
# by scripts/mkcorpus. Both tools back it up, then half of the files are rewritten and both
# back it up again; then each forgets the first snapshot and prunes (keep-last 1), which
# leaves about FILES/2 blobs of garbage spread over every pack. Timed: the prune, wall
# clock for the whole command (for brr: publish, run, events). Peak RSS: restic's command;
# for brr the worker's VmHWM, on a worker started just before the first backup and
# restarted just before the prune, so that each peak is that phase's (with the worker's
# start-up, repository open and index load).
# brr deletes in two phases: a prune condemns (and repacks), a prune after the grace period
# deletes. The bench sets prune.grace to 1s (BRR_PRUNE_GRACE=1s; production: 1h) and runs
# prune twice, 1 s apart; the time reported is the two together, the RSS the peak of both.
#
#   scripts/bench-prune.sh            (or: make bench-prune)
#   FILES=200000 scripts/bench-prune.sh      a smaller, quicker run
#   BENCH_DIR=/path ...  work dir (default /tmp/brr-bench-prune)   NO_BUILD=1 ...  use bin/ as is
#   KEEP_REPOS=1 ...     after the second backups, copy both repositories (and restic's cache,
#                        brr's data dir) to BENCH_DIR/before-prune, with the backup figures
#   PRUNE_ONLY=1 ...     no corpus, no backups: start again from BENCH_DIR/before-prune (made
#                        by a KEEP_REPOS=1 run; the backup rows repeat that run's figures)
#                        and run only the prunes, the checks and the table
#   SKIP_RESTIC=1 ...    with PRUNE_ONLY=1: brr's prune only (for iterating; no ratio)
#   BACKUP_ONLY=1 ...    stop after the first backups and print their table (time, CPU
#                        time and peak RSS of each): issue 14's many-small-files target
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
[[ -x /usr/bin/time ]] || die "/usr/bin/time is not installed: apt-get install time"
RESTIC_VERSION=0.18.1
restic="$ROOT/.tools/bin/restic"
restic_note=""
if [[ ! -x "$restic" ]] || [[ "$("$restic" version)" != "restic $RESTIC_VERSION "* ]]; then
	note "installing restic $RESTIC_VERSION into .tools/bin (a few minutes, once)"
	mkdir -p "$ROOT/.tools/bin"
	if ! GOBIN="$ROOT/.tools/bin" go install "github.com/restic/restic/cmd/restic@v$RESTIC_VERSION"; then
		need_cmd restic "go install of restic $RESTIC_VERSION failed; apt-get install restic as a fallback"
		restic="$(command -v restic)"
		restic_note="WARNING: go install of restic $RESTIC_VERSION failed; the figures are against the Debian package, $("$restic" version | head -1)"
		printf '\n*** %s ***\n\n' "$restic_note" >&2
	fi
fi
restic() { "$restic" "$@"; }
note "$(restic version | head -1)"
build_binaries
mkcorpus="$BENCH_DIR/mkcorpus"
(cd "$ROOT" && go build -o "$mkcorpus" ./scripts/mkcorpus) || die "build scripts/mkcorpus failed"

# Set by timed (lib.sh), through printf -v.
T_restic_b1="" T_restic_b2="" T_restic_prune="" T_brr_b1="" T_brr_b2="" T_brr_prune="" T_brr_prune2="" RSS_restic_prune=0 RSS_restic_b1=0

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
saved="$BENCH_DIR/before-prune"
PRUNE_ONLY="${PRUNE_ONLY:-0}"
SKIP_RESTIC="${SKIP_RESTIC:-0}"
[[ "$SKIP_RESTIC" != 1 || "$PRUNE_ONLY" == 1 ]] || die "SKIP_RESTIC=1 goes with PRUNE_ONLY=1"
rm -rf "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR" "$data" "$BENCH_DIR/worker.log"
nats_port="" http_port=""
take_ports nats_port http_port
nats="nats://127.0.0.1:$nats_port"

# cached_share prints the share of a sample of the corpus's files (every 20th directory)
# that is in the page cache, and the load average: on a shared machine another run's
# drop_caches can send a backup to the disk, which its time then measures instead.
drops() { awk '/^drop_pagecache/ {print $2}' /proc/vmstat; }
cached_share() {
	local share="?"
	if command -v fincore >/dev/null; then
		share="$(find "$corpus" -mindepth 1 -maxdepth 1 -type d | sort | awk 'NR % 20 == 1' |
			while read -r d; do fincore -n -b -o RES "$d"/*; done |
			awk '{n++; if ($1 > 0) c++} END {printf "%.0f%%", n ? 100 * c / n : 0}')"
	fi
	echo "corpus files in the page cache: $share, load $(cut -d' ' -f1-3 /proc/loadavg), caches dropped $(drops) times since boot"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
# verdict A OP B prints met or MISSED for the comparison A OP B (numbers; OP is >= or <=).
verdict() { awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {ok = (op == ">=" ? a >= b : a <= b); print (ok ? "met" : "MISSED")}'; }
if [[ "$PRUNE_ONLY" == 1 ]]; then
	[[ -f "$saved/figures" ]] || die "PRUNE_ONLY=1 needs $saved from an earlier KEEP_REPOS=1 run"
	step "PRUNE_ONLY: both repositories as $saved holds them (backups not run again)"
	cp -a "$saved/restic-repo" "$RESTIC_REPOSITORY"
	cp -a "$saved/restic-cache" "$RESTIC_CACHE_DIR"
	cp -a "$saved/brr-data" "$data"
	cp -a "$saved/restic-password" "$RESTIC_PASSWORD_FILE"
	saved_at=""
	# shellcheck disable=SC1091
	source "$saved/figures"
	note "backups of $FILES files, from $saved_at"
	start_worker
else # the full run: corpus and both backups (not indented, to keep the diff small)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RESTIC_PASSWORD_FILE"
chmod 0600 "$RESTIC_PASSWORD_FILE"

step "corpus: $FILES files in $corpus (generation 0)"
rm -rf "$corpus"
"$mkcorpus" -dir "$corpus" -files "$FILES" -gen 0
note "$(human "$(du -sb "$corpus" | cut -f1)") on disk"

step "first backups (restic, then brr)"
restic init >"$BENCH_DIR/restic-init.log" 2>&1 || die "restic init failed"
cached_restic_b1="$(cached_share)"
note "before restic: $cached_restic_b1"
timed restic_b1 "$restic" backup --host bench "$corpus"
note "after restic: caches dropped $(drops) times since boot"
start_worker
cached_brr_b1="$(cached_share)"
note "before brr: $cached_brr_b1"
cpu_start="$(cpu_seconds "$worker_pid")"
timed brr_b1 "$BRR" --nats "$nats" backup "$corpus" --wait
hwm_b1="$(vmhwm "$worker_pid")"
note "after brr: caches dropped $(drops) times since boot"
cpu_b1="$(awk -v a="$(cpu_seconds "$worker_pid")" -v b="$cpu_start" 'BEGIN {printf "%.2f", a - b}')"
cpu_restic_b1="$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$BENCH_DIR/restic_b1.time")"
note "restic ${T_restic_b1}s (CPU ${cpu_restic_b1}s), $(human $((RSS_restic_b1 * 1024))); brr ${T_brr_b1}s (worker CPU ${cpu_b1}s), worker VmHWM $(human $((hwm_b1 * 1024)))"

if [[ "${BACKUP_ONLY:-0}" == 1 ]]; then
	stop_worker
	r_b1="$(ratio "$T_restic_b1" "$T_brr_b1")"
	echo
	echo "bench-prune (BACKUP_ONLY) $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), brr $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev), $(restic version | head -1 | cut -d' ' -f1-2)"
	[[ -n "$restic_note" ]] && echo "$restic_note"
	echo "corpus: $FILES files; first backup of each tool, files in the page cache (sampled just before each: restic $cached_restic_b1; brr $cached_brr_b1)"
	printf '%-26s | %-14s | %-14s | %-6s | %s\n' measure brr restic ratio target
	printf -- '%.0s-' {1..96}
	echo
	printf '%-26s | %-14s | %-14s | %-6s | %s\n' \
		"backup 1 (all new)" "${T_brr_b1}s" "${T_restic_b1}s" "$r_b1" "restic/brr >= 2.5: $(verdict "$r_b1" ">=" 2.5)" \
		"backup 1 CPU time" "${cpu_b1}s" "${cpu_restic_b1}s" "$(ratio "$cpu_restic_b1" "$cpu_b1")" "-" \
		"backup 1 peak RSS" "$(human $((hwm_b1 * 1024)))" "$(human $((RSS_restic_b1 * 1024)))" "$(ratio "$hwm_b1" "$RSS_restic_b1")" "brr <= restic: $(verdict "$hwm_b1" "<=" "$RSS_restic_b1")"
	echo
	echo "brr's CPU time is the worker's (utime + stime) over the backup, its RSS the worker's VmHWM (embedded NATS included)."
	exit 0
fi

step "rewrite half of the files (generation 1), second backups"
"$mkcorpus" -dir "$corpus" -files "$FILES" -rewrite 2 -gen 1
timed restic_b2 "$restic" backup --host bench "$corpus"
timed brr_b2 "$BRR" --nats "$nats" backup "$corpus" --wait
note "restic ${T_restic_b2}s, brr ${T_brr_b2}s"

if [[ "${KEEP_REPOS:-0}" == 1 ]]; then
	step "KEEP_REPOS: copy both repositories to $saved"
	stop_worker
	rm -rf "$saved"
	mkdir -p "$saved"
	cp -a "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR" "$data" "$RESTIC_PASSWORD_FILE" "$saved/"
	{
		printf 'FILES=%q\nsaved_at=%q\n' "$FILES" "$(date -u +%Y-%m-%dT%H:%MZ)"
		printf 'T_restic_b1=%q\nT_restic_b2=%q\nT_brr_b1=%q\nT_brr_b2=%q\n' "$T_restic_b1" "$T_restic_b2" "$T_brr_b1" "$T_brr_b2"
		printf 'RSS_restic_b1=%q\nhwm_b1=%q\n' "$RSS_restic_b1" "$hwm_b1"
	} >"$saved/figures"
	start_worker
fi
fi # PRUNE_ONLY

if [[ "$SKIP_RESTIC" == 1 ]]; then
	step "SKIP_RESTIC: restic's prune not run"
	T_restic_prune=0
	restic_repo_after=0
else
	step "restic: forget --keep-last 1 --prune"
	timed restic_prune "$restic" forget --keep-last 1 --prune
	restic_repo_after="$(du -sb "$RESTIC_REPOSITORY" | cut -f1)"
fi

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
if [[ "$SKIP_RESTIC" != 1 ]]; then
	restic check >"$BENCH_DIR/restic-check.log" 2>&1 || die "restic check failed after prune"
fi
"$BRR" --nats "$nats" --json verify --wait >"$BENCH_DIR/brr-verify.log" 2>&1 || die "brr verify failed after prune: $BENCH_DIR/brr-verify.log"
brr_blobs="$(grep -o '"blobs":[0-9]*' "$BENCH_DIR/brr-verify.log" | tail -1 | cut -d: -f2)"
stop_worker

r_b1="$(ratio "$T_restic_b1" "$T_brr_b1")"
r_prune="$(ratio "$T_restic_prune" "$T_brr_prune")"
prune_verdict="restic/brr >= 3: $(verdict "$r_prune" ">=" 3)"
[[ "$SKIP_RESTIC" == 1 ]] && prune_verdict="restic not run (SKIP_RESTIC=1): no ratio"
echo
echo "bench-prune $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), brr $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev), $(restic version | head -1 | cut -d' ' -f1-2)"
[[ -n "$restic_note" ]] && echo "$restic_note"
echo "corpus: $FILES files, 2 snapshots (half the files rewritten), prune keeps the last one; brr blobs after prune: ${brr_blobs:-?}"
printf '%-26s | %-14s | %-14s | %-6s | %s\n' measure brr restic ratio target
printf -- '%.0s-' {1..96}
echo
printf '%-26s | %-14s | %-14s | %-6s | %s\n' \
	"backup 1 (all new)" "${T_brr_b1}s" "${T_restic_b1}s" "$r_b1" "restic/brr >= 2.5: $(verdict "$r_b1" ">=" 2.5)" \
	"backup 1 peak RSS" "$(human $((hwm_b1 * 1024)))" "$(human $((RSS_restic_b1 * 1024)))" "$(ratio "$hwm_b1" "$RSS_restic_b1")" "brr <= restic: $(verdict "$hwm_b1" "<=" "$RSS_restic_b1")" \
	"backup 2 (half changed)" "${T_brr_b2}s" "${T_restic_b2}s" "$(ratio "$T_restic_b2" "$T_brr_b2")" "-" \
	"prune (2 runs for brr)" "${T_brr_prune}s" "${T_restic_prune}s" "$r_prune" "$prune_verdict" \
	"prune peak RSS" "$(human $((hwm_prune * 1024)))" "$(human $((RSS_restic_prune * 1024)))" "$(ratio "$hwm_prune" "$RSS_restic_prune")" "brr < 400 MB: $(verdict "$((hwm_prune * 1024))" "<=" 400000000)" \
	"repo after prune" "$(human "$brr_repo_after")" "$(human "$restic_repo_after")" "$(ratio "$brr_repo_after" "$restic_repo_after")" "-"
echo
echo "ratio: restic time / brr time (higher is better for brr); brr / restic for RSS and size. Targets: issue 14."
echo "brr's repo was $(human "$brr_repo_before") before the prune. Logs: $BENCH_DIR/*.log, *.time"
