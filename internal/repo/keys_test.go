package repo_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

func openWith(t *testing.T, be repo.Backend, pw string, opts repo.Options) *repo.Repository {
	t.Helper()
	r, err := repo.Open(context.Background(), be, []byte(pw), opts)
	if err != nil {
		t.Fatalf("Open with %q: %v", pw, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// reopenBackend opens the repository's directory again, as another process would: the
// Repository closes the backend it was opened with.
func reopenBackend(t *testing.T, dir string) repo.Backend {
	t.Helper()
	be, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return be
}

func TestKeyAddListRemove(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	be, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := testOpts
	opts.Host = "host-a"
	r, err := repo.Init(ctx, be, password, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.KeyID() == "" {
		t.Fatal("KeyID is empty after Init")
	}
	added, err := r.AddKeyFor(ctx, []byte("second password"), repo.KeyMeta{Host: "host-b", User: "alice", JobID: "job-1"})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := r.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != r.KeyID() || keys[1].ID != added.ID {
		t.Fatalf("keys %+v, want the init key %s then %s", keys, r.KeyID(), added.ID)
	}
	if k := keys[1]; k.Host != "host-b" || k.User != "alice" || k.JobID != "job-1" || k.KDF != "argon2id" || k.Params != opts.KDF || k.Created.IsZero() {
		t.Errorf("added key %+v", k)
	}
	if keys[0].Host != "host-a" {
		t.Errorf("init key host %q, want host-a", keys[0].Host)
	}

	// The new password opens the repository, through the new key object.
	r2 := openWith(t, reopenBackend(t, dir), "second password", testOpts)
	if r2.KeyID() != added.ID || r2.ID() != r.ID() {
		t.Fatalf("opened with key %s repo %s, want key %s repo %s", r2.KeyID(), r2.ID(), added.ID, r.ID())
	}

	// Neither can remove the key it was opened with.
	if _, err := r.RemoveKey(ctx, r.KeyID()); !errors.Is(err, repo.ErrKeyInUse) || !brr.IsPermanent(err) || !strings.Contains(err.Error(), "add a new key") {
		t.Fatalf("remove own key: %v, want permanent ErrKeyInUse saying how to rotate", err)
	}
	if _, err := r2.RemoveKey(ctx, added.ID[:8]); !errors.Is(err, repo.ErrKeyInUse) {
		t.Fatalf("remove own key by prefix: %v, want ErrKeyInUse", err)
	}
	// An unknown key.
	if _, err := r.RemoveKey(ctx, "00000000"); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("remove unknown key: %v, want ErrNotFound", err)
	}

	// r removes the second key: its password no longer opens the repository.
	if _, err := r.RemoveKey(ctx, added.ID[:10]); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Open(ctx, reopenBackend(t, dir), []byte("second password"), testOpts); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("open with the removed key's password: %v, want ErrWrongPassword", err)
	}
	openWith(t, reopenBackend(t, dir), testkit.Password, testOpts)

	// r2 (opened with the removed key) now finds the init key the last one.
	if _, err := r2.RemoveKey(ctx, r.KeyID()); !errors.Is(err, repo.ErrLastKey) || !strings.Contains(err.Error(), "add a key first") {
		t.Fatalf("remove the last key: %v, want ErrLastKey", err)
	}
	openWith(t, reopenBackend(t, dir), testkit.Password, testOpts)
}

// Changing a password is adding a key for the new one and removing the old key, from a
// process that opened the repository with another key.
func TestKeyPasswd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	be, _ := file.Open(dir)
	admin, err := repo.Init(ctx, be, []byte("admin password"), testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	old, err := admin.AddKeyFor(ctx, []byte("old password"), repo.KeyMeta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AddKeyFor(ctx, []byte("new password"), repo.KeyMeta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RemoveKey(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Open(ctx, reopenBackend(t, dir), []byte("old password"), testOpts); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("old password: %v, want ErrWrongPassword", err)
	}
	r := openWith(t, reopenBackend(t, dir), "new password", testOpts)
	if r.ID() != admin.ID() {
		t.Fatal("another repository")
	}
}

// KeyHint picks which of two keys that the same password opens is tried first.
func TestKeyHint(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	_ = be
	twin, err := r.AddKeyFor(ctx, password, repo.KeyMeta{})
	if err != nil {
		t.Fatal(err)
	}
	dir := be.Location()
	dir = strings.TrimPrefix(dir, "file://")
	for _, want := range []string{r.KeyID(), twin.ID} {
		opts := testOpts
		opts.KeyHint = want[:6]
		got := openWith(t, reopenBackend(t, dir), testkit.Password, opts)
		if got.KeyID() != want {
			t.Errorf("hint %s: opened with key %s", want[:6], got.KeyID())
		}
	}
}

func TestKeyAppendOnly(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	dir := strings.TrimPrefix(be.Location(), "file://")
	ao := testOpts
	ao.AppendOnly = true
	a := openWith(t, reopenBackend(t, dir), testkit.Password, ao)
	k, err := a.AddKeyFor(ctx, []byte("added while append-only"), repo.KeyMeta{})
	if err != nil {
		t.Fatalf("add a key to an append-only repository: %v", err)
	}
	openWith(t, reopenBackend(t, dir), "added while append-only", testOpts)
	_, err = a.RemoveKey(ctx, k.ID)
	if !errors.Is(err, repo.ErrAppendOnly) || !brr.IsPermanent(err) || !strings.Contains(err.Error(), "append_only") {
		t.Fatalf("remove a key of an append-only repository: %v, want permanent ErrAppendOnly", err)
	}
	if _, err := r.FindKey(ctx, k.ID); err != nil {
		t.Fatalf("the key is gone after a refused remove: %v", err)
	}
}

// A repository written before key management (testdata/repo-before-keys: two keys, a
// blob and a snapshot) opens with either password, reads as before, lists its keys
// without host or user, and takes a new key.
func TestRepoBeforeKeysOpens(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	copyDir(t, filepath.Join("testdata", "repo-before-keys"), dir)
	const repoID = "6b183349d38195a7d991a14f1b37a8a8"
	for _, pw := range []string{"old password one", "old password two"} {
		r := openWith(t, reopenBackend(t, dir), pw, testOpts)
		if r.ID() != repoID {
			t.Fatalf("repo id %s, want %s", r.ID(), repoID)
		}
		sns, err := r.Snapshots(ctx)
		if err != nil || len(sns) != 1 || sns[0].Source != "/fixture" {
			t.Fatalf("snapshots %v, %v", sns, err)
		}
		data, err := r.LoadBlob(ctx, repo.TreeBlob, sns[0].Tree, nil)
		if err != nil || !bytes.Equal(data, []byte("a blob written by brr before key management")) {
			t.Fatalf("blob %q, %v", data, err)
		}
	}
	r := openWith(t, reopenBackend(t, dir), "old password one", testOpts)
	keys, err := r.Keys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys %+v, %v", keys, err)
	}
	for _, k := range keys {
		if k.Err != nil || k.Host != "" || k.KDF != "argon2id" || k.Created.IsZero() {
			t.Errorf("old key %+v", k)
		}
	}
	if _, err := r.AddKeyFor(ctx, []byte("a new password"), repo.KeyMeta{Host: "h"}); err != nil {
		t.Fatal(err)
	}
	other := keys[0].ID
	if other == r.KeyID() {
		other = keys[1].ID
	}
	if _, err := r.RemoveKey(ctx, other); err != nil {
		t.Fatal(err)
	}
	openWith(t, reopenBackend(t, dir), "a new password", testOpts)
	openWith(t, reopenBackend(t, dir), "old password one", testOpts)
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}
