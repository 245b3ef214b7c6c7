// Package testkit is what brr's tests share: brr-worker and brr built once per test
// binary and run as child processes, free loopback addresses, a client connection, polls
// and deadlines, components run until the test ends, files and source trees written and
// compared, a log buffer safe to read while it is written, repositories that open in a
// millisecond, and the real storage servers of the s3:// and sftp:// backends (versitygw
// and OpenSSH's sshd, StartS3 and StartSSHD) on loopback. It is a normal package so that tests in every package can import it,
// but only tests import it: nothing built into brr-worker or brr depends on it. It
// imports none of the packages whose internal tests use it (internal/events, jobs,
// state, web), which is why wiring a worker's components together stays in those
// tests. Embedded nats-servers are in internal/natstest, beside it, which stays free of
// brr's own packages so that any package's internal tests can use it.
package testkit
