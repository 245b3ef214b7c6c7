// Package web is the worker's HTTP face for people and programs: the JSON API under
// /api/v1/ and the dashboard at /. The API is a thin layer over what the brr CLI does,
// built on the public brr.Client over the worker's own NATS connection: it publishes
// jobs, reads the job table, the event stream, snapshots and recovery points, and adds
// what only a long-running process can offer: a live event feed (Server-Sent Events fed
// by one NATS subscription per process) and analytics computed from job events and this
// worker's job records. Mutations need the API key as a Bearer token, and reads too when
// they are protected; every client address has a token bucket. The dashboard is one
// page of plain HTML, CSS and JavaScript embedded in the binary, with no build step.
package web
