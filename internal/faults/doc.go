// Package faults holds the fault tests of brr: real brr-worker processes built from this
// tree, real nats-servers (single, restarted, a 3-node cluster), real repositories and a
// real small file system, under the faults an operator meets: workers killed mid-backup,
// the NATS server restarted with jobs queued, a cluster node lost, a worker cut off NATS,
// a full disk, a skewed clock. Each test counts what went through (jobs, events, bytes)
// and fails when anything was lost or done twice.
//
// They take minutes, so they run only with BRR_FAULTS=1 (make test-faults); without it
// every test skips and `make test` stays fast. The package has no code of its own.
package faults
