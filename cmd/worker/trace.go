package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// startTrace writes a Go execution trace of the worker to path until the returned func is
// called (the worker exits): a hidden debugging aid (BRR_TRACE=FILE), used to find where
// the latency tail of `make bench-pipeline` goes (docs/performance.md). "" traces nothing.
func startTrace(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = trace.Start(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "brr-worker: BRR_TRACE: %v\n", err)
		return func() {}
	}
	return func() {
		trace.Stop()
		_ = f.Close()
	}
}

// startCPUProfile writes a CPU profile of the worker to path until the returned func is
// called (the worker exits): a hidden debugging aid (BRR_CPUPROFILE=FILE), used for the
// per-job shares of `make bench-pipeline` (docs/performance.md). "" profiles nothing.
func startCPUProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "brr-worker: BRR_CPUPROFILE: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}
