#!/usr/bin/env bash
# Scale benchmark: does a pool get faster with more workers, and what do R3 streams on a
# 3-node cluster cost the pipeline? Two parts, measured in the same run:
#
#   1. Scaling. One nats-server (file store); 1, 2 and 4 brr-worker processes in pool
#      "default", each with concurrency $CONCURRENCY, run $JOBS_PER_WORKER ping jobs per
#      worker, each of which waits $DELAY_MS ms: an I/O-bound job that keeps a worker's
#      slots busy but not its CPU. jobs/s from the first job started to the last one
#      succeeded (event times), the factor against 1 worker, and the share of the ideal
#      (workers x concurrency x 1000 / delay jobs/s). Target: >= 3.6x at 4 workers.
#   2. Pipeline on R1 and R3. `brr bench` (ping jobs without delay, one worker) and
#      `nats bench` (async publish, then durable consume with explicit acks) on a single
#      server with R1 streams, then on a 3-node cluster with R3 streams.
#
#   scripts/bench-scale.sh            (or: make bench-scale)
#   DELAY_MS=50 CONCURRENCY=4 JOBS_PER_WORKER=400 PIPE_JOBS=5000 MSGS=100000 scripts/bench-scale.sh
#   NO_BUILD=1 ...  use bin/ as it is
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_DIR="${BENCH_DIR:-/tmp/brr-bench-scale}"
DELAY_MS="${DELAY_MS:-100}"
CONCURRENCY="${CONCURRENCY:-4}"
JOBS_PER_WORKER="${JOBS_PER_WORKER:-400}"
WORKER_COUNTS="${WORKER_COUNTS:-1 2 4}"
PIPE_JOBS="${PIPE_JOBS:-5000}"
MSGS="${MSGS:-100000}"
mkdir -p "$BENCH_DIR"

pids=()
stop_all() {
	local pid
	for pid in "${pids[@]}"; do
		stop_process "$pid" 40 >/dev/null 2>&1 || true
	done
	pids=()
}
cleanup() {
	local rc=$?
	stop_all
	[[ $rc -ne 0 ]] && echo "bench-scale FAILED (exit $rc); logs in $BENCH_DIR" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "tools"
need_cmd curl
ensure_natscli
build_binaries
server="$(command -v nats-server || true)"
if [[ -z "$server" ]]; then
	server="$BENCH_DIR/nats-server"
	[[ -x "$server" ]] || (cd "$ROOT" && go build -o "$server" github.com/nats-io/nats-server/v2) ||
		die "build nats-server failed"
fi
note "$("$server" --version)"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
note "load average before: $load_before ($(nproc) cores)"

# start_servers N: starts N nats-servers with JetStream (a cluster when N > 1) on fresh
# store dirs, waits until JetStream answers, and sets $urls to their client URLs.
start_servers() {
	local n="$1" i routes="" cport sport
	local -a cports=() sports=()
	for ((i = 1; i <= n; i++)); do
		take_ports sport cport
		sports+=("$sport")
		cports+=("$cport")
		routes+="${routes:+,}nats://127.0.0.1:$cport"
	done
	urls=""
	for ((i = 1; i <= n; i++)); do
		local dir="$BENCH_DIR/nats-$n-$i" args=()
		rm -rf "$dir"
		args=(-js -sd "$dir" -a 127.0.0.1 -p "${sports[i - 1]}" -n "n$i")
		if ((n > 1)); then
			args+=(--cluster_name brr-bench --cluster "nats://127.0.0.1:${cports[i - 1]}" --routes "$routes")
		fi
		"$server" "${args[@]}" >"$BENCH_DIR/nats-$n-$i.log" 2>&1 &
		pids+=($!)
		urls+="${urls:+,}nats://127.0.0.1:${sports[i - 1]}"
	done
	for ((i = 0; i < 300; i++)); do
		"$NATSCLI" -s "$urls" account info >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	die "JetStream on $urls not ready after 60s (see $BENCH_DIR/nats-$n-*.log)"
}

# start_worker NAME CONFIG: starts a brr-worker on $urls with the YAML CONFIG and waits
# until it is ready. A free port can be taken by an outgoing connection between the
# check and the bind (the cluster's routes make many): then it tries another.
start_worker() {
	local name="$1" cfg="$BENCH_DIR/$1.yaml" http_port pid attempt i
	printf '%s\n' "$2" >"$cfg"
	for ((attempt = 1; attempt <= 3; attempt++)); do
		take_ports http_port
		rm -rf "${BENCH_DIR:?}/${name:?}"
		BRR_CONCURRENCY="$CONCURRENCY" "$WORKER" --config "$cfg" --data-dir "$BENCH_DIR/$name" --nats "$urls" \
			--http "127.0.0.1:$http_port" --log-format json --log-level warn >"$BENCH_DIR/$name.log" 2>&1 &
		pid=$!
		pids+=("$pid")
		for ((i = 0; i < 600; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$http_port/readyz" 2>/dev/null; then
				return 0
			fi
			sleep 0.2
		done
		wait "$pid" 2>/dev/null || true
		grep -q 'address already in use' "$BENCH_DIR/$name.log" || break
		note "port $http_port was taken meanwhile: trying another"
	done
	tail -n 30 "$BENCH_DIR/$name.log" >&2
	die "brr-worker $name did not get ready (log: $BENCH_DIR/$name.log)"
}

# stream_msgs NAME: the number of messages in stream NAME.
stream_msgs() {
	"$NATSCLI" -s "$urls" stream info "$1" --json 2>/dev/null |
		tr -d ' \n' | grep -o '"state":{"messages":[0-9]*' | grep -o '[0-9]*$'
}

# epoch TIME: an RFC 3339 time as seconds since 1970, with fractions.
epoch() { date -u -d "$1" +%s.%N; }

# ---- 1. scaling ------------------------------------------------------------------------
step "scaling: ping jobs of $DELAY_MS ms, concurrency $CONCURRENCY per worker, $JOBS_PER_WORKER jobs per worker"
declare -A rate
for n in $WORKER_COUNTS; do
	start_servers 1 # a fresh server for each run: it starts from empty streams
	for ((i = 1; i <= n; i++)); do
		start_worker "scale-$n-$i" ""
	done
	jobs=$((n * JOBS_PER_WORKER))
	run="scale$n-$(date +%s)"
	"$NATSCLI" -s "$urls" pub brr.jobs.default.ping --count "$jobs" -q \
		"{\"v\":1,\"id\":\"$run-{{Count}}\",\"kind\":\"ping\",\"pool\":\"default\",\"created\":\"{{TimeStamp}}\",\"args\":{\"delay_ms\":$DELAY_MS}}" \
		>"$BENCH_DIR/pub-$n.log" 2>&1 || { cat "$BENCH_DIR/pub-$n.log" >&2; die "publish $jobs ping jobs failed"; }
	limit=$((jobs * DELAY_MS / 1000 + 120))
	for ((i = 0; i < limit * 5; i++)); do
		[[ "$(stream_msgs BRR_JOBS)" == 0 ]] && break
		sleep 0.2
	done
	[[ "$(stream_msgs BRR_JOBS)" == 0 ]] || die "$n workers: jobs still queued after ${limit}s"
	[[ "$(stream_msgs BRR_DLQ)" == 0 ]] || die "$n workers: jobs in the dead-letter stream (brr dlq ls)"
	sleep 1 # the last events leave the outboxes
	"$BRR" --nats "$urls" --json events --kind job --since 30m >"$BENCH_DIR/events-$n.json" ||
		die "brr events failed"
	ours="$(grep -F "\"job_id\":\"$run-" "$BENCH_DIR/events-$n.json" || true)"
	done_jobs="$(grep -c '"status":"succeeded"' <<<"$ours" || true)"
	[[ "$done_jobs" == "$jobs" ]] || die "$n workers: $done_jobs of $jobs jobs succeeded"
	first="$(grep '"status":"started"' <<<"$ours" | grep -o '"time":"[^"]*"' | cut -d'"' -f4 | sort | sed -n 1p)"
	last="$(grep '"status":"succeeded"' <<<"$ours" | grep -o '"time":"[^"]*"' | cut -d'"' -f4 | sort | tail -1)"
	secs="$(awk -v a="$(epoch "$first")" -v b="$(epoch "$last")" 'BEGIN {printf "%.3f", b - a}')"
	rate[$n]="$(awk -v j="$jobs" -v s="$secs" 'BEGIN {printf "%.1f", j / s}')"
	note "$n worker(s): $jobs jobs in ${secs}s: ${rate[$n]} jobs/s"
	stop_all
done

# ---- 2. pipeline on R1 and R3 ----------------------------------------------------------
# nats_rate FILE prints the msgs/sec of the last "stats:" line of a nats bench output.
nats_rate() {
	grep -E 'stats: [0-9,]+ msgs/sec' "$1" | tail -1 | sed -E 's/.*stats: ([0-9,]+) msgs\/sec.*/\1/' | tr -d ,
}
jobs_per_sec() {
	grep '^{' "$1" | tail -1 | grep -oE '"jobs_per_sec":[0-9.eE+-]+' | cut -d: -f2 | awk '{printf "%.0f", $1}'
}
declare -A npub ncons brate
for r in 1 3; do
	step "pipeline: $r-server(s), R$r streams: nats bench ($MSGS x 256 B), then brr bench --jobs $PIPE_JOBS (one worker)"
	start_servers "$r"
	"$NATSCLI" -s "$urls" bench js pub async brrbench.msgs --stream BRRBENCH --create --storage file --replicas "$r" \
		--size 256B --msgs "$MSGS" --purge --no-progress >"$BENCH_DIR/nats-pub-r$r.log" 2>&1 ||
		{ cat "$BENCH_DIR/nats-pub-r$r.log" >&2; die "nats bench js pub failed"; }
	"$NATSCLI" -s "$urls" bench js consume --stream BRRBENCH --acks explicit \
		--size 256B --msgs "$MSGS" --no-progress >"$BENCH_DIR/nats-consume-r$r.log" 2>&1 ||
		{ cat "$BENCH_DIR/nats-consume-r$r.log" >&2; die "nats bench js consume failed"; }
	npub[$r]="$(nats_rate "$BENCH_DIR/nats-pub-r$r.log")"
	ncons[$r]="$(nats_rate "$BENCH_DIR/nats-consume-r$r.log")"
	"$NATSCLI" -s "$urls" stream rm BRRBENCH -f >/dev/null 2>&1 || note "could not remove stream BRRBENCH"
	start_worker "pipe-r$r" "streams: {replicas: $r}"
	"$BRR" --nats "$urls" bench --jobs "$PIPE_JOBS" --publishers 4 --json >"$BENCH_DIR/brr-bench-r$r.json" 2>"$BENCH_DIR/brr-bench-r$r.err" ||
		{ cat "$BENCH_DIR/brr-bench-r$r.err" >&2; die "brr bench failed"; }
	brate[$r]="$(jobs_per_sec "$BENCH_DIR/brr-bench-r$r.json")"
	note "nats bench publish ${npub[$r]} msgs/s, consume ${ncons[$r]} msgs/s; brr ${brate[$r]} jobs/s"
	stop_all
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- report ----------------------------------------------------------------------------
verdict() { awk -v r="$1" -v t="$2" 'BEGIN {print (r >= t ? "met" : "MISSED")}'; }
echo
echo "bench-scale $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, brr $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev), $("$server" --version), natscli $NATSCLI_VERSION"
echo "load average before / after: $load_before / $load_after"
echo
echo "scaling: ping jobs of $DELAY_MS ms, concurrency $CONCURRENCY per worker, $JOBS_PER_WORKER jobs per worker, one nats-server"
printf '%-8s | %-6s | %-10s | %-8s | %-12s | %-10s\n' workers jobs "jobs/s" factor "ideal jobs/s" "of ideal"
printf -- '%.0s-' {1..70}
echo
base="${rate[1]:-}"
for n in $WORKER_COUNTS; do
	ideal=$((n * CONCURRENCY * 1000 / DELAY_MS))
	factor="$(awk -v r="${rate[$n]}" -v b="$base" 'BEGIN {printf (b > 0 ? "%.2fx" : "-"), r / b}')"
	share="$(awk -v r="${rate[$n]}" -v i="$ideal" 'BEGIN {printf "%.0f%%", 100 * r / i}')"
	printf '%-8s | %-6s | %-10s | %-8s | %-12s | %-10s\n' "$n" "$((n * JOBS_PER_WORKER))" "${rate[$n]}" "$factor" "$ideal" "$share"
done
if [[ -n "$base" && -n "${rate[4]:-}" ]]; then
	f4="$(awk -v r="${rate[4]}" -v b="$base" 'BEGIN {printf "%.2f", r / b}')"
	echo "target: >= 3.6x at 4 workers: ${f4}x, $(verdict "$f4" 3.6)"
fi
echo
echo "pipeline: one worker, brr bench --jobs $PIPE_JOBS --publishers 4; nats bench $MSGS x 256 B, file store"
printf '%-24s | %-20s | %-20s | %-10s | %-6s\n' setup "nats pub async msg/s" "nats consume msg/s" "brr jobs/s" ratio
printf -- '%.0s-' {1..92}
echo
for r in 1 3; do
	setup="1 server, R1 streams"
	((r == 3)) && setup="3-node cluster, R3"
	ratio="$(awk -v a="${brate[$r]}" -v b="${ncons[$r]}" 'BEGIN {printf "%.3g", (b > 0 ? a / b : 0)}')"
	printf '%-24s | %-20s | %-20s | %-10s | %-6s\n' "$setup" "${npub[$r]}" "${ncons[$r]}" "${brate[$r]}" "$ratio"
done
echo "R3 / R1: brr $(awk -v a="${brate[3]}" -v b="${brate[1]}" 'BEGIN {printf "%.2f", a / b}'), nats consume $(awk -v a="${ncons[3]}" -v b="${ncons[1]}" 'BEGIN {printf "%.2f", a / b}'). Raw output: $BENCH_DIR/"
