package soak_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"
)

// enabled is set by BRR_SOAK=1: the soak takes 20 minutes or more, so `make test` skips it.
var enabled = os.Getenv("BRR_SOAK") == "1"

// defaultDuration is how long the mix runs when SOAK is not set.
const defaultDuration = 20 * time.Minute

// bins are brr-worker, brr and nats-server, built once when the soak runs.
var bins = testkit.Binaries{NATS: true}

func TestMain(m *testing.M) {
	if !enabled {
		os.Exit(m.Run())
	}
	os.Exit(bins.Main(m))
}

// duration is how long the mix runs: SOAK (a Go duration, "2h"), else 20 minutes.
func duration() (time.Duration, error) {
	s := os.Getenv("SOAK")
	if s == "" {
		return defaultDuration, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("SOAK=%q: want a positive Go duration such as 20m or 2h", s)
	}
	return d, nil
}
