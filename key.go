package brr

import (
	"fmt"
	"regexp"
	"time"
)

// The actions of a key job.
const (
	KeyList   = "list"
	KeyAdd    = "add"
	KeyRemove = "remove"
	KeyPasswd = "passwd"
)

// keyRefPattern is a key id (32 hex digits) or a prefix of at least 4.
var keyRefPattern = regexp.MustCompile(`^[0-9a-f]{4,32}$`)

// keyFileNamePattern is the name of a file in a worker's key directory
// (<data_dir>/keys): a base name, never a path.
var keyFileNamePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// KeyJob manages the keys of a repository: each key is the repository's master key
// wrapped with one password or key file, and any of them opens it. It never carries a
// secret (docs/security.md, "Repository keys"): a new key's password is either generated
// by the worker, which writes it to a file in its key directory (<data_dir>/keys) and
// says where, or read from a file that someone with access to the worker's host put
// there, named by PasswordFile.
type KeyJob struct {
	// Action is KeyList, KeyAdd, KeyRemove or KeyPasswd.
	Action string `json:"action"`
	Repo   string `json:"repo,omitempty"`
	// ID is the key to remove, or to replace with passwd: its id or a unique prefix of at
	// least 4 hex digits.
	ID string `json:"id,omitempty"`
	// PasswordFile, for add and passwd, is the name of a file in the worker's key
	// directory that holds the new password; empty means the worker generates one.
	PasswordFile string `json:"password_file,omitempty"`
}

// Kind returns KindKey.
func (KeyJob) Kind() Kind { return KindKey }

// Scope returns the repo.
func (a KeyJob) Scope() Scope { return Scope{Repo: a.Repo} }

// Validate checks the action and what it needs.
func (a KeyJob) Validate() error {
	switch a.Action {
	case KeyList, KeyAdd, KeyRemove, KeyPasswd:
	default:
		return fmt.Errorf("%w: key action %q: want list, add, remove or passwd", ErrInvalid, a.Action)
	}
	needsID := a.Action == KeyRemove || a.Action == KeyPasswd
	switch {
	case needsID && !keyRefPattern.MatchString(a.ID):
		return fmt.Errorf("%w: key %s: key id %q: want 4-32 hex digits of a key id (see `brr key list`)", ErrInvalid, a.Action, a.ID)
	case !needsID && a.ID != "":
		return fmt.Errorf("%w: key %s takes no key id", ErrInvalid, a.Action)
	}
	takesFile := a.Action == KeyAdd || a.Action == KeyPasswd
	switch {
	case a.PasswordFile != "" && !takesFile:
		return fmt.Errorf("%w: key %s takes no password file", ErrInvalid, a.Action)
	case a.PasswordFile != "" && !keyFileNamePattern.MatchString(a.PasswordFile):
		return fmt.Errorf("%w: password file %q: give the name of a file in the worker's key directory (<data_dir>/keys), not a path", ErrInvalid, a.PasswordFile)
	}
	return ValidateRepoName(a.Repo)
}

// KeyInfo is one key of a repository, as `brr key list` shows it: never its secret.
type KeyInfo struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// Host and User say where the key was added: the worker's host and who asked (empty
	// for keys from before key management).
	Host string `json:"host,omitempty"`
	User string `json:"user,omitempty"`
	// KDF is the key derivation function and its parameters, e.g. "argon2id t=1 m=65536KiB p=2".
	KDF string `json:"kdf"`
	// Current marks the key that the worker which ran the job opened the repo with:
	// other workers of the pool may use other keys (UsedBy).
	Current bool `json:"current,omitempty"`
	// UsedBy are the live workers of the pool that opened the repo with this key, as
	// their heartbeats say (WorkerInfo.RepoKeys), sorted; the worker that ran the job
	// counts once it has sent a heartbeat. Empty for a key no worker says it uses.
	UsedBy []string `json:"used_by,omitempty"`
	// Error says why a key object cannot be read; such a key opens nothing.
	Error string `json:"error,omitempty"`
}

// KeyResult is what a key job did.
type KeyResult struct {
	Action string `json:"action"`
	Repo   string `json:"repo"`
	// Worker ran the job; Current is the id of the key it opened the repo with.
	Worker  string `json:"worker"`
	Current string `json:"current"`
	// Keys are the repo's keys after the job, oldest first.
	Keys []KeyInfo `json:"keys"`
	// Added is the key that add or passwd added.
	Added *KeyInfo `json:"added,omitempty"`
	// KeyFile is, on the worker's host, the file that holds the password of the added
	// key: the one the job named, or the one the worker generated.
	KeyFile string `json:"key_file,omitempty"`
	// Generated says the worker generated the password in KeyFile.
	Generated bool `json:"generated,omitempty"`
	// Removed is the key that remove or passwd removed.
	Removed *KeyInfo `json:"removed,omitempty"`
}
