package e2e_test

import (
	"os"
	"testing"

	"github.com/brr-dev/brr/internal/testkit"
)

// bins are brr-worker and brr, built once for every test here.
var bins testkit.Binaries

func TestMain(m *testing.M) { os.Exit(bins.Main(m)) }
