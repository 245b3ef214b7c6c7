// Package soak holds the soak test of brr: for a long while (20 minutes by default) it
// runs a mix of jobs (backups of trees that change between them, restores, replication,
// prune, verify with read-data, restore drills) through three brr-worker processes on a
// 3-node cluster of nats-server processes with R3 streams, kills a random worker with
// SIGKILL every minute and a random NATS node every five, and then checks what went
// through: every job ended once, nothing hung, every snapshot verifies and restores to
// what was backed up, and the workers' memory, goroutines and open files stayed within
// bounds.
//
// It runs only with BRR_SOAK=1 (make soak; SOAK=2h for longer); without it the test
// skips, so `make test` and CI never run it. The package has no code of its own.
package soak
