package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPreflightBeforeAnythingIsMade: an API key file the worker would refuse is refused
// by `brr-worker config` too, and the worker refuses it before it creates its data dir's
// repository and key, so that nothing is left behind to clean up.
func TestPreflightBeforeAnythingIsMade(t *testing.T) {
	short := filepath.Join(t.TempDir(), "api.key")
	if err := os.WriteFile(short, []byte("tooshort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, "http:\n  api_key_file: "+short+"\n")

	c := startProc(t, []string{"config", "--config", cfg, "--data-dir", t.TempDir()})
	if code := c.exited(t, 30*time.Second); code == 0 || !strings.Contains(c.out.String(), "holds a key of 8 characters") {
		t.Fatalf("brr-worker config with a short API key: exit %d\n%s\nwant it refused", code, c.out.String())
	}

	dataDir := filepath.Join(t.TempDir(), "data")
	p := startWorkerProc(t, dataDir, "--config", cfg)
	if code := p.exited(t, 60*time.Second); code == 0 || !strings.Contains(p.out.String(), "holds a key of 8 characters") {
		t.Fatalf("worker with a short API key: exit %d\n%s\nwant it refused", code, p.out.String())
	}
	for _, name := range []string{"repo", "local.key", "state.db"} {
		if _, err := os.Lstat(filepath.Join(dataDir, name)); err == nil {
			t.Errorf("the refused worker left %s in its data dir", name)
		}
	}
}
