# Shared shell functions of the demo and benchmark scripts; source it, don't run it.
# Everything here talks only to loopback.

# ROOT is the repository's top directory; BRR and WORKER are the built binaries.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BRR="$ROOT/bin/brr"
WORKER="$ROOT/bin/brr-worker"

# step announces one step on one line; note adds detail under it; die stops the script.
step() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
	printf 'FAILED: %s\n' "$*" >&2
	exit 1
}

# need_cmd fails with a hint when a command is missing.
need_cmd() {
	command -v "$1" >/dev/null 2>&1 || die "$1 is not installed${2:+: $2}"
}

# build_binaries builds bin/brr and bin/brr-worker with the Makefile, unless NO_BUILD=1.
build_binaries() {
	local out
	if [[ "${NO_BUILD:-0}" != 1 ]]; then
		if ! out="$(make -C "$ROOT" --no-print-directory build 2>&1)"; then
			printf '%s\n' "$out" | tail -n 30 >&2
			die "make build failed"
		fi
	fi
	[[ -x "$BRR" && -x "$WORKER" ]] || die "bin/brr or bin/brr-worker missing: run make build"
}

# port_in_use reports whether something accepts connections on 127.0.0.1:$1.
port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port prints a loopback TCP port that nothing listens on, avoiding the ports
# already handed out by this script (listed in $_taken_ports).
_taken_ports=" "
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 40000))
		[[ "$_taken_ports" == *" $p "* ]] && continue
		if ! port_in_use "$p" && ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
			_taken_ports+="$p "
			printf '%s\n' "$p"
			return 0
		fi
	done
	die "no free loopback port found"
}

# Every free_port call runs in a subshell ($(free_port)), so remember the ports here.
take_ports() {
	local var p
	for var in "$@"; do
		p="$(free_port)"
		_taken_ports+="$p "
		printf -v "$var" '%s' "$p"
	done
}

# wait_ready waits until $1 (an http URL) answers 200, while process $2 is alive, for
# at most $3 seconds (default 60). On failure it prints the tail of log file $4.
wait_ready() {
	local url="$1" pid="$2" limit="${3:-60}" log="${4:-}" i
	for ((i = 0; i < limit * 5; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			[[ -n "$log" ]] && tail -n 30 "$log" >&2
			die "the worker (pid $pid) exited before it was ready"
		fi
		if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
			return 0
		fi
		sleep 0.2
	done
	[[ -n "$log" ]] && tail -n 30 "$log" >&2
	die "$url not ready after ${limit}s"
}

# stop_process sends SIGTERM to pid $1 and waits up to $2 seconds (default 40) for it
# to exit, then SIGKILLs it. It prints the exit status and returns it (137 when killed).
stop_process() {
	local pid="$1" limit="${2:-40}" i rc=0
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || rc=$?; return "$rc"; }
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < limit * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		note "pid $pid still running ${limit}s after SIGTERM: sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || rc=$?
	return "$rc"
}

# vmhwm prints the peak resident set size of pid $1 in KiB (VmHWM), or 0 when gone.
vmhwm() {
	awk '/^VmHWM:/ {print $2; found=1} END {if (!found) print 0}' "/proc/$1/status" 2>/dev/null || echo 0
}

# cpu_seconds prints the CPU time (user + system) that pid $1 has used so far, in seconds.
cpu_seconds() {
	awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# human prints a byte count with a binary unit.
human() {
	awk -v b="$1" 'BEGIN {
		split("B KiB MiB GiB TiB", u, " "); i = 1
		while (b >= 1024 && i < 5) { b /= 1024; i++ }
		printf (i == 1 ? "%d %s" : "%.1f %s"), b, u[i]
	}'
}

# end_process stops pid $1 for a cleanup trap: SIGTERM, up to 30 s, then SIGKILL. It
# never fails and does nothing when $1 is empty or gone.
end_process() {
	local pid="$1"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in {1..300}; do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# build_corpus DIR builds the backup benchmarks' corpus in DIR once (DIR.done marks it
# built): a copy of the Go toolchain tree (many small compressible files), 384 MiB of
# random data in 3 files and a duplicate of one of them.
build_corpus() {
	local corpus="$1" i
	[[ -f "$corpus.done" ]] && return 0
	step "build the corpus in $corpus (once)"
	rm -rf "$corpus"
	mkdir -p "$corpus/data"
	cp -a "$(go env GOROOT)" "$corpus/go"
	for i in 1 2 3; do
		head -c $((128 << 20)) /dev/urandom >"$corpus/data/random-$i.bin"
	done
	cp "$corpus/data/random-1.bin" "$corpus/data/random-1-copy.bin"
	touch "$corpus.done"
}

# page_caches CORPUS sets can_drop (1 when the page caches can be dropped before each
# timed phase: DROP_CACHES is not 0 and /proc/sys/vm/drop_caches is writable) and
# cache_note, which says so for the report; when they cannot, it reads the corpus once so
# that every tool runs warm alike. drop_caches drops them when it can.
page_caches() {
	can_drop=0
	if [[ "${DROP_CACHES:-1}" != 0 ]] && sync && (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
		can_drop=1
		cache_note="page caches dropped before every phase"
	else
		cache_note="page caches NOT dropped (/proc/sys/vm/drop_caches not writable or DROP_CACHES=0): every phase runs warm, the corpus was read once first"
		find "$1" -type f -print0 | xargs -0 cat >/dev/null
	fi
	note "$cache_note"
}
drop_caches() {
	if [[ $can_drop == 1 ]]; then sync && echo 3 >/proc/sys/vm/drop_caches; fi
}

# now prints the time in seconds; elapsed prints $2 - $1 with two decimals.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }

# timed NAME CMD... runs CMD under /usr/bin/time -v; sets T_<NAME> (seconds) and
# RSS_<NAME> (KiB, the command's own peak). Output goes to $BENCH_DIR/NAME.log. A script
# that defines before_timed has it run first (bench-backup drops the page caches there).
timed() {
	local name="$1" t0 t1 rc=0
	shift
	if declare -F before_timed >/dev/null; then before_timed; fi
	t0="$(now)"
	/usr/bin/time -v -o "$BENCH_DIR/$name.time" "$@" >"$BENCH_DIR/$name.log" 2>&1 || rc=$?
	t1="$(now)"
	if [[ $rc -ne 0 ]]; then
		tail -n 20 "$BENCH_DIR/$name.log" >&2
		die "$name: $* exited $rc"
	fi
	printf -v "T_$name" '%s' "$(elapsed "$t0" "$t1")"
	printf -v "RSS_$name" '%s' "$(awk -F': ' '/Maximum resident set size/ {print $2}' "$BENCH_DIR/$name.time")"
}

# proc_cpu prints the user+system CPU seconds process $1 has used so far (0 when gone).
proc_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# time_cpu prints the user+system seconds in a /usr/bin/time -v report $1.
time_cpu() {
	awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$1"
}

# ensure_natscli installs natscli $NATSCLI_VERSION into .tools/bin when $NATSCLI is
# missing or another version.
NATSCLI_VERSION=v0.5.0
NATSCLI="$ROOT/.tools/bin/nats"
ensure_natscli() {
	if [[ ! -x "$NATSCLI" ]] || [[ "$("$NATSCLI" --version 2>&1)" != "$NATSCLI_VERSION" ]]; then
		note "installing natscli $NATSCLI_VERSION into .tools/bin (a few minutes, once)"
		mkdir -p "$ROOT/.tools/bin"
		GOBIN="$ROOT/.tools/bin" go install "github.com/nats-io/natscli/nats@$NATSCLI_VERSION" ||
			die "go install natscli failed"
	fi
	note "nats $("$NATSCLI" --version 2>&1)"
}
