package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
)

// A key job lists, adds, removes or replaces the keys of a repository (repo/keys.go). It
// never carries a secret, and puts none in its result: a new key's password is generated
// here and written to a file in KeyDir, or read from a file that someone with access to
// this host put in KeyDir (docs/security.md, "Repository keys").

// KeyLeaseKey is the lease that key jobs that remove a key hold on a repository, so that
// two of them on two workers cannot each remove the key the other leaves.
func KeyLeaseKey(r *repo.Repository) string { return "keys-" + r.ID() }

// Password files a key job reads are at most this long, and their password at least
// minPasswordLen bytes once trimmed.
const (
	maxPasswordFile = 4 << 10
	minPasswordLen  = 8
)

// Key runs a key job against the repo it names.
func (e *Engine) Key(ctx context.Context, job *brr.Job, a brr.KeyJob) (*brr.KeyResult, error) {
	if err := a.Validate(); err != nil {
		return nil, brr.Permanent(err)
	}
	r, repoName, err := e.Repo(a.Repo)
	if err != nil {
		return nil, err
	}
	var jobID, by string
	if job != nil {
		jobID, by = job.ID, job.By
	}
	res := &brr.KeyResult{Action: a.Action, Repo: repoName, Worker: e.Worker, Current: r.KeyID()}
	if a.Action == brr.KeyRemove || a.Action == brr.KeyPasswd {
		if r.AppendOnly() {
			return nil, brr.Permanent(fmt.Errorf("key %s on repo %s: %w: removing a key deletes an object of the repository, which this worker never does here; "+
				"run it from a worker whose config does not set append_only for repo %s and whose storage credential may delete (adding a key works here)",
				a.Action, repoName, repo.ErrAppendOnly, repoName))
		}
		leaseCtx, release, err := e.lease(ctx, KeyLeaseKey(r))
		if err != nil {
			return nil, err
		}
		defer release()
		ctx = leaseCtx
	}
	switch a.Action {
	case brr.KeyAdd:
		err = e.addKey(ctx, r, repoName, a, jobID, by, res)
	case brr.KeyRemove:
		err = e.removeKey(ctx, r, repoName, a.ID, res)
	case brr.KeyPasswd:
		err = e.passwdKey(ctx, r, repoName, a, jobID, by, res)
	}
	if err != nil {
		return nil, err
	}
	keys, err := r.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the keys of repo %s: %w", repoName, err)
	}
	res.Keys = make([]brr.KeyInfo, 0, len(keys))
	var users map[string][]string
	if e.KeyUsers != nil {
		users = e.KeyUsers(repoName)
	}
	for _, k := range keys {
		info := keyInfo(k, r.KeyID())
		info.UsedBy = users[k.ID]
		res.Keys = append(res.Keys, info)
	}
	return res, nil
}

// runKey runs a key job; it causes no event but its lifecycle.
func (e *Engine) runKey(ctx context.Context, job *brr.Job, a brr.KeyJob, _ brr.Reporter) (*brr.Outcome, error) {
	res, err := e.Key(ctx, job, a)
	if err != nil {
		return nil, err
	}
	return &brr.Outcome{Result: &brr.Result{Key: res}}, nil
}

func keyInfo(k repo.KeyInfo, current string) brr.KeyInfo {
	out := brr.KeyInfo{ID: k.ID, Created: k.Created, Host: k.Host, User: k.User, Current: k.ID == current}
	if k.Err != nil {
		out.Error = k.Err.Error()
		return out
	}
	out.KDF = fmt.Sprintf("%s t=%d m=%dKiB p=%d", k.KDF, k.Params.Time, k.Params.MemoryKiB, k.Params.Threads)
	return out
}

// addKey adds a key for the password a names (or a generated one) and fills res. A job
// delivered again finds the key it added, by its job id, and adds none.
func (e *Engine) addKey(ctx context.Context, r *repo.Repository, repoName string, a brr.KeyJob, jobID, by string, res *brr.KeyResult) error {
	if e.KeyDir == "" {
		return brr.Permanent(fmt.Errorf("key %s on repo %s: worker %s has no key directory, so it adds no keys", a.Action, repoName, e.Worker))
	}
	if jobID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		jobID = hex.EncodeToString(b[:])
	}
	var path string
	var password []byte
	var err error
	if a.PasswordFile != "" {
		path = filepath.Join(e.KeyDir, a.PasswordFile)
		password, err = e.readPasswordFile(path)
	} else {
		path = filepath.Join(e.KeyDir, repoName+"-"+jobID+".key")
		password, err = e.generatePassword(path)
		res.Generated = true
	}
	if err != nil {
		return err
	}
	res.KeyFile = path
	keys, err := r.Keys(ctx)
	if err != nil {
		return fmt.Errorf("list the keys of repo %s: %w", repoName, err)
	}
	for _, k := range keys {
		if k.JobID == jobID && k.Err == nil {
			info := keyInfo(k, r.KeyID())
			res.Added = &info
			return nil
		}
	}
	k, err := r.AddKeyFor(ctx, password, repo.KeyMeta{Host: e.Host, User: by, JobID: jobID})
	if err != nil {
		return fmt.Errorf("add a key to repo %s: %w", repoName, err)
	}
	info := keyInfo(k, r.KeyID())
	res.Added = &info
	return nil
}

// readPasswordFile reads a password from a file in KeyDir that someone with access to
// this host put there. The directory and the file must be private to this worker's
// user: a job names the file, so a file others may write could hold a password they
// chose, and one others may read a password they know.
func (e *Engine) readPasswordFile(path string) ([]byte, error) {
	bad := func(format string, args ...any) error {
		return brr.Permanent(fmt.Errorf("password file %s: "+format, append([]any{path}, args...)...))
	}
	if err := checkKeyDir(e.KeyDir); err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, bad("does not exist on worker %s; put the new password there first (umask 077), or leave out --password-file and the worker generates one", e.Worker)
	}
	if err != nil {
		return nil, bad("%v", err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, bad("is not a regular file (a symlink or a directory); put the password in a file of its own")
	case fi.Mode().Perm()&0o077 != 0:
		return nil, bad("mode %04o lets other users read or write it; chmod 600 it, and if others could read it, choose another password", fi.Mode().Perm())
	case fi.Size() > maxPasswordFile:
		return nil, bad("is %d bytes; a password file holds one password (at most %d bytes)", fi.Size(), maxPasswordFile)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return nil, bad("%v", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPasswordFile+1))
	if err != nil {
		return nil, bad("%v", err)
	}
	pw := strings.TrimSpace(string(data))
	if len(pw) < minPasswordLen {
		return nil, bad("holds %d bytes of password; use at least %d (a generated one: leave out --password-file)", len(pw), minPasswordLen)
	}
	return []byte(pw), nil
}

// generatePassword returns the password in path, which an earlier delivery of the same
// job wrote, or writes a new random one there (mode 0600, never over another file).
func (e *Engine) generatePassword(path string) ([]byte, error) {
	if err := os.MkdirAll(e.KeyDir, 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	if err := checkKeyDir(e.KeyDir); err != nil {
		return nil, err
	}
	if data, err := os.ReadFile(path); err == nil {
		if pw := strings.TrimSpace(string(data)); len(pw) >= minPasswordLen {
			return []byte(pw), nil
		}
		return nil, brr.Permanent(fmt.Errorf("key file %s exists and holds no password; remove it and run the job again", path))
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("generate a password: %w", err)
	}
	pw := hex.EncodeToString(key[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write the new password: %w", err)
	}
	if _, err := f.WriteString(pw + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write the new password: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write the new password: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("write the new password: %w", err)
	}
	return []byte(pw), nil
}

// checkKeyDir refuses a key directory that other users may write to (they could put a
// password of their choosing in it), or that is not a directory.
func checkKeyDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return brr.Permanent(fmt.Errorf("key directory %s does not exist; create it (mkdir -m 700) and put the password file in it", dir))
	}
	if err != nil {
		return fmt.Errorf("key directory: %w", err)
	}
	if !fi.IsDir() {
		return brr.Permanent(fmt.Errorf("key directory %s is not a directory", dir))
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return brr.Permanent(fmt.Errorf("key directory %s has mode %04o: other users may put files in it; chmod 700 it", dir, fi.Mode().Perm()))
	}
	return nil
}

// removeKey removes key id from r and fills res.
func (e *Engine) removeKey(ctx context.Context, r *repo.Repository, repoName, id string, res *brr.KeyResult) error {
	k, err := r.RemoveKey(ctx, id)
	if err != nil {
		return e.keyRefusal(r, repoName, id, err)
	}
	info := keyInfo(k, r.KeyID())
	res.Removed = &info
	return nil
}

// keyRefusal turns RemoveKey's error into one that says, in terms of workers and
// commands, what to do.
func (e *Engine) keyRefusal(r *repo.Repository, repoName, id string, err error) error {
	short := id
	if len(short) > 8 {
		short = short[:8]
	}
	switch {
	case errors.Is(err, repo.ErrKeyInUse):
		return brr.Permanent(fmt.Errorf("key %s is the key worker %s opened repo %s with (%w), so it is not removed from under it. "+
			"To rotate it: `brr key add --repo %s` (or --password-file NAME), point the key_file or password_env of repo %s on every worker that uses this key at the new password, "+
			"restart those workers, then `brr key remove %s --repo %s`; see docs/operations.md, \"Rotating a repository key\"",
			short, e.Worker, repoName, repo.ErrKeyInUse, repoName, repoName, short, repoName))
	case errors.Is(err, repo.ErrLastKey):
		return brr.Permanent(fmt.Errorf("key %s is the last key of repo %s (%w); without it nobody can read the repository: add another key first with `brr key add --repo %s`",
			short, repoName, repo.ErrLastKey, repoName))
	case errors.Is(err, brr.ErrNotFound):
		return brr.Permanent(fmt.Errorf("key %s is not in repo %s: %w; list the keys with `brr key list --repo %s`", short, repoName, err, repoName))
	}
	return fmt.Errorf("remove key %s of repo %s: %w", short, repoName, err)
}

// passwdKey replaces key a.ID with a key for a new password: it adds the new key, then
// removes the old one. What would refuse the removal refuses before anything is added.
// A job delivered again after it removed the old key finds its new key and succeeds.
func (e *Engine) passwdKey(ctx context.Context, r *repo.Repository, repoName string, a brr.KeyJob, jobID, by string, res *brr.KeyResult) error {
	old, err := r.FindKey(ctx, a.ID)
	if errors.Is(err, brr.ErrNotFound) && jobID != "" {
		keys, lerr := r.Keys(ctx)
		if lerr != nil {
			return fmt.Errorf("list the keys of repo %s: %w", repoName, lerr)
		}
		for _, k := range keys {
			if k.JobID == jobID {
				// An earlier delivery added the new key and removed the old one.
				return e.addKey(ctx, r, repoName, a, jobID, by, res)
			}
		}
	}
	if err != nil {
		return e.keyRefusal(r, repoName, a.ID, err)
	}
	if old.ID == r.KeyID() {
		return e.keyRefusal(r, repoName, old.ID, repo.ErrKeyInUse)
	}
	if err := e.addKey(ctx, r, repoName, a, jobID, by, res); err != nil {
		return err
	}
	return e.removeKey(ctx, r, repoName, old.ID, res)
}
