// Package e2e holds the end-to-end tests of brr: real brr-worker and brr processes built
// from this tree, a real nats-server, real files. They kill workers, stop servers and check
// that jobs and events survive. The package has no code of its own.
package e2e
