// Package brr is the vocabulary of brr: backup, replication and recovery run as jobs on
// NATS JetStream. It holds the job and event types that travel as JSON messages, the
// subjects they travel on, and Client, which publishes jobs, waits for their results and
// subscribes to events over a NATS connection the caller owns.
//
// Apps import this package; the worker (cmd/worker) and the CLI (cmd/publisher) are built
// on it. It imports only the standard library and nats.go, so any app can take it in
// without the worker's dependencies.
package brr
