# brr — build, test and benchmark. `make` alone lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
BIN       ?= bin
DATA_DIR  ?= .brr-data
TOOLS_BIN := $(CURDIR)/.tools/bin
STATICCHECK_VERSION := v0.8.2
FUZZTIME  ?= 20s
FUZZPKGS  ?= ./...
SOAK      ?= 20m
SOAK_TIMEOUT ?= 12h

# Build and test packages in parallel on every core (2 on the project's machines).
NPROC     := $(shell nproc 2>/dev/null || echo 2)
GOFLAGS_P := -p $(NPROC)

# The version stamped into both binaries: `git describe` when the tree is a git checkout
# with commits (tags are optional thanks to --always), else "dev".
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: help build run demo test test/short test/race lint lint-tools fmt-check vet \
        fuzz bench bench-backup bench-backends bench-browse bench-pipeline bench-prune bench-scale bench-sources clean cluster-up cluster-down \
        test-faults soak

help: ## list the targets
	@echo "brr $(VERSION) — make TARGET"
	@grep -hE '^[a-zA-Z/_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

build: ## build bin/brr (CLI) and bin/brr-worker (daemon)
	@mkdir -p $(BIN)
	$(GO) build $(GOFLAGS_P) -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/brr ./cmd/publisher
	$(GO) build $(GOFLAGS_P) -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/brr-worker ./cmd/worker

run: build ## run one worker with an embedded NATS server, data in .brr-data/
	$(BIN)/brr-worker --data-dir $(DATA_DIR)

demo: ## build, start a worker, back up, restore, verify, stop (scripts/demo.sh)
	scripts/demo.sh

cluster-up: ## 3 NATS nodes (deploy/nats/cluster.conf) and 3 workers as local processes, in .brr-cluster/
	scripts/cluster-up.sh

cluster-down: ## stop the cluster-up processes; PURGE=1 also removes .brr-cluster/
	scripts/cluster-down.sh $(if $(PURGE),--purge)

fmt-check: ## fail when a Go file is not gofmt'ed
	@out="$$(find . -name '*.go' -not -path './.git/*' -not -path './.tools/*' -print0 | xargs -0 -r gofmt -l)"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet: ## go vet every package
	$(GO) vet ./...

test: fmt-check vet ## gofmt check, go vet, then every test with the race detector
	$(GO) test $(GOFLAGS_P) -race -count=1 -timeout 30m ./...

test/race: test ## same as test

test-faults: ## fault tests: killed workers, NATS restart, lost cluster node, partition, full disk, clock skew (~3 min; root for the full disk)
	BRR_FAULTS=1 $(GO) test -race -count=1 -timeout 60m -v ./internal/faults/

soak: ## mixed jobs for SOAK (20m; SOAK=2h) on 3 NATS nodes and 3 workers killed at random, then checks (internal/soak; not in test or CI)
	BRR_SOAK=1 SOAK=$(SOAK) $(GO) test -count=1 -timeout $(SOAK_TIMEOUT) -v -run '^TestSoak$$' ./internal/soak/

test/short: ## quick tests, no race detector (go test -short)
	$(GO) test $(GOFLAGS_P) -short -count=1 -timeout 10m ./...

lint-tools: ## install staticcheck (pinned version) into .tools/bin
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: fmt-check vet ## gofmt, go vet, staticcheck (make lint-tools) and shellcheck when installed
	@sc="$$(command -v staticcheck || true)"; \
	if [ -x "$(TOOLS_BIN)/staticcheck" ]; then sc="$(TOOLS_BIN)/staticcheck"; fi; \
	if [ -n "$$sc" ]; then echo "$$sc ./..."; "$$sc" ./...; \
	else echo "staticcheck not installed: run 'make lint-tools' (skipped)"; fi
	@if command -v shellcheck >/dev/null; then echo "shellcheck scripts/*.sh .ci/run"; \
		shellcheck -x -P SCRIPTDIR/.. -s bash scripts/*.sh .ci/run; \
	else echo "shellcheck not installed: apt-get install shellcheck (skipped)"; fi

fuzz: ## run every Fuzz target for FUZZTIME (20s) each; FUZZPKGS=./internal/repo to narrow
	@# `go test -list` prints a package's matching names, then "ok  <pkg> <time>".
	@targets="$$($(GO) test -list '^Fuzz' $(FUZZPKGS) | \
		awk '/^Fuzz/ {names = names " " $$1} /^ok / {n = split(names, a, " "); for (i = 1; i <= n; i++) print $$2, a[i]; names = ""}')"; \
	if [ -z "$$targets" ]; then echo "no Fuzz targets found"; exit 0; fi; \
	while read -r pkg fn; do \
		echo "== $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	done <<< "$$targets"

bench: bench-pipeline bench-backup ## both benchmarks

bench-backup: build ## back up a ~740 MiB corpus with brr and restic side by side (scripts/bench-backup.sh)
	scripts/bench-backup.sh

.PHONY: profile-backup profile-restore
profile-backup: ## CPU and heap profile of one backup of bench-backup's corpus, in .profiles/backup (scripts/profile.sh)
	scripts/profile.sh backup

profile-restore: ## CPU and heap profile of one restore of bench-backup's corpus, in .profiles/restore (scripts/profile.sh)
	scripts/profile.sh restore

.PHONY: profile-restore-nats
profile-restore-nats: ## the same from a nats:// repository on an embedded server, in .profiles/restore-nats (scripts/profile.sh)
	REPO=nats scripts/profile.sh restore

bench-backends: build ## backup, restore, replicate on file, nats, s3, sftp vs restic 0.18.1, local servers (scripts/bench-backends.sh)
	scripts/bench-backends.sh

bench-browse: ## list one directory of a synthetic 1M-file snapshot: in the repository, and through NATS and a worker's query service
	$(GO) test -run '^$$' -bench 'BenchmarkBrowse1M' -benchtime 50x -benchmem ./internal/repo
	$(GO) test -run '^$$' -bench 'BenchmarkBrowseOverNATS' -benchtime 50x -benchmem ./internal/events

bench-prune: build ## prune a repo of 1M blobs, brr and restic 0.18.1 side by side (scripts/bench-prune.sh)
	scripts/bench-prune.sh

.PHONY: bench-index
bench-index: ## load synthetic indexes of 1M and 10M blobs: load time, heap per blob, peak RSS (internal/repo TestBenchIndex)
	BRR_BENCH_INDEX=$${BRR_BENCH_INDEX:-1000000,10000000} $(GO) test -count=1 -v -timeout 2h -run '^TestBenchIndex$$' ./internal/repo | \
		grep -v -e '^=== ' -e '^--- ' -e '^BENCH-INDEX '

bench-scale: build ## jobs/s of 1, 4, 8, 16 workers on a 3-node R3 cluster and what saturates; pipeline R1 vs R3; what a job writes to each stream (scripts/bench-scale.sh)
	scripts/bench-scale.sh

bench-sources: build ## watch RPO (write to snapshot) and the cost of excludes on the bench-backup corpus (scripts/bench-sources.sh)
	scripts/bench-sources.sh

bench-pipeline: build ## ping jobs/s and latency vs nats bench on one server (scripts/bench-pipeline.sh)
	scripts/bench-pipeline.sh

clean: ## remove bin/, .brr-data/ and the test cache
	rm -rf $(BIN) $(DATA_DIR)
	$(GO) clean -testcache
