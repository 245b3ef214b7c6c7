package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// keyCLI runs `brr key ...` with --json against w and returns the job's final event; it
// fails the test unless the exit status is wantCode.
func keyCLI(t *testing.T, w *testkit.Worker, wantCode int, args ...string) (*brr.Event, string) {
	t.Helper()
	stdout, stderr, code := bins.RunCLI(t, nil, append([]string{"--nats", w.NATSURL, "--json", "key"}, args...)...)
	if code != wantCode {
		t.Fatalf("brr key %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, stdout, stderr)
	}
	e, err := brr.DecodeEvent([]byte(strings.TrimSpace(stdout)))
	if err != nil {
		t.Fatalf("brr key %s printed %q: %v", strings.Join(args, " "), stdout, err)
	}
	return e, stderr
}

// opens reports whether password opens the repository in dir (the worker keeps it open
// meanwhile: a reader beside it).
func opens(t *testing.T, dir, password string) bool {
	t.Helper()
	be, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(context.Background(), be, []byte(password), repo.Options{})
	if errors.Is(err, repo.ErrWrongPassword) {
		be.Close()
		return false
	}
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	r.Close()
	return true
}

// TestKeyRotation rotates the key of a worker's repository with the CLI, as
// docs/operations.md says: add a key, point the worker at it, restart, remove the old
// one; and checks what is refused on the way.
func TestKeyRotation(t *testing.T) {
	base := t.TempDir()
	repoDir := filepath.Join(base, "repo")
	keyFile := filepath.Join(base, "local.key")
	const oldPassword = "the first password of repo local"
	testkit.WriteFile(t, keyFile, []byte(oldPassword+"\n"), 0o600)
	w := bins.StartWorker(t, testkit.WorkerOptions{Config: "repos:\n  local: {url: \"file://" + repoDir + "\", key_file: " + keyFile + "}\n"})
	_, c := testkit.Connect(t, w.NATSURL)
	ctx := testkit.Context(t, 3*time.Minute)

	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 7, Sizes: []int{64 << 10, 10}})
	pub, err := c.Publish(ctx, brr.BackupJob{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, pub.ID, nil); err != nil {
		t.Fatalf("backup: %v", err)
	}

	e, _ := keyCLI(t, w, 0, "list", "--repo", "local")
	list := e.Result.Key
	if len(list.Keys) != 1 || !list.Keys[0].Current || list.Current != list.Keys[0].ID || list.Worker != w.ID {
		t.Fatalf("list = %+v", list)
	}
	oldKey := list.Current
	// USED BY comes from the heartbeats, in which the worker says which key it opened
	// each repo with: the key list marks every worker's key, not only the answering one's.
	usedBy := func(key string) []string {
		e, _ := keyCLI(t, w, 0, "list", "--repo", "local")
		for _, k := range e.Result.Key.Keys {
			if k.ID == key {
				return k.UsedBy
			}
		}
		return nil
	}
	testkit.Eventually(t, time.Minute, "the key list to say that the worker uses its key", func() bool {
		return slices.Equal(usedBy(oldKey), []string{w.ID})
	})

	// The worker's own key is not removed from under it; the refusal says how to rotate.
	_, stderr := keyCLI(t, w, 1, "remove", oldKey[:8], "--repo", "local")
	for _, want := range []string{"brr key add --repo local", "restart", "brr key remove " + oldKey[:8]} {
		if !strings.Contains(stderr, want) {
			t.Errorf("refusal %q does not say %q", stderr, want)
		}
	}

	// 1. Add a key: the worker generates its password into its key directory.
	e, _ = keyCLI(t, w, 0, "add", "--repo", "local")
	added := e.Result.Key
	if added.Added == nil || !added.Generated || filepath.Dir(added.KeyFile) != filepath.Join(w.DataDir, "keys") || len(added.Keys) != 2 {
		t.Fatalf("add = %+v", added)
	}
	newPassword, err := os.ReadFile(added.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	// No password in the results bucket, nor in any event of the job.
	evs, err := c.Jobs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if data, _ := json.Marshal(ev); strings.Contains(string(data), strings.TrimSpace(string(newPassword))) || strings.Contains(string(data), oldPassword) {
			t.Fatalf("a password is in BRR_RESULTS: %s", data)
		}
	}
	if !opens(t, repoDir, strings.TrimSpace(string(newPassword))) || !opens(t, repoDir, oldPassword) {
		t.Fatal("after add, the old and the new password do not both open the repository")
	}

	// 2. Point the worker at the new password, 3. restart it.
	w.Stop(time.Minute)
	testkit.WriteFile(t, keyFile, newPassword, 0o600)
	w.Start()

	e, _ = keyCLI(t, w, 0, "list", "--repo", "local")
	if cur := e.Result.Key.Current; cur != added.Added.ID {
		t.Fatalf("after the restart the worker uses key %s, want the new %s", cur, added.Added.ID)
	}
	testkit.Eventually(t, time.Minute, "the key list to say that the restarted worker uses the new key", func() bool {
		return slices.Equal(usedBy(added.Added.ID), []string{w.ID}) && len(usedBy(oldKey)) == 0
	})
	// 4. Remove the old key.
	e, _ = keyCLI(t, w, 0, "remove", oldKey[:8], "--repo", "local")
	if r := e.Result.Key; r.Removed == nil || r.Removed.ID != oldKey || len(r.Keys) != 1 {
		t.Fatalf("remove = %+v", r)
	}
	if opens(t, repoDir, oldPassword) {
		t.Fatal("the old password still opens the repository")
	}
	// The last key, which is also the worker's own, stays.
	keyCLI(t, w, 1, "remove", added.Added.ID, "--repo", "local")

	// passwd of a key of the operator's, with a password put in the key directory.
	testkit.WriteFile(t, filepath.Join(w.DataDir, "keys", "ops.pw"), []byte("the operator's escrow password\n"), 0o600)
	e, _ = keyCLI(t, w, 0, "add", "--repo", "local", "--password-file", "ops.pw")
	ops := e.Result.Key.Added
	e, _ = keyCLI(t, w, 0, "passwd", ops.ID[:8], "--repo", "local")
	pw := e.Result.Key
	if pw.Removed == nil || pw.Removed.ID != ops.ID || pw.Added == nil || len(pw.Keys) != 2 {
		t.Fatalf("passwd = %+v", pw)
	}
	generated, _ := os.ReadFile(pw.KeyFile)
	if opens(t, repoDir, "the operator's escrow password") || !opens(t, repoDir, strings.TrimSpace(string(generated))) {
		t.Fatal("after passwd, the old password opens or the new one does not")
	}

	// The repository reads as before.
	snaps, err := c.Snapshots(ctx, "local", "")
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots after the rotation: %v, %v", snaps, err)
	}
	// And the human output names the current key.
	stdout, _, code := bins.RunCLI(t, nil, "--nats", w.NATSURL, "key", "list", "--repo", "local")
	if code != 0 || !strings.Contains(stdout, "* "+added.Added.ID[:8]) {
		t.Fatalf("brr key list printed (exit %d):\n%s", code, stdout)
	}
}
