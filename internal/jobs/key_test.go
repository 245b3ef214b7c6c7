package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/testkit"
)

func keyJob(e *jobs.Engine, id string, a brr.KeyJob) (*brr.KeyResult, error) {
	return e.Key(context.Background(), &brr.Job{ID: id, Kind: brr.KindKey, By: "ops@host", Args: &a}, a)
}

// keySetup is setup with a key directory.
func keySetup(t *testing.T) *bundle {
	t.Helper()
	b := setup(t)
	b.engine.KeyDir = filepath.Join(t.TempDir(), "keys")
	return b
}

func TestKeyAddGenerated(t *testing.T) {
	b := keySetup(t)
	res, err := keyJob(b.engine, "key-add-1", brr.KeyJob{Action: brr.KeyAdd})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Generated || res.Added == nil || res.Worker != "worker-1" || res.Repo != "local" || res.Current != b.repo.KeyID() ||
		res.KeyFile != filepath.Join(b.engine.KeyDir, "local-key-add-1.key") || len(res.Keys) != 2 {
		t.Fatalf("result %+v", res)
	}
	fi, err := os.Stat(res.KeyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", fi, err)
	}
	pw, _ := os.ReadFile(res.KeyFile)
	secret := strings.TrimSpace(string(pw))
	if k := res.Keys[1]; k.ID != res.Added.ID || k.Host != "testhost" || k.User != "ops@host" || k.Current || !strings.HasPrefix(k.KDF, "argon2id t=1 m=1024KiB p=1") {
		t.Errorf("added key as listed: %+v", k)
	}
	if !res.Keys[0].Current {
		t.Errorf("the worker's own key is not marked current: %+v", res.Keys[0])
	}
	// The result travels in events and BRR_RESULTS: it never holds the password.
	if out, _ := json.Marshal(res); strings.Contains(string(out), secret) {
		t.Fatalf("the result holds the password: %s", out)
	}

	// The generated password opens the repository, with the new key.
	r, err := openRepo(t, b.dir, []byte(secret))
	if err != nil {
		t.Fatalf("open with the new password: %v", err)
	}
	if r.KeyID() != res.Added.ID {
		t.Fatalf("opened with key %s, want %s", r.KeyID(), res.Added.ID)
	}

	// Delivered again: the same key, none added.
	again, err := keyJob(b.engine, "key-add-1", brr.KeyJob{Action: brr.KeyAdd})
	if err != nil || again.Added.ID != res.Added.ID || len(again.Keys) != 2 {
		t.Fatalf("redelivered add = %+v, %v; want the same key and 2 keys", again, err)
	}
	list, err := keyJob(b.engine, "key-list-1", brr.KeyJob{Action: brr.KeyList})
	if err != nil || len(list.Keys) != 2 || list.Added != nil {
		t.Fatalf("list = %+v, %v", list, err)
	}
}

func TestKeyAddPasswordFile(t *testing.T) {
	b := keySetup(t)
	dir := b.engine.KeyDir
	add := func(name string) error {
		_, err := keyJob(b.engine, "add-"+strings.ReplaceAll(name, ".", "_"), brr.KeyJob{Action: brr.KeyAdd, PasswordFile: name})
		return err
	}
	if err := add("missing.pw"); !brr.IsPermanent(err) || !strings.Contains(err.Error(), "mkdir -m 700") {
		t.Fatalf("no key directory: %v", err)
	}
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, filepath.Join(dir, "new.pw"), []byte("  a new long password\n"), 0o600)
	if err := add("new.pw"); !brr.IsPermanent(err) || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("a key directory others may write to: %v", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := add("missing.pw"); !brr.IsPermanent(err) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("a missing file: %v", err)
	}
	testkit.WriteFile(t, filepath.Join(dir, "open.pw"), []byte("a readable password"), 0o644)
	if err := add("open.pw"); !brr.IsPermanent(err) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a file others may read: %v", err)
	}
	testkit.WriteFile(t, filepath.Join(dir, "short.pw"), []byte("abc\n"), 0o600)
	if err := add("short.pw"); !brr.IsPermanent(err) || !strings.Contains(err.Error(), "at least 8") {
		t.Fatalf("a short password: %v", err)
	}
	// A symlink to a file the publisher knows the content of (it could be any file the
	// worker can read) is refused.
	known := filepath.Join(t.TempDir(), "known")
	testkit.WriteFile(t, known, []byte("a password the attacker knows"), 0o600)
	if err := os.Symlink(known, filepath.Join(dir, "link.pw")); err != nil {
		t.Fatal(err)
	}
	if err := add("link.pw"); !brr.IsPermanent(err) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a symlink: %v", err)
	}
	if _, err := openRepo(t, b.dir, []byte("a password the attacker knows")); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("the symlinked password opens the repository: %v", err)
	}
	// A path is refused before it reaches the worker's files.
	if _, err := keyJob(b.engine, "add-path", brr.KeyJob{Action: brr.KeyAdd, PasswordFile: "../../etc/hostname"}); !errors.Is(err, brr.ErrInvalid) {
		t.Fatalf("a path: %v", err)
	}

	if err := add("new.pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := openRepo(t, b.dir, []byte("a new long password")); err != nil {
		t.Fatalf("open with the new password: %v", err)
	}
	keys, _ := b.repo.Keys(context.Background())
	if len(keys) != 2 {
		t.Fatalf("%d keys after the refusals and one add, want 2", len(keys))
	}
}

func TestKeyRemoveRefused(t *testing.T) {
	b := keySetup(t)
	ctx := context.Background()
	own := b.repo.KeyID()

	// The worker's own key.
	_, err := keyJob(b.engine, "rm-own", brr.KeyJob{Action: brr.KeyRemove, ID: own[:8]})
	if !errors.Is(err, repo.ErrKeyInUse) || !brr.IsPermanent(err) {
		t.Fatalf("remove the worker's key: %v, want a permanent ErrKeyInUse", err)
	}
	for _, want := range []string{"worker-1", "brr key add --repo local", "restart", "brr key remove " + own[:8]} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if _, err := openRepo(t, b.dir, []byte(testkit.Password)); err != nil {
		t.Fatalf("the refused key no longer opens: %v", err)
	}
	// An unknown key.
	if _, err := keyJob(b.engine, "rm-none", brr.KeyJob{Action: brr.KeyRemove, ID: "abcdef12"}); !errors.Is(err, brr.ErrNotFound) || !strings.Contains(err.Error(), "brr key list") {
		t.Fatalf("remove an unknown key: %v", err)
	}

	// A second worker opens the repository with a second key; the first removes that
	// key, and the second, whose key is gone, is refused the first's: the last one.
	if _, err := b.repo.AddKeyFor(ctx, []byte("second worker's password"), repo.KeyMeta{}); err != nil {
		t.Fatal(err)
	}
	r2, err := openRepo(t, b.dir, []byte("second worker's password"))
	if err != nil {
		t.Fatal(err)
	}
	e2 := &jobs.Engine{Repos: map[string]*repo.Repository{"local": r2}, Worker: "worker-2", KeyDir: b.engine.KeyDir}
	res, err := keyJob(b.engine, "rm-second", brr.KeyJob{Action: brr.KeyRemove, ID: r2.KeyID()})
	if err != nil || res.Removed == nil || res.Removed.ID != r2.KeyID() || len(res.Keys) != 1 {
		t.Fatalf("remove the second worker's key from the first: %+v, %v", res, err)
	}
	if _, err := openRepo(t, b.dir, []byte("second worker's password")); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("the removed key still opens: %v", err)
	}
	_, err = keyJob(e2, "rm-last", brr.KeyJob{Action: brr.KeyRemove, ID: own})
	if !errors.Is(err, repo.ErrLastKey) || !brr.IsPermanent(err) || !strings.Contains(err.Error(), "add another key first") {
		t.Fatalf("remove the last key: %v, want a permanent ErrLastKey", err)
	}
	if _, err := openRepo(t, b.dir, []byte(testkit.Password)); err != nil {
		t.Fatalf("the last key no longer opens: %v", err)
	}
}

func TestKeyPasswd(t *testing.T) {
	b := keySetup(t)
	ctx := context.Background()
	old, err := b.repo.AddKeyFor(ctx, []byte("the old password"), repo.KeyMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(b.engine.KeyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, filepath.Join(b.engine.KeyDir, "new.pw"), []byte("the new password\n"), 0o600)

	// passwd of the worker's own key is refused before anything is added.
	if _, err := keyJob(b.engine, "pw-own", brr.KeyJob{Action: brr.KeyPasswd, ID: b.repo.KeyID(), PasswordFile: "new.pw"}); !errors.Is(err, repo.ErrKeyInUse) {
		t.Fatalf("passwd of the worker's key: %v, want ErrKeyInUse", err)
	}
	if keys, _ := b.repo.Keys(ctx); len(keys) != 2 {
		t.Fatalf("%d keys after a refused passwd, want 2", len(keys))
	}

	res, err := keyJob(b.engine, "pw-1", brr.KeyJob{Action: brr.KeyPasswd, ID: old.ID[:6], PasswordFile: "new.pw"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed == nil || res.Removed.ID != old.ID || res.Added == nil || res.Generated || len(res.Keys) != 2 {
		t.Fatalf("passwd result %+v", res)
	}
	if _, err := openRepo(t, b.dir, []byte("the old password")); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("the old password still opens: %v", err)
	}
	r, err := openRepo(t, b.dir, []byte("the new password"))
	if err != nil || r.KeyID() != res.Added.ID {
		t.Fatalf("open with the new password: %v", err)
	}
	// Delivered again, after it did it all: the same outcome, nothing more.
	again, err := keyJob(b.engine, "pw-1", brr.KeyJob{Action: brr.KeyPasswd, ID: old.ID[:6], PasswordFile: "new.pw"})
	if err != nil || again.Added.ID != res.Added.ID || len(again.Keys) != 2 {
		t.Fatalf("redelivered passwd = %+v, %v", again, err)
	}
}

func TestKeyAppendOnly(t *testing.T) {
	opts := testkit.RepoOptions()
	opts.AppendOnly = true
	b := setupWith(t, opts)
	b.engine.KeyDir = filepath.Join(t.TempDir(), "keys")
	ctx := context.Background()
	other, err := b.repo.AddKeyFor(ctx, []byte("another password"), repo.KeyMeta{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := keyJob(b.engine, "ao-add", brr.KeyJob{Action: brr.KeyAdd})
	if err != nil || res.Added == nil {
		t.Fatalf("add a key to an append-only repo: %+v, %v", res, err)
	}
	_, err = keyJob(b.engine, "ao-rm", brr.KeyJob{Action: brr.KeyRemove, ID: other.ID})
	wantAppendOnly(t, "remove a key", err)
	_, err = keyJob(b.engine, "ao-pw", brr.KeyJob{Action: brr.KeyPasswd, ID: other.ID})
	wantAppendOnly(t, "passwd", err)
	if keys, _ := b.repo.Keys(ctx); len(keys) != 3 {
		t.Fatalf("%d keys, want 3: nothing removed", len(keys))
	}
}

// A removal waits for the key lease of the repository (snoozed, not failed), so that two
// workers cannot each remove the key the other leaves; add and list do not need it.
func TestKeyRemoveTakesLease(t *testing.T) {
	b := keySetup(t)
	l := newKVLeaser(t)
	b.engine.Leases = l
	ctx := context.Background()
	other, err := b.repo.AddKeyFor(ctx, []byte("another password"), repo.KeyMeta{})
	if err != nil {
		t.Fatal(err)
	}
	_, release, err := l.Acquire(ctx, jobs.KeyLeaseKey(b.repo))
	if err != nil {
		t.Fatal(err)
	}
	_, err = keyJob(b.engine, "rm-leased", brr.KeyJob{Action: brr.KeyRemove, ID: other.ID})
	if _, snoozed := brr.SnoozeDelay(err); !snoozed {
		t.Fatalf("remove while another holds the key lease: %v, want a snooze", err)
	}
	if _, err := b.repo.FindKey(ctx, other.ID); err != nil {
		t.Fatalf("the key went while the lease was held elsewhere: %v", err)
	}
	if _, err := keyJob(b.engine, "list-leased", brr.KeyJob{Action: brr.KeyList}); err != nil {
		t.Fatalf("list while the key lease is held: %v", err)
	}
	release()
	if _, err := keyJob(b.engine, "rm-leased", brr.KeyJob{Action: brr.KeyRemove, ID: other.ID}); err != nil {
		t.Fatalf("remove after the lease was released: %v", err)
	}
}

// A key list marks each key with the workers that say they use it (KeyUsers, from the
// heartbeats), not only the key of the worker that ran the job: in a pool being rotated,
// workers use different keys.
func TestKeyListUsedBy(t *testing.T) {
	b := keySetup(t)
	added, err := keyJob(b.engine, "key-add-u", brr.KeyJob{Action: brr.KeyAdd})
	if err != nil {
		t.Fatal(err)
	}
	own, other := b.repo.KeyID(), added.Added.ID
	b.engine.KeyUsers = func(repo string) map[string][]string {
		if repo != "local" {
			t.Errorf("KeyUsers(%q), want local", repo)
		}
		return map[string][]string{own: {"worker-1"}, other: {"worker-2", "worker-3"}}
	}
	list, err := keyJob(b.engine, "key-list-u", brr.KeyJob{Action: brr.KeyList})
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]string{}
	for _, k := range list.Keys {
		used[k.ID] = strings.Join(k.UsedBy, ",")
	}
	if used[own] != "worker-1" || used[other] != "worker-2,worker-3" {
		t.Fatalf("used by = %v; want worker-1 for %s, worker-2,worker-3 for %s", used, own, other)
	}
}
