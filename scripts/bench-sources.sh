#!/usr/bin/env bash
# Sources benchmark: the RPO a watched source reaches, and what excludes cost a backup.
#
# 1. Watch RPO. One worker (embedded NATS, file repo) watches a named source with
#    {delay: 2s, max_delay: 10s}. The script writes WRITES new files into it at random
#    times (gaps of 0-6 s), then lists the snapshots: for each write, its RPO is the time
#    from the write to the commit of the first snapshot that holds it (the first whose
#    file count reaches it: files are only added). Prints min / median / p95 / max.
# 2. Excludes overhead, on the bench-backup corpus (scripts/bench-backup.sh builds it in
#    $BENCH_DIR/corpus): a hard-linked copy of it gets a few .brrignore files; then a
#    first backup (a fresh worker and repo each run, warm page cache) with no excludes,
#    with 20 patterns and the .brrignore files (a copy that has them) that leave out almost nothing (what is
#    measured is the matching), and with a pattern that leaves out the random data (most
#    of the bytes). Each RUNS times; prints the median wall time of `brr backup --wait` and
#    the median CPU time of the worker during it.
#
#   scripts/bench-sources.sh           (or: make bench-sources)
#   WRITES=30 RUNS=3 BENCH_DIR=/tmp/brr-bench NO_BUILD=1 ...
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_DIR="${BENCH_DIR:-/tmp/brr-bench}"
WRITES="${WRITES:-30}"
RUNS="${RUNS:-3}"
corpus="$BENCH_DIR/corpus"
work="$(mktemp -d "$BENCH_DIR/sources.XXXXXX" 2>/dev/null || { mkdir -p "$BENCH_DIR" && mktemp -d "$BENCH_DIR/sources.XXXXXX"; })"

worker_pid=""
cleanup() {
	local rc=$?
	end_process "$worker_pid"
	[[ $rc -ne 0 ]] && echo "bench-sources FAILED (exit $rc); logs in $work" >&2
	[[ $rc -eq 0 ]] && rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need_cmd jq "apt-get install -y jq"
need_cmd curl
build_binaries

# start_worker DATA_DIR [CONFIG] starts a worker with a fresh data dir; sets worker_pid
# and nats.
nats=""
start_worker() {
	local data="$1" config="${2:-}" nats_port="" http_port=""
	take_ports nats_port http_port
	nats="nats://127.0.0.1:$nats_port"
	local args=(--data-dir "$data" --listen "127.0.0.1:$nats_port" --http "127.0.0.1:$http_port" --log-format json)
	[[ -n "$config" ]] && args+=(--config "$config")
	"$WORKER" "${args[@]}" >"$data.log" 2>&1 &
	worker_pid=$!
	wait_ready "http://127.0.0.1:$http_port/readyz" "$worker_pid" 120 "$data.log"
}
stop_worker() {
	stop_process "$worker_pid" 60 || true
	worker_pid=""
}

# cpu_ticks prints the user + system clock ticks of pid $1 so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"

# stats prints min / median / p95 / max of the numbers on stdin, in seconds.
stats() {
	sort -g | awk '{v[NR] = $1} END {
		if (NR == 0) { print "no data"; exit }
		p95 = int(0.95 * NR + 0.999); if (p95 > NR) p95 = NR; if (p95 < 1) p95 = 1
		med = (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)
		printf "n=%d  min %.2fs  median %.2fs  p95 %.2fs  max %.2fs\n", NR, v[1], med, v[p95], v[NR]
	}'
}
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }

echo "bench-sources $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, brr $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev)"
echo "load before: $(uptime)"

# ---- 1. watch RPO --------------------------------------------------------------------
step "watch RPO: a worker watching a source {delay: 2s, max_delay: 10s}, $WRITES writes at random times"
src="$work/watched"
mkdir -p "$src"
cat >"$work/watch.yaml" <<EOF
sources:
  watched: {path: $src, watch: {delay: 2s, max_delay: 10s}}
EOF
start_worker "$work/watch-data" "$work/watch.yaml"
# The worker backs the source up once when it takes the watch: wait for that snapshot
# (of the empty tree) so that the writes below start from quiet.
for _ in {1..120}; do
	n="$("$BRR" --nats "$nats" snapshots --source "$src" --json 2>/dev/null | jq -s 'flatten | length' 2>/dev/null || echo 0)"
	[[ "$n" -ge 1 ]] && break
	sleep 1
done
[[ "$n" -ge 1 ]] || die "no snapshot of the watched source within 120s of the worker's start"
sleep 3
: >"$work/writes"
for ((i = 1; i <= WRITES; i++)); do
	sleep "$(awk -v r="$RANDOM" 'BEGIN {printf "%.2f", r / 32767 * 6}')"
	printf 'write %d\n' "$i" >"$src/f$(printf %04d "$i")"
	printf '%d %s\n' "$i" "$(date +%s.%N)" >>"$work/writes"
done
# Wait for the snapshot that holds the last write: max_delay + the backup.
for _ in {1..120}; do
	max_files="$("$BRR" --nats "$nats" snapshots --source "$src" --json | jq -s 'flatten | map(.files) | max // 0')"
	[[ "$max_files" -ge "$WRITES" ]] && break
	sleep 1
done
[[ "$max_files" -ge "$WRITES" ]] || die "no snapshot holds all $WRITES writes 120s after the last"
"$BRR" --nats "$nats" snapshots --source "$src" --json | jq -s -r 'flatten | .[] | "\(.files) \(.time)"' |
	while read -r files t; do printf '%s %s\n' "$files" "$(date -d "$t" +%s.%N)"; done | sort -k2 -g >"$work/snapshots"
snapshots="$(($(wc -l <"$work/snapshots") - 1))"
# For each write i, the first snapshot (by time) after it with at least i files.
awk 'NR == FNR {files[NR] = $1; at[NR] = $2; n = NR; next}
	{ for (j = 1; j <= n; j++) if (files[j] >= $1 && at[j] >= $2) { printf "%.3f\n", at[j] - $2; break } }' \
	"$work/snapshots" "$work/writes" >"$work/rpo"
[[ "$(wc -l <"$work/rpo")" -eq "$WRITES" ]] || die "found the snapshot of only $(wc -l <"$work/rpo") of $WRITES writes"
watch_stats="$(stats <"$work/rpo")"
note "$WRITES writes, $snapshots snapshots after the first; RPO $watch_stats"
stop_worker

# ---- 2. excludes overhead ------------------------------------------------------------
if [[ ! -f "$corpus.done" ]]; then
	step "build the bench-backup corpus"
	build_corpus "$corpus"
fi
step "excludes: two hard-linked copies of $corpus, one with .brrignore files"
plain="$work/plain" tree="$work/corpus"
cp -al "$corpus" "$plain"
cp -al "$corpus" "$tree"
# Patterns that match (almost) nothing in the corpus: the cost measured is matching.
patterns=(node_modules/ '*.o' '*.pyc' __pycache__/ .cache/ '**/*.tmp' '!keep.tmp' '*.log' /build/ .DS_Store
	'**/target/**' '*.swp' '*~' '.idea/' '.vscode/' 'coverage/' '*.class' '.next/' '/tmp/' '**/.terraform/**')
ignores=0
while IFS= read -r -d '' dir; do
	printf '%s\n' '# bench: matches nothing' '*.bak' '*.orig' 'vendor.local/' >"$dir/.brrignore"
	ignores=$((ignores + 1))
done < <(find "$tree/go" -mindepth 1 -maxdepth 2 -type d -print0)
tree_bytes="$(du -sbL "$tree" | cut -f1)"
tree_files="$(find "$tree" -type f | wc -l)"
tree_dirs="$(find "$tree" -type d | wc -l)"
note "$(human "$tree_bytes"), $tree_files files in $tree_dirs dirs; ${#patterns[@]} patterns; $ignores .brrignore files"
find "$tree" -type f -print0 | xargs -0 cat >/dev/null # warm, as every run is

# backup_run NAME TREE ARGS... : a first backup of TREE into a fresh repo; appends "wall
# cpu files bytes files_excluded bytes_excluded" to $work/NAME.
backup_run() {
	local name="$1" dir="$2" t0 t1 c0 c1 data
	shift 2
	data="$work/ex-$name-$RANDOM"
	start_worker "$data"
	c0="$(cpu_ticks "$worker_pid")"
	t0="$(now)"
	"$BRR" --nats "$nats" backup "$dir" --wait --json "$@" >"$data.result" 2>&1 || {
		tail -n 20 "$data.result" >&2
		die "backup ($name) failed"
	}
	t1="$(now)"
	c1="$(cpu_ticks "$worker_pid")"
	stop_worker
	printf '%s %s %s\n' "$(elapsed "$t0" "$t1")" "$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz}')" \
		"$(jq -r '(.result.backup // .backup // .) | "\(.files) \(.bytes) \(.files_excluded // 0) \(.bytes_excluded // 0) \(.dirs_excluded // 0)"' "$data.result" 2>/dev/null | tail -1)" >>"$work/$name"
	rm -rf "$data"
}
ex_args=()
for p in "${patterns[@]}"; do ex_args+=(--exclude "$p"); done
: >"$work/none" && : >"$work/patterns" && : >"$work/drop"
for ((r = 1; r <= RUNS; r++)); do
	step "excludes: run $r of $RUNS (none; ${#patterns[@]} patterns + .brrignore; + /data/)"
	backup_run none "$plain"
	backup_run patterns "$tree" "${ex_args[@]}"
	backup_run drop "$tree" "${ex_args[@]}" --exclude '/data/'
done
report() {
	local name="$1" label="$2"
	printf '%-46s | %7ss | %7ss | %s\n' "$label" "$(cut -d' ' -f1 "$work/$name" | median)" "$(cut -d' ' -f2 "$work/$name" | median)" \
		"$(tail -1 "$work/$name" | awk '{printf "%d files %.1f MiB stored; excluded %d files %.1f MiB, %d dirs", $3, $4 / 1048576, $5, $6 / 1048576, $7}')"
	printf '%-46s | runs: wall %s; cpu %s\n' "" "$(cut -d' ' -f1 "$work/$name" | tr '\n' ' ')" "$(cut -d' ' -f2 "$work/$name" | tr '\n' ' ')"
}
echo
echo "bench-sources $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, brr $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev)"
echo "load after: $(uptime)"
echo
echo "watch RPO, {delay: 2s, max_delay: 10s}, $WRITES writes at random gaps of 0-6 s, file repo:"
echo "  $watch_stats  ($snapshots snapshots)"
echo
echo "excludes, first backup of the bench-backup corpus (+ $ignores .brrignore files), median of $RUNS, warm page cache:"
printf '%-46s | %8s | %8s | %s\n' "run" "wall" "cpu" "what the backup stored"
report none "no excludes, no .brrignore"
report patterns "${#patterns[@]} patterns + .brrignore, (almost) nothing out"
report drop "${#patterns[@]} patterns + /data/ (the random data)"
echo "wall: the whole 'brr backup --wait'; cpu: the worker's user+system time during it."
echo "Each run: a fresh worker and repo. The two trees are hard-linked copies of one corpus."
