#!/usr/bin/env bash
# Pipeline benchmark: how many jobs a second one worker takes through the whole pipeline
# (publish → BRR_JOBS → consumer → state → events → ack), against what the same NATS
# server does with plain JetStream messages (`nats bench`), measured in the same run.
#
#   1. nats bench: async-publish 256-byte messages to a stream of its own, then consume
#      them from a durable consumer with explicit acks: the ceiling.
#   2. brr bench --jobs 20000 --publishers 4: ping jobs end to end, jobs/s, and the
#      worker's CPU time per job (/proc/PID/stat, embedded server included), the cores
#      it used, and its state database's commits during the burst (from /metrics):
#      commits per job, writes per commit, commit and fsync latency, how long a job's
#      record waited for its commit, and how busy the commit loop was.
#   3. brr bench --jobs 5000 --rate 1000: latency publish → started, p50/p99.
#
#   scripts/bench-pipeline.sh            (or: make bench-pipeline)
#   JOBS=20000 MSGS=200000 scripts/bench-pipeline.sh
#   NO_BUILD=1 ...  use bin/ as it is
#   DIRTY_MB=1024 ...  write that many MiB to a file in $BENCH_DIR (no sync) just before
#                   each brr bench, as bench-backup leaves the disk, and remove it after
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_DIR="${BENCH_DIR:-/tmp/brr-bench-pipeline}"
JOBS="${JOBS:-20000}"
PUBLISHERS="${PUBLISHERS:-4}"
LAT_JOBS="${LAT_JOBS:-5000}"
LAT_RATE="${LAT_RATE:-1000}"
MSGS="${MSGS:-200000}"
DIRTY_MB="${DIRTY_MB:-0}"
mkdir -p "$BENCH_DIR"

worker_pid=""
cleanup() {
	local rc=$?
	end_process "$worker_pid"
	[[ $rc -ne 0 ]] && echo "bench-pipeline FAILED (exit $rc); logs in $BENCH_DIR" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "tools"
need_cmd curl
ensure_natscli
build_binaries

data="$BENCH_DIR/data"
rm -rf "$data"
nats_port="" http_port=""
take_ports nats_port http_port
nats="nats://127.0.0.1:$nats_port"
step "start brr-worker (embedded NATS on 127.0.0.1:$nats_port, fresh data dir $data)"
"$WORKER" --data-dir "$data" --listen "127.0.0.1:$nats_port" --http "127.0.0.1:$http_port" \
	--log-format json --log-level warn >"$BENCH_DIR/worker.log" 2>&1 &
worker_pid=$!
wait_ready "http://127.0.0.1:$http_port/readyz" "$worker_pid" 60 "$BENCH_DIR/worker.log"

# nats_rate FILE prints the msgs/sec of the last "stats:" line of a nats bench output.
nats_rate() {
	grep -E 'stats: [0-9,]+ msgs/sec' "$1" | tail -1 | sed -E 's/.*stats: ([0-9,]+) msgs\/sec.*/\1/' | tr -d ,
}

step "nats bench: async publish $MSGS x 256 B into stream BRRBENCH (file store)"
"$NATSCLI" -s "$nats" bench js pub async brrbench.msgs --stream BRRBENCH --create --storage file \
	--size 256B --msgs "$MSGS" --purge --no-progress >"$BENCH_DIR/nats-pub.log" 2>&1 ||
	{ cat "$BENCH_DIR/nats-pub.log" >&2; die "nats bench js pub failed"; }
nats_pub="$(nats_rate "$BENCH_DIR/nats-pub.log")"
note "$nats_pub msgs/s"

step "nats bench: consume them from a durable consumer with explicit acks"
"$NATSCLI" -s "$nats" bench js consume --stream BRRBENCH --acks explicit \
	--size 256B --msgs "$MSGS" --no-progress >"$BENCH_DIR/nats-consume.log" 2>&1 ||
	{ cat "$BENCH_DIR/nats-consume.log" >&2; die "nats bench js consume failed"; }
nats_consume="$(nats_rate "$BENCH_DIR/nats-consume.log")"
note "$nats_consume msgs/s"
"$NATSCLI" -s "$nats" stream rm BRRBENCH -f >/dev/null 2>&1 || note "could not remove stream BRRBENCH"

# jget FILE WHAT prints a figure from the last JSON line of `brr bench --json`: WHAT is
# jobs_per_sec, or p50_ms / p99_ms / max_ms of publish_to_started.
jget() {
	local line obj v
	line="$(grep '^{' "$1" | tail -1)"
	[[ -n "$line" ]] || die "no JSON object in $1"
	obj="$line"
	if [[ "$2" != jobs_per_sec ]]; then
		obj="$(grep -o '"publish_to_started":{[^}]*}' <<<"$line")" || die "no publish_to_started in $1: $line"
	fi
	v="$(grep -oE "\"$2\":-?[0-9.eE+-]+" <<<"$obj" | head -1 | cut -d: -f2)"
	[[ -n "$v" ]] || die "no $2 in $1: $line"
	awk -v v="$v" 'BEGIN {printf "%.2f", v}'
}

# state_metrics FILE saves the worker's state database metrics (brr_state_*) to FILE.
state_metrics() {
	curl -fsS --max-time 10 "http://127.0.0.1:$http_port/metrics" | grep '^brr_state_' >"$1" ||
		die "read brr_state_* from the worker's /metrics"
}

# state_report BEFORE AFTER JOBS SECONDS prints what the state database's commits did
# between two state_metrics files: commits per job, writes per commit, commit and disk
# latency (p50/p99 interpolated within the histogram's buckets), the wait of a write for
# its commit, and the share of SECONDS the commit loop was committing.
state_report() {
	awk -v jobs="$3" -v secs="$4" '
	function q(name, p,   i, n, target, prev, prevb, c, b) {
		n = d[name "_count"]; if (n <= 0) return 0
		target = p * n; prev = 0; prevb = 0
		for (i = 1; i <= nb[name]; i++) {
			b = bound[name, i]; c = d[name "_bucket{le=\"" b "\"}"]
			if (c >= target) {
				if (b == "+Inf") return prevb * 1000
				return (prevb + (b - prevb) * (c > prev ? (target - prev) / (c - prev) : 1)) * 1000
			}
			prev = c; prevb = b
		}
		return prevb * 1000
	}
	FNR == NR { before[$1] = $2; next }
	{
		d[$1] = $2 - before[$1]
		if (match($1, /_bucket\{le="[^"]+"\}/)) {
			name = substr($1, 1, RSTART - 1); b = substr($1, RSTART + 12, RLENGTH - 14)
			bound[name, ++nb[name]] = b
		}
	}
	END {
		c = d["brr_state_commits_total"]; w = d["brr_state_writes_total"]
		if (c <= 0) { print "state database: no commits during the run"; exit }
		printf "state commits: %d (%.3f per job), %.1f writes per commit (p99 %.0f)\n", c, c / jobs, w / c, q("brr_state_writes_per_commit", 0.99) / 1000
		printf "commit latency p50 / p99 / mean: %.2f / %.2f / %.2f ms; of which disk (pwrite + 2 fdatasync) %.2f / %.2f / %.2f ms\n",
			q("brr_state_commit_seconds", 0.5), q("brr_state_commit_seconds", 0.99), d["brr_state_commit_seconds_sum"] / c * 1000,
			q("brr_state_commit_disk_seconds", 0.5), q("brr_state_commit_disk_seconds", 0.99), d["brr_state_commit_disk_seconds_sum"] / c * 1000
		printf "a write waits for its commit p50 / p99: %.2f / %.2f ms; commit loop busy %.0f%% of the %.2f s run (disk %.0f%%)\n",
			q("brr_state_write_wait_seconds", 0.5), q("brr_state_write_wait_seconds", 0.99),
			(secs > 0 ? d["brr_state_commit_seconds_sum"] / secs * 100 : 0), secs, (secs > 0 ? d["brr_state_commit_disk_seconds_sum"] / secs * 100 : 0)
	}' "$1" "$2"
}

# dirty_start writes DIRTY_MB MiB to a file without syncing it, so that the run that
# follows finds the disk with that much to write back (as after bench-backup); dirty_end
# removes it. /proc/meminfo's Dirty and Writeback are printed either way.
dirty_file="$BENCH_DIR/dirty.bin"
dirty_start() {
	if [[ "$DIRTY_MB" -gt 0 ]]; then
		head -c "$((DIRTY_MB << 20))" /dev/urandom >"$dirty_file"
	fi
	note "page cache: $(awk '/^(Dirty|Writeback):/ {printf "%s %d MiB  ", $1, $2 / 1024}' /proc/meminfo)(DIRTY_MB=$DIRTY_MB)"
}
dirty_end() { rm -f "$dirty_file"; }

# cpu_ticks PID prints the user + system CPU time of a process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

step "brr bench --jobs $JOBS --publishers $PUBLISHERS (ping jobs, end to end)"
dirty_start
state_metrics "$BENCH_DIR/state-0.prom"
ticks0="$(cpu_ticks "$worker_pid")"
t0="$(now)"
"$BRR" --nats "$nats" bench --jobs "$JOBS" --publishers "$PUBLISHERS" --json >"$BENCH_DIR/brr-throughput.json" 2>"$BENCH_DIR/brr-throughput.err" ||
	{ cat "$BENCH_DIR/brr-throughput.err" >&2; die "brr bench failed"; }
t1="$(now)"
ticks1="$(cpu_ticks "$worker_pid")"
state_metrics "$BENCH_DIR/state-1.prom"
dirty_end
cat "$BENCH_DIR/brr-throughput.json"
brr_rate="$(jget "$BENCH_DIR/brr-throughput.json" jobs_per_sec)"
# The worker's CPU per job (embedded server included): the figure that a loaded machine
# does not distort much, and what bounds jobs/s on an idle one (cores / CPU per job).
cpu_us="$(awk -v t=$((ticks1 - ticks0)) -v hz="$(getconf CLK_TCK)" -v n="$JOBS" 'BEGIN {printf "%.0f", t / hz / n * 1e6}')"
burst_s="$(elapsed "$t0" "$t1")"
cores="$(awk -v t=$((ticks1 - ticks0)) -v hz="$(getconf CLK_TCK)" -v s="$burst_s" 'BEGIN {printf "%.2f", (s > 0 ? t / hz / s : 0)}')"
note "worker CPU: $cpu_us µs per job, $cores cores over the $burst_s s of brr bench"
burst_state="$(state_report "$BENCH_DIR/state-0.prom" "$BENCH_DIR/state-1.prom" "$JOBS" "$burst_s")"
note "${burst_state//$'\n'/$'\n'    }"

step "brr bench --jobs $LAT_JOBS --rate $LAT_RATE (latency publish → started)"
dirty_start
state_metrics "$BENCH_DIR/state-2.prom"
t0="$(now)"
"$BRR" --nats "$nats" bench --jobs "$LAT_JOBS" --rate "$LAT_RATE" --json >"$BENCH_DIR/brr-latency.json" 2>"$BENCH_DIR/brr-latency.err" ||
	{ cat "$BENCH_DIR/brr-latency.err" >&2; die "brr bench --rate failed"; }
t1="$(now)"
state_metrics "$BENCH_DIR/state-3.prom"
dirty_end
cat "$BENCH_DIR/brr-latency.json"
lat_state="$(state_report "$BENCH_DIR/state-2.prom" "$BENCH_DIR/state-3.prom" "$LAT_JOBS" "$(elapsed "$t0" "$t1")")"
note "${lat_state//$'\n'/$'\n'    }"
p50="$(jget "$BENCH_DIR/brr-latency.json" p50_ms)"
p99="$(jget "$BENCH_DIR/brr-latency.json" p99_ms)"

step "stop the worker"
rc=0
stop_process "$worker_pid" 60 || rc=$?
worker_pid=""
[[ $rc -eq 0 ]] || note "brr-worker exited $rc after SIGTERM (want 0)"

verdict() { awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN {ok = (op == ">=" ? r >= t : r < t); print (ok ? "met" : "MISSED")}'; }
ratio="$(awk -v a="$brr_rate" -v b="$nats_consume" 'BEGIN {printf "%.3g", (b > 0 ? a / b : 0)}')"

echo
echo "bench-pipeline $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, brr $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev), natscli $NATSCLI_VERSION, one worker, embedded server"
printf '%-28s | %-16s | %-7s | %-26s\n' "nats bench consume msgs/s" "brr jobs/s" "ratio" "p50 / p99 publish→started"
printf -- '%.0s-' {1..86}
echo
printf '%-28s | %-16s | %-7s | %-26s\n' "$nats_consume" "$brr_rate" "$ratio" "$p50 / $p99 ms at $LAT_RATE/s"
echo
echo "nats bench async publish: $nats_pub msgs/s (256 B, file store, explicit acks on consume)"
echo "worker CPU per job (embedded NATS included): $cpu_us µs, so at most $(awk -v u="$cpu_us" -v n="$(nproc)" 'BEGIN {printf "%.0f", (u > 0 ? n * 1e6 / u : 0)}') jobs/s on $(nproc) idle cores for the worker alone; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "burst: worker used $cores cores; ${burst_state//$'\n'/$'\n'burst: }"
echo "rate run: ${lat_state//$'\n'/$'\n'rate run: }"
echo "target: >= 10,000 jobs/s: $(verdict "$brr_rate" '>=' 10000); p99 publish→started <= 5 ms at $LAT_RATE/s: $(verdict "$p99" '<' 5.0001)"
echo "brr jobs/s: $JOBS ping jobs, $PUBLISHERS publishers, first publish → last succeeded. Raw output: $BENCH_DIR/*.json, *.log"
