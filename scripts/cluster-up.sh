#!/usr/bin/env bash
# make cluster-up: a 3-node NATS JetStream cluster and 3 brr-workers on this machine, as
# local processes, for people without containers. The nodes run deploy/nats/cluster.conf
# (the file deploy/compose runs too) with nats-server v2.15.2, installed into .tools/bin
# by `go install` when missing; the workers run deploy/worker/cluster.yaml.
#
#   NATS clients   127.0.0.1:4222 4223 4224     routes 6222-6224, monitoring 8222-8224
#   brr-worker     http 127.0.0.1:8080 8081 8082
#
# Everything lives under .brr-cluster/ (BRR_CLUSTER_DIR): stores, data dirs, logs, pid
# files, and the generated passwords (secrets.env, mode 0600) with the environment for
# the CLI (publisher.env, admin.env). Running it again starts only what is not running.
# Stop with scripts/cluster-down.sh (make cluster-down), which keeps the data unless
# given --purge.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

NATS_VERSION="v2.15.2"
NATS_SERVER="$ROOT/.tools/bin/nats-server"
DIR="${BRR_CLUSTER_DIR:-$ROOT/.brr-cluster}"
NATS_CONF="$ROOT/deploy/nats/cluster.conf"
WORKER_CONF="$ROOT/deploy/worker/cluster.yaml"
NODES=(1 2 3)
URLS="nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"

# alive reports whether the pid in file $1 is a running process whose command line
# holds $2 (so that a reused pid is not taken for ours).
alive() {
	local pid
	[[ -f "$1" ]] || return 1
	pid="$(<"$1")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

# install_nats_server puts nats-server $NATS_VERSION into .tools/bin unless it is there.
install_nats_server() {
	if [[ -x "$NATS_SERVER" ]] && "$NATS_SERVER" --version 2>/dev/null | grep -q "$NATS_VERSION"; then
		return 0
	fi
	need_cmd go "install Go 1.26 or newer"
	step "installing nats-server $NATS_VERSION into .tools/bin (go install)"
	mkdir -p "$ROOT/.tools/bin"
	GOBIN="$ROOT/.tools/bin" go install "github.com/nats-io/nats-server/v2@$NATS_VERSION" ||
		die "go install github.com/nats-io/nats-server/v2@$NATS_VERSION failed"
}

# secret prints a new random password: a letter first, then hex, which nats-server's
# config parser reads as a string whatever the digits (see deploy/nats/accounts.conf).
secret() {
	printf 'brr_%s' "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
}

# make_secrets writes secrets.env and the CLI's environment files once; later runs
# reuse them, so that the cluster's data stays readable.
make_secrets() {
	if [[ ! -f "$DIR/secrets.env" ]]; then
		(
			umask 077
			{
				echo "# Passwords of the local brr cluster (make cluster-up). Keep this file private."
				for name in WORKER PUBLISHER SUBSCRIBER ADMIN; do
					echo "BRR_${name}_PASSWORD=$(secret)"
				done
				echo "BRR_REPO_PASSWORD=$(secret)"
			} >"$DIR/secrets.env"
		)
		note "generated passwords in $DIR/secrets.env (mode 0600)"
	fi
	# shellcheck source=/dev/null
	source "$DIR/secrets.env"
	(
		umask 077
		printf 'export BRR_NATS_URL=%s\nexport BRR_NATS_USER=publisher\nexport BRR_NATS_PASSWORD=%s\n' \
			"$URLS" "$BRR_PUBLISHER_PASSWORD" >"$DIR/publisher.env"
		printf 'export BRR_NATS_URL=%s\nexport BRR_NATS_USER=admin\nexport BRR_NATS_PASSWORD=%s\n' \
			"$URLS" "$BRR_ADMIN_PASSWORD" >"$DIR/admin.env"
	)
}

# start_node starts NATS node $1 unless it runs.
start_node() {
	local i="$1" pidfile="$DIR/nats-$1.pid" client=$((4221 + $1)) route=$((6221 + $1)) http=$((8221 + $1))
	if alive "$pidfile" nats-server; then
		note "nats-$i already running (pid $(<"$pidfile"))"
		return 0
	fi
	for port in "$client" "$route" "$http"; do
		port_in_use "$port" && die "port $port is in use by another program: stop it, or run the cluster elsewhere"
	done
	mkdir -p "$DIR/nats-$i"
	NATS_NAME="brr-nats-$i" \
		NATS_LISTEN="127.0.0.1:$client" \
		NATS_HTTP="127.0.0.1:$http" \
		NATS_CLUSTER_LISTEN="127.0.0.1:$route" \
		NATS_ROUTES="[nats://127.0.0.1:6222, nats://127.0.0.1:6223, nats://127.0.0.1:6224]" \
		NATS_STORE="$DIR/nats-$i/jetstream" \
		BRR_WORKER_PASSWORD="$BRR_WORKER_PASSWORD" \
		BRR_PUBLISHER_PASSWORD="$BRR_PUBLISHER_PASSWORD" \
		BRR_SUBSCRIBER_PASSWORD="$BRR_SUBSCRIBER_PASSWORD" \
		BRR_ADMIN_PASSWORD="$BRR_ADMIN_PASSWORD" \
		nohup "$NATS_SERVER" -c "$NATS_CONF" -l "$DIR/nats-$i.log" >/dev/null 2>&1 &
	echo $! >"$pidfile"
	note "nats-$i started (pid $!): clients 127.0.0.1:$client, routes :$route, monitoring :$http"
}

# wait_jetstream waits until every node's /healthz says its JetStream is up and current
# with the cluster's meta leader.
wait_jetstream() {
	local i n
	for ((n = 0; n < 300; n++)); do
		for i in "${NODES[@]}"; do
			alive "$DIR/nats-$i.pid" nats-server || {
				tail -n 20 "$DIR/nats-$i.log" >&2
				die "nats-$i exited (log: $DIR/nats-$i.log)"
			}
		done
		if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:8222/healthz" 2>/dev/null &&
			curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:8223/healthz" 2>/dev/null &&
			curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:8224/healthz" 2>/dev/null; then
			return 0
		fi
		sleep 0.2
	done
	die "JetStream not ready on all nodes after 60s: see $DIR/nats-*.log"
}

# start_worker starts worker $1 unless it runs, and waits until it is ready. Right after
# the nodes restart, their streams may still be electing leaders, and a worker that
# cannot set up its streams in time exits: it is started again, up to 5 times, as a
# supervisor (systemd, Kubernetes, compose) would.
start_worker() {
	local i="$1" pidfile="$DIR/worker-$1.pid" http=$((8079 + $1)) log="$DIR/worker-$1.log" pid attempt n
	if alive "$pidfile" brr-worker; then
		note "worker-$i already running (pid $(<"$pidfile"))"
		return 0
	fi
	port_in_use "$http" && die "port $http is in use by another program: stop it first"
	mkdir -p "$DIR/worker-$i"
	for ((attempt = 1; attempt <= 5; attempt++)); do
		BRR_NATS_PASSWORD="$BRR_WORKER_PASSWORD" BRR_REPO_PASSWORD="$BRR_REPO_PASSWORD" \
			nohup "$WORKER" --config "$WORKER_CONF" --data-dir "$DIR/worker-$i" \
			--http "127.0.0.1:$http" --log-format json >>"$log" 2>&1 &
		pid=$!
		echo "$pid" >"$pidfile"
		for ((n = 0; n < 450; n++)); do
			if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$http/readyz" 2>/dev/null; then
				note "worker-$i ready (pid $pid): http://127.0.0.1:$http, data $DIR/worker-$i"
				return 0
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$log" >&2
			die "worker-$i not ready after 90s (log: $log)"
		fi
		note "worker-$i exited while starting (attempt $attempt of 5): $(grep '"level":"error"' "$log" | tail -n 1 | cut -c1-200)"
		sleep 2
	done
	tail -n 20 "$log" >&2
	die "worker-$i did not start (log: $log)"
}

main() {
	need_cmd curl
	install_nats_server
	build_binaries
	mkdir -p "$DIR"
	chmod 700 "$DIR"
	make_secrets

	step "NATS: 3 nodes from deploy/nats/cluster.conf"
	for i in "${NODES[@]}"; do
		start_node "$i"
	done
	wait_jetstream
	note "JetStream cluster ready (all nodes' /healthz OK)"

	# One worker first: it creates the streams and the repository; the others then open
	# what it made instead of racing it.
	step "brr-workers: 3, from deploy/worker/cluster.yaml (streams and repository on 3 nodes)"
	for i in "${NODES[@]}"; do
		start_worker "$i"
	done

	local rel="${DIR#"$ROOT"/}"
	step "the cluster is up"
	cat <<EOF
    Use it as the publisher (jobs, events, results), with the CLI in bin/:
      source $rel/publisher.env
      bin/brr backup "\$PWD/docs" --wait
      bin/brr workers; bin/brr events
    Dead letters and schedules need the admin: source $rel/admin.env
    Logs: $rel/*.log    NATS monitoring: http://127.0.0.1:8222/jsz
    Stop: make cluster-down (keeps the data)   make cluster-down PURGE=1 (removes it)
EOF
}

main "$@"
