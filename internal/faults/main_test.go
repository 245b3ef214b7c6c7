package faults_test

import (
	"os"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"
)

// enabled is set by BRR_FAULTS=1: the tests take minutes, so `make test` skips them.
var enabled = os.Getenv("BRR_FAULTS") == "1"

// bins are brr-worker and brr, built once when the tests run.
var bins testkit.Binaries

func TestMain(m *testing.M) {
	if !enabled {
		os.Exit(m.Run())
	}
	bins.NATS = true // TestClusterNodeLost kills nats-server processes
	os.Exit(bins.Main(m))
}

// faultTest skips t unless BRR_FAULTS=1, and logs how long it ran.
func faultTest(t *testing.T) {
	t.Helper()
	if !enabled {
		t.Skip("fault test: runs with BRR_FAULTS=1 (make test-faults)")
	}
	start := time.Now()
	t.Cleanup(func() { t.Logf("runtime %s", time.Since(start).Round(100*time.Millisecond)) })
}
