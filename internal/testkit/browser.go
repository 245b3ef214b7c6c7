package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// FindChromium returns the path of a Chromium or Chrome binary: $BRR_CHROMIUM, else the
// first of the usual names on PATH. Without one the test is skipped, except in CI
// (CI=true), where .ci/run installs Chromium and a missing one is a failure.
func FindChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("BRR_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const how = "no Chromium found (looked for $BRR_CHROMIUM, chromium, chromium-browser, google-chrome, headless-shell); install it with: apt-get install chromium"
	if os.Getenv("CI") == "true" {
		t.Fatal(how)
	}
	t.Skip(how)
	return ""
}

// ArtifactDir is where tests leave files for people to look at: $BRR_TEST_ARTIFACTS,
// else .artifacts/ at the top of the repository (for tests of a package two levels
// below it, internal/PKG).
func ArtifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BRR_TEST_ARTIFACTS")
	if dir == "" {
		abs, err := filepath.Abs("../../.artifacts")
		if err != nil {
			t.Fatal(err)
		}
		dir = abs
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create artifact dir: %v", err)
	}
	return dir
}
