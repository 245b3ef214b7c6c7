// Command brr is the command line of brr for people and scripts: it publishes backup,
// restore and verify jobs to the workers over NATS, waits for them with a progress bar,
// lists jobs, snapshots and dead letters, follows events and measures the pipeline with
// ping jobs. It is built only on the public package github.com/brr-dev/brr, like any app.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// version is the build's version, set by the Makefile with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	m := &Main{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Getwd: os.Getwd, Version: version}
	code := m.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
