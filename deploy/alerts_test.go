package deploy_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// promtool finds promtool (Debian's prometheus package has it; .ci/run installs it).
// Without it the test is skipped, except in CI, where it fails.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found; .ci/run installs it (apt-get install prometheus)")
		}
		t.Skip("promtool not found: install it (apt-get install prometheus) to check deploy/prometheus/alerts.yml")
	}
	return path
}

// TestAlertRules checks deploy/prometheus/alerts.yml with promtool, then runs its unit
// tests (alerts_test.yml), which feed series named as the worker exports them and say
// which alerts fire when. That the names are the worker's is checked against a real
// worker's /metrics by cmd/worker's TestMetricsAfterRealJobs.
func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}
