#!/usr/bin/env bash
# Backend benchmark: brr's backup, restore and replication on each repository backend
# (file://, nats://, s3, sftp), with restic 0.18.1 doing the same backup and restore into
# the same local directory, S3 server and SFTP server, in one run on this machine.
#
# Servers, all on loopback and stopped on exit: versitygw v1.8.0 (S3, posix backend, a
# bucket is a subdirectory) and OpenSSH's sshd (sftp via internal-sftp, generated host
# and user keys). One brr-worker with an embedded NATS server serves every brr repo: the
# nats:// repo is an object store on that server.
#
# Corpus (built once, cached in $BENCH_DIR/corpus): as bench-backup's, a copy of the Go
# toolchain tree, 384 MiB of random data in 3 files and a duplicate of one of them.
# Per backend: restic backup and restore, brr backup, brr replication of the file://
# repo's snapshot into a fresh repo on the backend, brr restore (each restore into a
# fresh directory, compared with the corpus). Every phase is one command timed
# wall-clock (for brr: publish, queue, run, wait for the result). A brr restore that
# has not ended after RESTORE_LIMIT seconds is given up on and reported as such: rows
# run in the order file, s3, sftp, nats, so the nats:// restore, the slow one, is last.
#
#   scripts/bench-backends.sh            (or: make bench-backends)
#   BENCH_DIR=/path ...      work dir (default /tmp/brr-bench-backends; needs ~15 GB)
#   BENCH_CORPUS_SMALL=1 ... a ~100 MiB corpus (part of GOROOT, 2x32 MiB random and a
#                            duplicate) in $BENCH_DIR/corpus-small, for a quick run
#   BACKENDS="file s3" ...   only these rows (of: file nats s3 sftp)
#   RESTORE_LIMIT=300 ...    seconds a brr restore may take before it is given up on
#   NO_BUILD=1 ...  use bin/ as it is      DROP_CACHES=0 ...  never drop page caches
#   KEEP_RUN=1 ...  keep the repos and the servers' data in $BENCH_DIR/run (removed otherwise)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RESTIC_VERSION=0.18.1
VERSITYGW_VERSION=v1.8.0
BENCH_DIR="${BENCH_DIR:-/tmp/brr-bench-backends}"
read -r -a backends <<<"${BACKENDS:-file nats s3 sftp}"
for b in "${backends[@]}"; do
	case "$b" in
	file | nats | s3 | sftp) ;;
	*) die "BACKENDS: unknown backend \"$b\" (known: file nats s3 sftp)" ;;
	esac
done
restore_limit="${RESTORE_LIMIT:-300}"
[[ "$restore_limit" =~ ^[1-9][0-9]*$ ]] || die "RESTORE_LIMIT: want a number of seconds, got \"$restore_limit\""
mkdir -p "$BENCH_DIR"
rm -f "$BENCH_DIR"/{brr,restic}_*.{log,time} "$BENCH_DIR"/diff-*.log
run="$BENCH_DIR/run" # everything of this run: repos, servers' data, restores
logs="$BENCH_DIR"     # timed (lib.sh) writes NAME.log and NAME.time there

worker_pid="" s3_pid="" sshd_pid=""
cleanup() {
	local rc=$?
	end_process "$worker_pid"
	end_process "$s3_pid"
	end_process "$sshd_pid"
	if [[ "${KEEP_RUN:-0}" == 1 ]]; then rm -rf "$run/restore"; else rm -rf "$run"; fi
	[[ $rc -ne 0 ]] && echo "bench-backends FAILED (exit $rc); logs in $logs" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools ---------------------------------------------------------------------------
step "tools"
need_cmd curl
need_cmd ssh "apt-get install openssh-client"
need_cmd ssh-keygen "apt-get install openssh-client"
[[ -x /usr/sbin/sshd ]] || die "/usr/sbin/sshd is not installed: apt-get install openssh-server"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is not installed: apt-get install time"
restic="$BENCH_DIR/bin/restic"
if [[ ! -x "$restic" ]] || [[ "$("$restic" version)" != "restic $RESTIC_VERSION "* ]]; then
	note "installing restic $RESTIC_VERSION into $BENCH_DIR/bin (a few minutes, once)"
	GOBIN="$BENCH_DIR/bin" go install "github.com/restic/restic/cmd/restic@v$RESTIC_VERSION" ||
		die "go install restic failed"
fi
note "$("$restic" version)"
versitygw="$(command -v versitygw || true)"
[[ -z "$versitygw" && -x "$HOME/go/bin/versitygw" ]] && versitygw="$HOME/go/bin/versitygw"
if [[ -z "$versitygw" ]] || ! go version -m "$versitygw" 2>/dev/null | grep -q "versitygw[[:space:]]*$VERSITYGW_VERSION"; then
	versitygw="$BENCH_DIR/bin/versitygw"
	if [[ ! -x "$versitygw" ]]; then
		note "installing versitygw $VERSITYGW_VERSION into $BENCH_DIR/bin (a few minutes, once)"
		GOBIN="$BENCH_DIR/bin" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" ||
			die "go install versitygw failed"
	fi
fi
note "versitygw $VERSITYGW_VERSION at $versitygw"
note "$(/usr/sbin/sshd -V 2>&1 | head -1)"
build_binaries

# ---- corpus --------------------------------------------------------------------------
if [[ "${BENCH_CORPUS_SMALL:-0}" == 1 ]]; then
	corpus="$BENCH_DIR/corpus-small"
	if [[ ! -f "$corpus.done" ]]; then
		step "build the small corpus in $corpus (once)"
		rm -rf "$corpus"
		mkdir -p "$corpus/data"
		cp -a "$(go env GOROOT)/src/net" "$corpus/net"
		for i in 1 2; do head -c $((32 << 20)) /dev/urandom >"$corpus/data/random-$i.bin"; done
		cp "$corpus/data/random-1.bin" "$corpus/data/random-1-copy.bin"
		touch "$corpus.done"
	fi
else
	corpus="$BENCH_DIR/corpus"
	build_corpus "$corpus"
fi
corpus_bytes="$(du -sb "$corpus" | cut -f1)"
corpus_files="$(find "$corpus" -type f | wc -l)"
note "corpus: $(human "$corpus_bytes") in $corpus_files files"

# ---- page cache ----------------------------------------------------------------------
page_caches "$corpus"
before_timed() { drop_caches; }

# ---- servers -------------------------------------------------------------------------
rm -rf "$run"
mkdir -p "$run"
key="$run/brr.key"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$key"
chmod 0600 "$key"
cp "$key" "$run/restic-password"
export RESTIC_PASSWORD_FILE="$run/restic-password"
export RESTIC_CACHE_DIR="$run/restic-cache"
unset RESTIC_REPOSITORY SSH_AUTH_SOCK
export AWS_ACCESS_KEY_ID="bench$RANDOM$RANDOM" AWS_SECRET_ACCESS_KEY
AWS_SECRET_ACCESS_KEY="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"

s3_port="" ssh_port="" nats_port="" http_port=""
take_ports s3_port ssh_port nats_port http_port

wait_port() { # wait_port PORT PID NAME LOG
	local i
	for ((i = 0; i < 150; i++)); do
		kill -0 "$2" 2>/dev/null || { tail -n 20 "$4" >&2; die "$3 exited at start"; }
		port_in_use "$1" && return 0
		sleep 0.2
	done
	tail -n 20 "$4" >&2
	die "$3 does not listen on 127.0.0.1:$1 after 30 s"
}

step "start versitygw (S3 on 127.0.0.1:$s3_port, posix in $run/s3)"
mkdir -p "$run/s3/brr-bench" "$run/s3/brr-rep" "$run/s3/restic-bench"
ROOT_ACCESS_KEY="$AWS_ACCESS_KEY_ID" ROOT_SECRET_KEY="$AWS_SECRET_ACCESS_KEY" \
	"$versitygw" --port "127.0.0.1:$s3_port" posix "$run/s3" >"$logs/versitygw.log" 2>&1 &
s3_pid=$!
wait_port "$s3_port" "$s3_pid" versitygw "$logs/versitygw.log"

step "start sshd (sftp on 127.0.0.1:$ssh_port)"
mkdir -p /run/sshd "$run/ssh" "$run/sftp"
ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$run/ssh/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C bench-user -f "$run/ssh/user_ed25519"
cp "$run/ssh/user_ed25519.pub" "$run/ssh/authorized_keys"
printf '[127.0.0.1]:%s %s\n' "$ssh_port" "$(cut -d' ' -f1-2 "$run/ssh/host_ed25519.pub")" >"$run/ssh/known_hosts"
ssh_user="$(id -un)"
/usr/sbin/sshd -D -e -f /dev/null -o Port="$ssh_port" -o ListenAddress=127.0.0.1 \
	-o HostKey="$run/ssh/host_ed25519" -o AuthorizedKeysFile="$run/ssh/authorized_keys" \
	-o PidFile="$run/ssh/sshd.pid" -o "Subsystem=sftp internal-sftp" -o StrictModes=no \
	-o PermitRootLogin=prohibit-password -o PasswordAuthentication=no \
	-o KbdInteractiveAuthentication=no >"$logs/sshd.log" 2>&1 &
sshd_pid=$!
wait_port "$ssh_port" "$sshd_pid" sshd "$logs/sshd.log"
ssh_args=(ssh -p "$ssh_port" -i "$run/ssh/user_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes
	-o "UserKnownHostsFile=$run/ssh/known_hosts" -o StrictHostKeyChecking=yes "$ssh_user@127.0.0.1" -s sftp)
"${ssh_args[@]}" </dev/null >/dev/null 2>"$logs/ssh-check.log" ||
	{ cat "$logs/ssh-check.log" >&2; die "ssh to the bench sshd failed"; }

step "start brr-worker (embedded NATS on 127.0.0.1:$nats_port, data in $run/brr-data)"
s3_url="s3:http://127.0.0.1:$s3_port"
sftp_url="sftp://$ssh_user@127.0.0.1:$ssh_port"
sftp_keys="key_file: $key, ssh_key_file: $run/ssh/user_ed25519, known_hosts: $run/ssh/known_hosts"
cat >"$run/worker.yaml" <<EOF
data_dir: $run/brr-data
repos:
  file: {url: "file://$run/brr-file", key_file: $key}
  nats: {url: "nats://brr-bench", key_file: $key}
  s3: {url: "$s3_url/brr-bench", key_file: $key, path_style: path}
  sftp: {url: "$sftp_url$run/sftp/brr", $sftp_keys}
  rep-file: {url: "file://$run/brr-rep-file", key_file: $key}
  rep-nats: {url: "nats://brr-rep", key_file: $key}
  rep-s3: {url: "$s3_url/brr-rep", key_file: $key, path_style: path}
  rep-sftp: {url: "$sftp_url$run/sftp/brr-rep", $sftp_keys}
default_repo: file
EOF
"$WORKER" --config "$run/worker.yaml" --listen "127.0.0.1:$nats_port" --http "127.0.0.1:$http_port" \
	--log-format json >"$logs/worker.log" 2>&1 &
worker_pid=$!
wait_ready "http://127.0.0.1:$http_port/readyz" "$worker_pid" 120 "$logs/worker.log"
nats="nats://127.0.0.1:$nats_port"
note "worker pid $worker_pid, VmHWM at start $(vmhwm "$worker_pid") KiB"

# restic_repo NAME prints restic's -r and -o arguments for backend NAME, one a line.
restic_repo() {
	case "$1" in
	file) printf '%s\n' -r "$run/restic-file" ;;
	s3) printf '%s\n' -r "$s3_url/restic-bench" ;;
	sftp) printf '%s\n' -r "sftp:$ssh_user@127.0.0.1:$run/sftp/restic" -o "sftp.command=${ssh_args[*]}" ;;
	esac
}

# timed_restore NAME CMD... is timed (lib.sh) for a brr restore run with --timeout
# $restore_limit: when the command gives up at the limit it sets OVER_<NAME>=1 and
# T_<NAME> to the time spent, instead of failing the run.
timed_restore() {
	local name="$1" t0 t1 t rc=0
	shift
	before_timed
	t0="$(now)"
	/usr/bin/time -v -o "$BENCH_DIR/$name.time" "$@" >"$BENCH_DIR/$name.log" 2>&1 || rc=$?
	t1="$(now)"
	t="$(elapsed "$t0" "$t1")"
	printf -v "T_$name" '%s' "$t"
	if [[ $rc -ne 0 ]]; then
		if grep -q 'did not end within --timeout' "$BENCH_DIR/$name.log"; then
			printf -v "OVER_$name" 1
			return 0
		fi
		tail -n 20 "$BENCH_DIR/$name.log" >&2
		die "$name: $* exited $rc"
	fi
}

# worker_phase NAME resets the worker's peak RSS (VmHWM, through /proc/PID/clear_refs) and
# notes its CPU time, before a brr phase; worker_phase_end NAME records the peak during the
# phase in HWM_<NAME> (KiB) and the worker's CPU seconds in CPU_<NAME>. Where the reset is
# not allowed, HWM_<NAME> is the peak so far. run_hwm keeps the peak of the whole run.
run_hwm=0 phase_cpu0=0
worker_phase() {
	run_hwm=$(( $(vmhwm "$worker_pid") > run_hwm ? $(vmhwm "$worker_pid") : run_hwm ))
	echo 5 >"/proc/$worker_pid/clear_refs" 2>/dev/null || true
	phase_cpu0="$(cpu_seconds "$worker_pid")"
}
worker_phase_end() {
	local h
	h="$(vmhwm "$worker_pid")"
	printf -v "HWM_$1" '%s' "$h"
	printf -v "CPU_$1" '%s' "$(awk -v a="$phase_cpu0" -v b="$(cpu_seconds "$worker_pid")" 'BEGIN {printf "%.2f", b - a}')"
	run_hwm=$((h > run_hwm ? h : run_hwm))
}

# ---- runs ----------------------------------------------------------------------------
# Set by timed (lib.sh) and timed_restore through printf -v; the report reads these two.
T_brr_restore_file="" T_brr_restore_nats="" OVER_brr_restore_nats=""
# The file row goes first: replication copies its snapshot into the other backends.
# nats goes last: its restore may be given up on while the worker still runs it.
ordered=(file)
for b in s3 sftp nats; do
	if [[ " ${backends[*]} " == *" $b "* ]]; then ordered+=("$b"); fi
done
[[ " ${backends[*]} " == *" file "* ]] || note "BACKENDS without file: the file repo is backed up anyway, as the replication source"
mkdir -p "$run/restore"
for b in "${ordered[@]}"; do
	rargs=()
	if [[ "$b" != nats ]]; then
		mapfile -t rargs < <(restic_repo "$b")
		step "$b: restic init, backup, restore"
		timed "restic_init_$b" "$restic" "${rargs[@]}" init
		timed "restic_backup_$b" "$restic" "${rargs[@]}" backup --host bench "$corpus"
		timed "restic_restore_$b" "$restic" "${rargs[@]}" restore latest --target "$run/restore/restic-$b"
		diff -rq "$corpus" "$run/restore/restic-$b$corpus" >"$logs/diff-restic-$b.log" ||
			die "restic's restore from $b differs from the corpus: $logs/diff-restic-$b.log"
		v="T_restic_backup_$b" w="T_restic_restore_$b"
		note "restic: backup ${!v}s, restore ${!w}s"
	fi
	step "$b: brr backup, replicate file → rep-$b, restore"
	worker_phase
	timed "brr_backup_$b" "$BRR" --nats "$nats" backup "$corpus" --repo "$b" --wait
	worker_phase_end "brr_backup_$b"
	worker_phase
	timed "brr_replicate_$b" "$BRR" --nats "$nats" replicate latest --from file --to "rep-$b" --wait
	worker_phase_end "brr_replicate_$b"
	worker_phase
	timed_restore "brr_restore_$b" "$BRR" --nats "$nats" --timeout "${restore_limit}s" \
		restore latest "$run/restore/brr-$b" --repo "$b" --wait
	worker_phase_end "brr_restore_$b"
	v="T_brr_backup_$b" w="T_brr_restore_$b" x="T_brr_replicate_$b" o="OVER_brr_restore_$b"
	if [[ -n "${!o:-}" ]]; then
		progress="$(grep -o 'restore: [0-9]*/[0-9]* files, [0-9.]* [KMG]*i*B/[0-9.]* [KMG]*i*B' "$logs/brr_restore_$b.log" | tail -n 1 || true)"
		printf -v "PROGRESS_$b" '%s' "${progress#restore: }"
		note "brr: backup ${!v}s, replicate ${!x}s, restore given up on after ${!w}s at ${progress#restore: }; worker VmHWM $(vmhwm "$worker_pid") KiB"
		continue
	fi
	diff -rq "$corpus" "$run/restore/brr-$b" >"$logs/diff-brr-$b.log" ||
		die "brr's restore from $b differs from the corpus: $logs/diff-brr-$b.log"
	note "brr: backup ${!v}s, replicate ${!x}s, restore ${!w}s; worker VmHWM $(vmhwm "$worker_pid") KiB"
done
worker_hwm="$(vmhwm "$worker_pid")"
worker_hwm=$((worker_hwm > run_hwm ? worker_hwm : run_hwm))

step "stop the worker and the servers"
rc=0
stop_process "$worker_pid" 60 || rc=$?
worker_pid=""
[[ $rc -eq 0 ]] || note "brr-worker exited $rc after SIGTERM (want 0)"
end_process "$s3_pid"
s3_pid=""
end_process "$sshd_pid"
sshd_pid=""

# ---- report --------------------------------------------------------------------------
mibs() { awk -v b="$corpus_bytes" -v t="$1" 'BEGIN {printf "%.1f", b / 1048576 / t}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
verdict() { awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN {ok = (op == ">=" ? r >= t : r <= t); print (ok ? "met" : "MISSED")}'; }
# cell NAME prints "SECONDS s MIB/S" of timed phase NAME, or "-" when it did not run;
# ">SECONDS s <MIB/S" when it was given up on.
cell() {
	local v="T_$1" o="OVER_$1"
	if [[ -z "${!v:-}" ]]; then printf -- '-'; return; fi
	if [[ -n "${!o:-}" ]]; then printf '>%ss <%s' "${!v}" "$(mibs "${!v}")"; return; fi
	printf '%ss %s' "${!v}" "$(mibs "${!v}")"
}
# rcell A B prints restic time / brr time with a verdict against 1 (brr at least as fast).
rcell() {
	local a="T_$1" b="T_$2" o="OVER_$2" r
	if [[ -z "${!a:-}" || -z "${!b:-}" ]]; then printf -- '-'; return; fi
	r="$(ratio "${!a}" "${!b}")"
	if [[ -n "${!o:-}" ]]; then printf '<%s MISSED' "$r"; return; fi
	printf '%s %s' "$r" "$(verdict "$r" '>=' 1)"
}

echo
echo "bench-backends $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), brr $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev), $("$restic" version | cut -d' ' -f1-2), versitygw $VERSITYGW_VERSION, $(/usr/sbin/sshd -V 2>&1 | head -1 | cut -d, -f1)"
echo "corpus: $(human "$corpus_bytes") in $corpus_files files; $cache_note"
echo "cells: seconds and MiB/s of the corpus; ratio = restic time / brr time, target >= 1 (brr at least as fast)"
fmt='%-7s | %-18s | %-18s | %-11s | %-18s | %-18s | %-11s | %-18s\n'
# shellcheck disable=SC2059
printf "$fmt" backend "brr backup" "restic backup" ratio "brr restore" "restic restore" ratio "brr replicate file→"
printf -- '%.0s-' {1..134}
echo
for b in "${ordered[@]}"; do
	# shellcheck disable=SC2059
	printf "$fmt" "$b" "$(cell "brr_backup_$b")" "$(cell "restic_backup_$b")" "$(rcell "restic_backup_$b" "brr_backup_$b")" \
		"$(cell "brr_restore_$b")" "$(cell "restic_restore_$b")" "$(rcell "restic_restore_$b" "brr_restore_$b")" \
		"$(cell "brr_replicate_$b")"
done
echo
if [[ -n "${T_brr_restore_nats:-}" ]]; then
	r="$(ratio "$T_brr_restore_nats" "$T_brr_restore_file")"
	if [[ -n "${OVER_brr_restore_nats:-}" ]]; then
		echo "restore from nats:// / restore from file:// (time): >$r, target <= 1.5: MISSED"
	else
		echo "restore from nats:// / restore from file:// (time): $r, target <= 1.5: $(verdict "$r" '<=' 1.5)"
		if [[ -n "${T_restic_restore_file:-}" ]]; then
			r="$(ratio "$T_restic_restore_file" "$T_brr_restore_nats")"
			echo "restic's restore from file:// / brr's restore from nats:// (time; restic has no nats://): $r, target >= 2 (issue 14): $(verdict "$r" '>=' 2)"
		fi
	fi
fi
for b in "${ordered[@]}"; do
	v="OVER_brr_restore_$b" w="PROGRESS_$b"
	if [[ -n "${!v:-}" ]]; then echo "the brr restore from $b was given up on after RESTORE_LIMIT=${restore_limit}s, at ${!w:-no progress}"; fi
done
echo "restic has no nats:// backend. restic's init is not timed (brr's repos are initialised when the worker starts)."
echo "brr times are the whole 'brr ... --wait' command: publish, queue, run, events; one worker, embedded NATS."
echo "brr replicate copies the file:// repo's latest snapshot into a fresh repo on the backend (rep-*)."
echo "worker peak RSS over the run: $(human $((worker_hwm * 1024))). Logs and timings: $logs/*.log, *.time"
echo "worker peak RSS and CPU seconds during each brr phase (the peak is reset before each):"
for b in "${ordered[@]}"; do
	line="  $b:"
	for ph in backup replicate restore; do
		v="HWM_brr_${ph}_$b" c="CPU_brr_${ph}_$b"
		[[ -n "${!v:-}" ]] && line+=" $ph $(human $((${!v} * 1024))) ${!c}s CPU;"
	done
	echo "${line%;}"
done
