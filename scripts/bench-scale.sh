#!/usr/bin/env bash
# Scale benchmark: does a pool get faster with more workers on a 3-node cluster with R3
# streams, and what saturates when it does not? Two parts, measured in the same run:
#
#   1. Scaling. A fresh 3-node nats-server cluster (file store, routes on loopback) for
#      each size; 1, 4, 8 and 16 brr-worker processes in pool "default" with
#      `streams: {replicas: 3}`, each with concurrency $CONCURRENCY, run $JOBS_PER_WORKER
#      ping jobs per worker, each of which waits $DELAY_MS ms: an I/O-bound job that keeps
#      a worker's slots busy but not its CPU. jobs/s from the first job started to the
#      last one succeeded (event times), the speed-up against 1 worker, and the share of
#      the ideal (workers x concurrency x 1000 / delay jobs/s). Targets: >= 3.6x at 4
#      workers, >= 15x at 16. Measured beside each size, to name what saturates:
#        - the pool's slots: brr_jobs_running summed over the workers' /metrics, sampled
#          every $SAMPLE_SECS s (a full pool runs workers x concurrency jobs);
#        - the durable consumer: num_ack_pending, num_waiting (pull requests the server
#          holds) and num_pending (jobs not yet delivered), from `nats consumer info`;
#        - the CPU: cores used by the 3 nats-servers and by the workers (utime + stime
#          from /proc/PID/stat) and the machine's busy share (/proc/stat, every process
#          of the machine), over the run and, before it, over $IDLE_SECS s of idling.
#   2. Pipeline on R1 and R3. `brr bench` (ping jobs without delay, one worker) and
#      `nats bench` (async publish, then durable consume with explicit acks) on a single
#      server with R1 streams, then on a 3-node cluster with R3 streams. PIPELINE=0 skips it.
#
#   scripts/bench-scale.sh            (or: make bench-scale)
#   DELAY_MS=100 CONCURRENCY=4 JOBS_PER_WORKER=400 WORKER_COUNTS="1 4 8 16" scripts/bench-scale.sh
#   PIPE_JOBS=5000 MSGS=100000 PIPELINE=1 ...   the second part
#   NO_BUILD=1 ...  use bin/ as it is
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_DIR="${BENCH_DIR:-/tmp/brr-bench-scale}"
DELAY_MS="${DELAY_MS:-500}"
CONCURRENCY="${CONCURRENCY:-4}"
JOBS_PER_WORKER="${JOBS_PER_WORKER:-200}"
WORKER_COUNTS="${WORKER_COUNTS:-1 4 8 16}"
SAMPLE_SECS="${SAMPLE_SECS:-1}"
IDLE_SECS="${IDLE_SECS:-5}"
PIPELINE="${PIPELINE:-1}"
PIPE_JOBS="${PIPE_JOBS:-5000}"
MSGS="${MSGS:-100000}"
JOB_COST="${JOB_COST:-1}"
COST_FILES="${COST_FILES:-100}"
COST_FILE_KIB="${COST_FILE_KIB:-1024}"
COST_IDLE_SECS="${COST_IDLE_SECS:-60}"
COST_PINGS="${COST_PINGS:-1000}"
HZ="$(getconf CLK_TCK)"
mkdir -p "$BENCH_DIR"

pids=()    # every process this script started, servers and workers
servers=() # the nats-servers of the current run
workers=() # the brr-workers of the current run, and their HTTP ports
wports=()
sampler=""
stop_all() {
	local pid
	[[ -n "$sampler" ]] && { touch "$BENCH_DIR/sampler.stop"; wait "$sampler" 2>/dev/null || true; sampler=""; }
	# Workers first, all at once (they drain against the servers), then the servers.
	for pid in "${workers[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${workers[@]}" "${pids[@]}"; do
		stop_process "$pid" 40 >/dev/null 2>&1 || true
	done
	pids=()
	servers=()
	workers=()
	wports=()
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
		servers+=($!)
		urls+="${urls:+,}nats://127.0.0.1:${sports[i - 1]}"
	done
	# Ready means a stream of N replicas can be made: a cluster answers account info
	# before it has elected its meta leader.
	for ((i = 0; i < 600; i++)); do
		if "$NATSCLI" -s "$urls" stream add BRRREADY --subjects brrready --replicas "$n" --storage memory \
			--defaults >/dev/null 2>&1; then
			"$NATSCLI" -s "$urls" stream rm BRRREADY -f >/dev/null 2>&1 && return 0
		fi
		sleep 0.2
	done
	die "JetStream on $urls not ready after 120s (see $BENCH_DIR/nats-$n-*.log)"
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
				workers+=("$pid")
				wports+=("$http_port")
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

# ticks PID...: the CPU clock ticks (user + system) the processes have used so far.
ticks() {
	local p sum=0 t
	for p in "$@"; do
		t="$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)"
		sum=$((sum + t))
	done
	echo "$sum"
}
# sched PID...: "on-cpu waiting" nanoseconds of every thread of the processes so far
# (/proc/PID/task/*/schedstat): waiting is time runnable but not given a CPU.
sched() {
	local p
	for p in "$@"; do cat "/proc/$p/task/"*/schedstat 2>/dev/null || true; done |
		awk '{r += $1; w += $2} END {printf "%.0f %.0f\n", r, w}'
}
# wbytes PID...: the bytes the processes have caused to be written to storage so far.
wbytes() {
	local p
	for p in "$@"; do awk '/^write_bytes:/ {print $2}' "/proc/$p/io" 2>/dev/null || true; done | awk '{s += $1} END {printf "%.0f\n", s}'
}
# machine: "busy total" clock ticks of every CPU of the machine so far (/proc/stat).
machine() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }

# cpu_mark sets MARK_S, MARK_W, MARK_BUSY, MARK_TOTAL and MARK_T: the servers' and
# workers' ticks, the machine's, and the time. cpu_since prints, since the mark, the
# servers' cores, the workers' cores and the machine's busy share (%).
cpu_mark() {
	MARK_S="$(ticks "${servers[@]}")"
	MARK_W="$(ticks "${workers[@]}")"
	read -r MARK_BUSY MARK_TOTAL < <(machine)
	read -r MARK_RUN MARK_WAIT < <(sched "${servers[@]}" "${workers[@]}")
	MARK_IO="$(wbytes "${servers[@]}")"
	MARK_T="$(now)"
}
cpu_since() {
	local s w busy total t run wait io
	io="$(wbytes "${servers[@]}")"
	s="$(ticks "${servers[@]}")"
	w="$(ticks "${workers[@]}")"
	read -r busy total < <(machine)
	read -r run wait < <(sched "${servers[@]}" "${workers[@]}")
	t="$(now)"
	awk -v s=$((s - MARK_S)) -v w=$((w - MARK_W)) -v b=$((busy - MARK_BUSY)) -v tt=$((total - MARK_TOTAL)) \
		-v r=$((run - MARK_RUN)) -v q=$((wait - MARK_WAIT)) -v secs="$(elapsed "$MARK_T" "$t")" -v hz="$HZ" -v io=$((io - MARK_IO)) \
		'BEGIN {printf "%.2f %.2f %.0f %.0f %.2f %.0f", s / hz / secs, w / hz / secs, (tt > 0 ? 100 * b / tt : 0), (r + q > 0 ? 100 * q / (r + q) : 0), (s + w) / hz, io}'
}

# start_sampler FILE: every $SAMPLE_SECS s, appends "running ack_pending waiting pending"
# (the workers' running jobs summed, the consumer's counts) to FILE until stop_all.
start_sampler() {
	local out="$1"
	rm -f "$BENCH_DIR/sampler.stop" "$out"
	(
		local -a metrics=()
		for port in "${wports[@]}"; do metrics+=("http://127.0.0.1:$port/metrics"); done
		while [[ ! -e "$BENCH_DIR/sampler.stop" ]]; do
			# One curl for every worker: a process per worker per sample would load the
			# machine it measures.
			run="$(curl -sS --max-time 2 "${metrics[@]}" 2>/dev/null | awk '/^brr_jobs_running / {r += $2} END {print r + 0}')"
			info="$("$NATSCLI" -s "$urls" consumer info BRR_JOBS workers-default --json 2>/dev/null | tr -d ' \n')"
			num() { grep -o "\"$1\":[0-9]*" <<<"$info" | head -1 | grep -o '[0-9]*$'; }
			echo "$run $(num num_ack_pending) $(num num_waiting) $(num num_pending)" >>"$out"
			sleep "$SAMPLE_SECS"
		done
	) &
	sampler=$!
}
# samples FILE: the means of the samples taken while jobs were queued or held (pending
# or ack pending > 0): "running ack_pending waiting pending count".
samples() {
	awk 'NF == 4 && ($2 > 0 || $4 > 0) {n++; r += $1; a += $2; w += $3; p += $4}
		END {if (n) printf "%.1f %.0f %.1f %.0f %d", r / n, a / n, w / n, p / n, n; else print "- - - - 0"}' "$1"
}

# ---- 1. scaling ------------------------------------------------------------------------
step "scaling on a 3-node cluster, R3 streams: ping jobs of $DELAY_MS ms, concurrency $CONCURRENCY per worker, $JOBS_PER_WORKER jobs per worker"
declare -A rate secs_of idle_cpu run_cpu sampled pub_secs per_job timing io_job
for n in $WORKER_COUNTS; do
	start_servers 3 # a fresh cluster for each size: it starts from empty streams
	for ((i = 1; i <= n; i++)); do
		start_worker "scale-$n-$i" "streams: {replicas: 3}"
	done
	cpu_mark
	sleep "$IDLE_SECS"
	idle_cpu[$n]="$(cpu_since)"
	jobs=$((n * JOBS_PER_WORKER))
	run="scale$n-$(date +%s)"
	# Every job is in the stream before the first is delivered: the consumer is paused
	# while one natscli process publishes them, else its pace, not the pool's, would be
	# measured (under load it publishes fewer than 16 workers run).
	"$NATSCLI" -s "$urls" consumer pause BRR_JOBS workers-default 10m --force >/dev/null ||
		die "pause consumer workers-default"
	t0="$(now)"
	"$NATSCLI" -s "$urls" pub brr.jobs.default.ping --count "$jobs" -q \
		"{\"v\":1,\"id\":\"$run-{{Count}}\",\"kind\":\"ping\",\"pool\":\"default\",\"created\":\"{{TimeStamp}}\",\"args\":{\"delay_ms\":$DELAY_MS}}" \
		>"$BENCH_DIR/pub-$n.log" 2>&1 || { cat "$BENCH_DIR/pub-$n.log" >&2; die "publish $jobs ping jobs failed"; }
	for ((i = 0; i < 300; i++)); do
		[[ "$(stream_msgs BRR_JOBS)" -ge "$jobs" ]] && break
		sleep 0.2
	done
	[[ "$(stream_msgs BRR_JOBS)" -ge "$jobs" ]] || die "$n workers: $jobs jobs published, $(stream_msgs BRR_JOBS) in the stream after 60s"
	pub_secs[$n]="$(elapsed "$t0" "$(now)")"
	start_sampler "$BENCH_DIR/samples-$n.txt"
	cpu_mark
	t_resume="$(now)"
	"$NATSCLI" -s "$urls" consumer resume BRR_JOBS workers-default --force >/dev/null ||
		die "resume consumer workers-default"
	limit=$((jobs * DELAY_MS / 1000 + 120))
	for ((i = 0; i < limit * 5; i++)); do
		[[ "$(stream_msgs BRR_JOBS)" == 0 ]] && break
		for pid in "${servers[@]}"; do
			kill -0 "$pid" 2>/dev/null || die "$n workers: a nats-server (pid $pid) is gone (logs: $BENCH_DIR/nats-3-*.log)"
		done
		sleep 0.2
	done
	run_cpu[$n]="$(cpu_since)"
	touch "$BENCH_DIR/sampler.stop"
	wait "$sampler" 2>/dev/null || true
	sampler=""
	sampled[$n]="$(samples "$BENCH_DIR/samples-$n.txt")"
	[[ "$(stream_msgs BRR_JOBS)" == 0 ]] || die "$n workers: jobs still queued after ${limit}s"
	[[ "$(stream_msgs BRR_DLQ)" == 0 ]] || die "$n workers: jobs in the dead-letter stream (brr dlq ls)"
	t_empty="$(now)"
	sleep 1 # the last events leave the outboxes
	# jobs/s from the events: first started (or first succeeded less the delay, for a
	# pipeline that sends no started event for a short job) to last succeeded. Reading
	# ~20,000 events of an R3 stream failed now and then mid-way with "no responders"
	# before the client asked again (606761a; see docs/performance.md): should it still
	# fail, the script's clock is used, from the resume to the poll that found the
	# stream empty.
	since="$(awk -v a="$t_resume" -v b="$(now)" 'BEGIN {printf "%ds", b - a + 30}')"
	how=events
	for ((i = 1; ; i++)); do
		"$BRR" --nats "$urls" --json events --kind job --all --since "$since" >"$BENCH_DIR/events-$n.json" 2>"$BENCH_DIR/events-$n.err" && break
		((i < 5)) || { how=clock; break; }
		sleep 2
	done
	ours="$(grep -F "\"job_id\":\"$run-" "$BENCH_DIR/events-$n.json" || true)"
	done_jobs="$(grep -c '"status":"succeeded"' <<<"$ours" || true)"
	if [[ $how == events ]]; then
		[[ "$done_jobs" == "$jobs" ]] || die "$n workers: $done_jobs of $jobs jobs succeeded"
		first="$(grep '"status":"started"' <<<"$ours" | grep -o '"time":"[^"]*"' | cut -d'"' -f4 | sort | sed -n 1p)"
		last="$(grep '"status":"succeeded"' <<<"$ours" | grep -o '"time":"[^"]*"' | cut -d'"' -f4 | sort | tail -1)"
		if [[ -n "$first" ]]; then
			start="$(epoch "$first")"
		else
			first="$(grep '"status":"succeeded"' <<<"$ours" | grep -o '"time":"[^"]*"' | cut -d'"' -f4 | sort | sed -n 1p)"
			start="$(awk -v t="$(epoch "$first")" -v d="$DELAY_MS" 'BEGIN {printf "%.3f", t - d / 1000}')"
		fi
		secs_of[$n]="$(awk -v a="$start" -v b="$(epoch "$last")" 'BEGIN {printf "%.3f", b - a}')"
	else
		note "reading the events failed ($(tail -c 200 "$BENCH_DIR/events-$n.err")): timing by the script's clock"
		secs_of[$n]="$(elapsed "$t_resume" "$t_empty")"
	fi
	timing[$n]=""
	[[ $how == clock ]] && timing[$n]=" clock"
	rate[$n]="$(awk -v j="$jobs" -v s="${secs_of[$n]}" 'BEGIN {printf "%.1f", j / s}')"
	read -r sc wc busy rq cs io <<<"${run_cpu[$n]}"
	read -r rn ap wt pd _ <<<"${sampled[$n]}"
	per_job[$n]="$(awk -v c="$cs" -v j="$jobs" 'BEGIN {printf "%.2f", 1000 * c / j}')"
	io_job[$n]="$(awk -v b="$io" -v j="$jobs" 'BEGIN {printf "%.1f", b / 1024 / j}')"
	note "$n worker(s): $jobs jobs (published in ${pub_secs[$n]}s) ran in ${secs_of[$n]}s: ${rate[$n]} jobs/s; running $rn of $((n * CONCURRENCY)) slots, ack pending $ap, pulls waiting $wt, undelivered $pd; CPU: servers $sc cores, workers $wc, ${per_job[$n]} ms a job, servers wrote ${io_job[$n]} KiB a job, machine $busy% busy, waiting for a CPU $rq%"
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
if [[ "$PIPELINE" != 0 ]]; then
	for r in 1 3; do
		step "pipeline: $r server(s), R$r streams: nats bench ($MSGS x 256 B), then brr bench --jobs $PIPE_JOBS (one worker)"
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
fi
# ---- 3. what one job stores in each stream -------------------------------------------------
# streams_state FILE: "stream last_seq messages bytes" of every stream on $urls, sorted.
streams_state() {
	local name
	for name in $("$NATSCLI" -s "$urls" stream ls --names 2>/dev/null); do
		"$NATSCLI" -s "$urls" stream info "$name" --json 2>/dev/null | tr -d ' \n' |
			awk -v n="$name" '{
				m = $0; sub(/.*"state":\{/, "", m)
				printf "%s %s %s %s\n", n, f(m, "last_seq"), f(m, "messages"), f(m, "bytes")
			}
			function f(s, k,   r) { if (match(s, "\"" k "\":[0-9]+")) { r = substr(s, RSTART, RLENGTH); sub(/.*:/, "", r); return r } return 0 }'
	done | sort >"$1"
}
# streams_delta A B N: per stream, (messages written, bytes kept) from state A to B, / N.
streams_delta() {
	join "$1" "$2" | awk -v n="$3" '{w = ($5 - $2) / n; b = ($7 - $4) / n; if (w != 0 || b != 0) printf "%s %.2f %.0f\n", $1, w, b}'
}
cost_rows=()
cost_phase() { # NAME BEFORE AFTER N: adds the phase's rows to cost_rows
	local line
	while read -r line; do cost_rows+=("$1 $line"); done < <(streams_delta "$2" "$3" "$4")
}
if [[ "$JOB_COST" != 0 ]]; then
	step "what one job stores in each stream: one server (R1), one worker, file repo"
	start_servers 1
	start_worker "cost" "health: {interval: 15s}"
	tree="$BENCH_DIR/cost-tree"
	rm -rf "$tree"
	mkdir -p "$tree"
	for ((i = 1; i <= COST_FILES; i++)); do
		head -c $((COST_FILE_KIB * 1024)) /dev/urandom >"$tree/f$i.bin"
	done
	streams_state "$BENCH_DIR/st-0"
	sleep "$COST_IDLE_SECS"
	streams_state "$BENCH_DIR/st-1"
	cost_phase "idle/s" "$BENCH_DIR/st-0" "$BENCH_DIR/st-1" "$COST_IDLE_SECS"
	t0="$(now)"
	"$BRR" --nats "$urls" backup "$tree" --wait >"$BENCH_DIR/cost-backup1.log" 2>&1 || die "first backup failed"
	first_secs="$(elapsed "$t0" "$(now)")"
	streams_state "$BENCH_DIR/st-2"
	cost_phase "backup-first" "$BENCH_DIR/st-1" "$BENCH_DIR/st-2" 1
	head -c $((COST_FILE_KIB * 1024)) /dev/urandom >"$tree/f1.bin" # one file of COST_FILES changed
	t0="$(now)"
	"$BRR" --nats "$urls" backup "$tree" --wait >"$BENCH_DIR/cost-backup2.log" 2>&1 || die "second backup failed"
	second_secs="$(elapsed "$t0" "$(now)")"
	streams_state "$BENCH_DIR/st-3"
	cost_phase "backup-1-changed" "$BENCH_DIR/st-2" "$BENCH_DIR/st-3" 1
	"$BRR" --nats "$urls" bench --jobs "$COST_PINGS" --publishers 4 --json >"$BENCH_DIR/cost-bench.json" 2>&1 || die "brr bench failed"
	streams_state "$BENCH_DIR/st-4"
	cost_phase "ping" "$BENCH_DIR/st-3" "$BENCH_DIR/st-4" "$COST_PINGS"
	stop_all
fi
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- report ----------------------------------------------------------------------------
verdict() { awk -v r="$1" -v t="$2" 'BEGIN {print (r >= t ? "met" : "MISSED")}'; }
echo
echo "bench-scale $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, brr $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev), $("$server" --version), natscli $NATSCLI_VERSION"
echo "load average before / after: $load_before / $load_after"
echo
echo "scaling: 3-node cluster, R3 streams; ping jobs of $DELAY_MS ms, concurrency $CONCURRENCY per worker, $JOBS_PER_WORKER jobs per worker"
echo "running, ack pend., pulls wait., undeliv.: means of samples every ${SAMPLE_SECS}s while jobs were queued or held"
echo "CPU: cores used by the 3 nats-servers / by the workers, and the machine's busy share (all processes), idle ${IDLE_SECS}s before the jobs | during them"
echo "CPU wait: share of the servers' and workers' runnable thread time spent waiting for a CPU, during the jobs"
echo "CPU/job: CPU time of the servers and workers during the jobs, divided by the jobs (idle costs included); disk/job: write_bytes of the 3 servers (/proc/PID/io), divided by the jobs"
echo "jobs/s from event times; a row ending in 'clock' was timed by the script (its event read failed)"
printf '%-7s | %-5s | %-8s | %-8s | %-6s | %-5s | %-11s | %-9s | %-10s | %-8s | %-18s | %-18s | %-8s | %-8s | %-8s\n' \
	workers jobs "jobs/s" speed-up ideal "of id" "running/slt" "ack pend." "pulls wait" "undeliv." "idle srv/wrk/busy" "run srv/wrk/busy" "CPU wait" "disk/job" "CPU/job"
printf -- '%.0s-' {1..183}
echo
base="${rate[1]:-}"
for n in $WORKER_COUNTS; do
	ideal=$((n * CONCURRENCY * 1000 / DELAY_MS))
	factor="$(awk -v r="${rate[$n]}" -v b="$base" 'BEGIN {printf (b > 0 ? "%.2fx" : "-"), r / b}')"
	share="$(awk -v r="${rate[$n]}" -v i="$ideal" 'BEGIN {printf "%.0f%%", 100 * r / i}')"
	read -r rn ap wt pd _ <<<"${sampled[$n]}"
	read -r isc iwc ibusy _ <<<"${idle_cpu[$n]}"
	read -r sc wc busy rq _ <<<"${run_cpu[$n]}"
	printf '%-7s | %-5s | %-8s | %-8s | %-6s | %-5s | %-11s | %-9s | %-10s | %-8s | %-18s | %-18s | %-8s | %-8s | %-8s\n' \
		"$n" "$((n * JOBS_PER_WORKER))" "${rate[$n]}" "$factor" "$ideal" "$share" "$rn/$((n * CONCURRENCY))" "$ap" "$wt" "$pd" \
		"$isc/$iwc/$ibusy%" "$sc/$wc/$busy%" "$rq%" "${io_job[$n]}KiB" "${per_job[$n]}ms${timing[$n]#events}"
done
for t in "4 3.6" "16 15"; do
	read -r tn tt <<<"$t"
	if [[ -n "$base" && -n "${rate[$tn]:-}" ]]; then
		f="$(awk -v r="${rate[$tn]}" -v b="$base" 'BEGIN {printf "%.2f", r / b}')"
		echo "target: >= ${tt}x at $tn workers: ${f}x, $(verdict "$f" "$tt")"
	fi
done
if [[ "$PIPELINE" != 0 ]]; then
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
	echo "R3 / R1: brr $(awk -v a="${brate[3]}" -v b="${brate[1]}" 'BEGIN {printf "%.2f", a / b}'), nats consume $(awk -v a="${ncons[3]}" -v b="${ncons[1]}" 'BEGIN {printf "%.2f", a / b}')."
fi
if [[ "$JOB_COST" != 0 ]]; then
	echo
	echo "what one job writes to each stream (R1; an R3 stream stores each on 3 servers): messages written, bytes kept"
	echo "idle/s: one idle worker, per second over ${COST_IDLE_SECS}s; backup-first: $COST_FILES files of $COST_FILE_KIB KiB (${first_secs}s with --wait);"
	echo "backup-1-changed: the same tree with one file rewritten (${second_secs}s); ping: per job, brr bench --jobs $COST_PINGS"
	printf '%-18s | %-14s | %-12s | %-12s\n' phase stream "msgs written" "bytes kept"
	printf -- '%.0s-' {1..64}
	echo
	for row in "${cost_rows[@]}"; do
		read -r ph st w b <<<"$row"
		printf '%-18s | %-14s | %-12s | %-12s\n' "$ph" "$st" "$w" "$b"
	done
fi
echo "Raw output: $BENCH_DIR/"
