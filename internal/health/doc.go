// Package health watches a pool of workers: every worker publishes a heartbeat
// (brr.events.health.worker) each interval, and the pool's checks (RPO per source,
// replication lag per target, repository verifies, disk, dead letters, a ping canary) run
// once per interval across the whole pool, not once per worker. Whose turn a check is
// comes from a compare-and-set on its key in the BRR_HEALTH bucket, so there is no
// leader to elect; the key also keeps the check's last results, so that the worker that
// runs it next publishes an event exactly when a status changes, plus a periodic summary.
// Every worker's Monitor follows that bucket and the heartbeats, and so sees the pool's
// health without running the checks itself: /readyz, the HTTP API and the metrics read it.
package health
