package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartTrace: BRR_TRACE=FILE writes a Go execution trace there until the worker
// stops; unset, nothing is written.
func TestStartTrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker.trace")
	stop := startTrace(path)
	for i := range 1000 {
		_ = strings.Repeat("x", i) // something to trace
	}
	stop()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "go 1.") {
		t.Fatalf("%s is not a Go execution trace: starts %q", path, data[:min(len(data), 16)])
	}
	startTrace("")() // no file, no panic
}

// TestStartCPUProfile: BRR_CPUPROFILE=FILE writes a CPU profile there until the worker
// stops (a gzipped protocol buffer); unset, nothing is written.
func TestStartCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker.cpu")
	stop := startCPUProfile(path)
	for i := range 1000 {
		_ = strings.Repeat("x", i)
	}
	stop()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		t.Fatalf("%s is not a gzipped profile: starts %q", path, data[:min(len(data), 16)])
	}
	startCPUProfile("")()
}
