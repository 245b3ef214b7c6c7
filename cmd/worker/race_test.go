//go:build race

package main

// raceEnabled makes TestMain build the worker under test with -race too, so that
// `go test -race` checks the daemon, not only the test's own goroutines.
const raceEnabled = true
