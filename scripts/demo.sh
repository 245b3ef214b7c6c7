#!/usr/bin/env bash
# The five-minute tour, run for real in under a minute: build, start one worker with its
# own embedded NATS on free loopback ports, back up a sample tree, restore it, compare,
# verify, list snapshots and events, then stop the worker with SIGTERM.
# Exit 0 only when every step passed. Nothing is left running, whatever happens.
#
#   scripts/demo.sh            (or: make demo)
#   KEEP=1 scripts/demo.sh     keep the work dir for a look afterwards
#   NO_BUILD=1 scripts/demo.sh use bin/ as it is
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd curl "apt-get install -y curl"
need_cmd diff

tmp="$(mktemp -d "${TMPDIR:-/tmp}/brr-demo.XXXXXX")"
worker_pid=""
cleanup() {
	local rc=$?
	if [[ -n "$worker_pid" ]] && kill -0 "$worker_pid" 2>/dev/null; then
		kill -TERM "$worker_pid" 2>/dev/null || true
		for _ in {1..100}; do kill -0 "$worker_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$worker_pid" 2>/dev/null || true
		wait "$worker_pid" 2>/dev/null || true
	fi
	if [[ $rc -ne 0 ]]; then
		echo "demo FAILED (exit $rc); worker log: $tmp/worker.log" >&2
		[[ -f "$tmp/worker.log" ]] && tail -n 20 "$tmp/worker.log" >&2
	elif [[ "${KEEP:-0}" != 1 ]]; then
		rm -rf "$tmp"
	fi
	[[ "${KEEP:-0}" == 1 ]] && echo "work dir kept: $tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "build bin/brr and bin/brr-worker"
build_binaries

# A named source: a SQLite database (the tour's database step; skipped without sqlite3).
db="$tmp/notes/notes.db"
mkdir -p "$tmp/notes"
printf 'sources:\n  notes: {sqlite: %s}\n' "$db" >"$tmp/worker.yaml"

nats_port="" http_port=""
take_ports nats_port http_port
nats="nats://127.0.0.1:$nats_port"
step "start brr-worker (embedded NATS on 127.0.0.1:$nats_port, HTTP on 127.0.0.1:$http_port, source notes: $db)"
"$WORKER" --config "$tmp/worker.yaml" --data-dir "$tmp/data" --listen "127.0.0.1:$nats_port" --http "127.0.0.1:$http_port" \
	--log-format json >"$tmp/worker.log" 2>&1 &
worker_pid=$!
wait_ready "http://127.0.0.1:$http_port/readyz" "$worker_pid" 60 "$tmp/worker.log"
note "ready; repo key: $tmp/data/local.key"

brr() { "$BRR" --nats "$nats" "$@"; }

step "make a sample tree in $tmp/src"
src="$tmp/src"
mkdir -p "$src/docs/notes/deep" "$src/empty"
printf 'hello, brr\n' >"$src/hello.txt"
printf 'line %d\n' {1..2000} >"$src/docs/lines.txt"
printf 'a note in a nested directory\n' >"$src/docs/notes/deep/note.md"
: >"$src/docs/empty-file"
ln -s docs/notes/deep/note.md "$src/link-to-note"
head -c $((5 << 20)) /dev/urandom >"$src/random.bin"
chmod 0600 "$src/hello.txt"
note "$(find "$src" | wc -l) entries, $(du -sh "$src" | cut -f1)"

step "brr backup $src --wait"
brr backup "$src" --wait

step "brr restore latest $tmp/restore --wait"
brr restore latest "$tmp/restore" --wait

step "compare the restored tree with the source (diff -r, symlink, mode)"
diff -r --no-dereference "$src" "$tmp/restore" || die "restored tree differs from the source"
[[ -L "$tmp/restore/link-to-note" ]] || die "link-to-note was not restored as a symlink"
[[ "$(readlink "$tmp/restore/link-to-note")" == docs/notes/deep/note.md ]] ||
	die "link-to-note points to $(readlink "$tmp/restore/link-to-note"), want docs/notes/deep/note.md"
[[ "$(stat -c %a "$tmp/restore/hello.txt")" == 600 ]] || die "hello.txt mode is $(stat -c %a "$tmp/restore/hello.txt"), want 600"
cmp -s "$src/random.bin" "$tmp/restore/random.bin" || die "random.bin differs"
note "identical"

if command -v sqlite3 >/dev/null; then
	step "a database: brr backup --source-name notes --wait, then restore it and check it"
	sqlite3 "$db" "PRAGMA journal_mode=WAL; CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
		INSERT INTO notes(body) VALUES ('buy milk'), ('back up the database');" >/dev/null
	brr backup --source-name notes --wait
	brr restore latest "$tmp/notes-restore" --source-name notes --wait
	got="$(sqlite3 "$tmp/notes-restore/notes.db" 'PRAGMA integrity_check; SELECT count(*) FROM notes;' | tr '\n' ' ')"
	[[ "$got" == "ok 2 " ]] || die "restored notes.db: integrity_check and row count gave '$got', want 'ok 2'"
	note "restored notes.db: integrity ok, 2 rows"
	brr sources
else
	step "a database: skipped (sqlite3 is not installed: apt-get install -y sqlite3)"
fi

step "brr verify --read-data --wait"
brr verify --read-data --wait

step "brr snapshots"
brr snapshots

step "brr events --since 10m"
timeout 30 "$BRR" --nats "$nats" events --since 10m || die "brr events did not finish (exit $?)"

step "stop the worker with SIGTERM"
rc=0
stop_process "$worker_pid" 40 || rc=$?
worker_pid=""
[[ $rc -eq 0 ]] || die "brr-worker exited $rc after SIGTERM, want 0"

step "demo passed"
