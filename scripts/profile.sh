#!/usr/bin/env bash
# CPU and heap profiles of one backup or one restore of bench-backup's corpus (GOROOT copy,
# 3 × 128 MiB random, a duplicate: ~740 MiB), run in-process through the worker's job
# engine (internal/jobs TestProfile) with the worker's GOGC, default pack size and KDF.
#
#   scripts/profile.sh backup|restore      (or: make profile-backup, make profile-restore)
#   PROFILE_DIR=DIR ...   where the profiles go (default .profiles/KIND in the checkout)
#   BENCH_DIR=DIR ...     where the corpus is built and cached (default /tmp/brr-bench,
#                         shared with bench-backup); the repository and restore go to
#                         PROFILE_DIR/work and are removed at the end
#   NODES=N ...           lines of `go tool pprof -top` printed (default 25)
#   REPO=nats ...         a nats:// repository (an object store on an embedded NATS server
#                         in the profiled process, a pack cache as the worker has) instead
#                         of file://; PROFILE_DIR defaults to .profiles/KIND-nats
#
# Writes PROFILE_DIR/cpu.prof (the job only; a restore's backup is made first, not
# profiled), PROFILE_DIR/heap.prof (alloc_space: every allocation of the process) and
# PROFILE_DIR/heap-peak.prof (inuse_space: what was live when the job's heap was at its
# largest), then prints the top of each. Look further
# with `go tool pprof -http=: PROFILE_DIR/cpu.prof`.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kind="${1:-}"
[[ "$kind" == backup || "$kind" == restore ]] || die "usage: $0 backup|restore"
BENCH_DIR="${BENCH_DIR:-/tmp/brr-bench}"
REPO="${REPO:-file}"
[[ "$REPO" == file || "$REPO" == nats ]] || die "REPO: want file or nats, got \"$REPO\""
suffix=""
[[ "$REPO" == nats ]] && suffix="-nats"
PROFILE_DIR="${PROFILE_DIR:-$ROOT/.profiles/$kind$suffix}"
NODES="${NODES:-25}"
corpus="$BENCH_DIR/corpus"
work="$PROFILE_DIR/work"
mkdir -p "$BENCH_DIR" "$PROFILE_DIR"
trap 'rm -rf "$work"' EXIT

build_corpus "$corpus"
rm -rf "$work"
mkdir -p "$work"
step "profile one $kind of $corpus ($(human "$(du -sb "$corpus" | cut -f1)")) with a $REPO:// repository into $PROFILE_DIR"
(cd "$ROOT" && BRR_PROFILE="$kind" BRR_PROFILE_REPO="$REPO" BRR_PROFILE_CORPUS="$corpus" BRR_PROFILE_DIR="$work" \
	go test -count=1 -timeout 30m -run '^TestProfile$' -v ./internal/jobs/ | grep -E 'profile_test.go|^(ok|FAIL|---)')
mv "$work/cpu.prof" "$work/heap.prof" "$work/heap-peak.prof" "$PROFILE_DIR/"

step "CPU: go tool pprof -top $PROFILE_DIR/cpu.prof"
go tool pprof -top -nodecount="$NODES" "$PROFILE_DIR/cpu.prof" 2>/dev/null
step "CPU, cumulative: go tool pprof -top -cum $PROFILE_DIR/cpu.prof"
go tool pprof -top -cum -nodecount="$NODES" "$PROFILE_DIR/cpu.prof" 2>/dev/null
step "heap, every allocation: go tool pprof -top -sample_index=alloc_space $PROFILE_DIR/heap.prof"
go tool pprof -top -sample_index=alloc_space -nodecount="$NODES" "$PROFILE_DIR/heap.prof" 2>/dev/null
step "heap, live at the job's peak: go tool pprof -top -sample_index=inuse_space $PROFILE_DIR/heap-peak.prof"
go tool pprof -top -sample_index=inuse_space -nodecount="$NODES" "$PROFILE_DIR/heap-peak.prof" 2>/dev/null
