package brr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Version is the version of the JSON message format, carried in every message as "v".
// A message with another version is rejected, never guessed at.
const Version = 1

// MaxJobSize is the largest job message a worker accepts, in bytes.
const MaxJobSize = 64 << 10

// DefaultPool is the pool a job goes to when none is named.
const DefaultPool = "default"

// JobArgs is the kind-specific part of a job: one type per Kind (BackupJob, RestoreJob, …),
// each in the file named after its kind, beside its result.
type JobArgs interface {
	// Kind is the job kind these arguments belong to.
	Kind() Kind
	// Validate reports the first thing wrong with the arguments, or nil.
	Validate() error
	// Scope says which repository and source the job works on, as its arguments name
	// them: what the worker records, logs and leases the job under.
	Scope() Scope
}

// Scope is what a job works on, as its arguments name it.
type Scope struct {
	// Repo is the repository, by the name jobs use for it; empty means the worker's
	// default repo. For a replicate job it is the target.
	Repo string
	// Source is the source path the job names, if any.
	Source string
}

// Job is one request to the workers of a pool, as it travels on brr.jobs.<pool>.<kind>.
//
// On the wire it is JSON:
//
//	{"v":1,"id":"nightly-2026-11-26","kind":"backup","pool":"default",
//	 "created":"2026-11-26T12:00:00Z","args":{"path":"/srv/app","repo":"local"}}
//
// The id is the message's Nats-Msg-Id and the idempotency key: a job with an id that was
// already published within the stream's duplicate window is dropped by the server, and a
// job that already succeeded is not run again when it is delivered again.
type Job struct {
	V       int       `json:"v"`
	ID      string    `json:"id"`
	Kind    Kind      `json:"kind"`
	Pool    string    `json:"pool"`
	Created time.Time `json:"created"`
	// By says who asked for the job (a user, a host, a schedule); free text, for people.
	By   string  `json:"by,omitempty"`
	Args JobArgs `json:"-"`
}

type jobWire struct {
	V       int             `json:"v"`
	ID      string          `json:"id"`
	Kind    Kind            `json:"kind"`
	Pool    string          `json:"pool"`
	Created time.Time       `json:"created"`
	By      string          `json:"by,omitempty"`
	Args    json.RawMessage `json:"args"`
}

// MarshalJSON encodes the job with its arguments under "args".
func (j Job) MarshalJSON() ([]byte, error) {
	if j.Args == nil {
		return nil, errors.New("job has no args")
	}
	args, err := json.Marshal(j.Args)
	if err != nil {
		return nil, fmt.Errorf("encode %s args: %w", j.Kind, err)
	}
	return json.Marshal(jobWire{V: j.V, ID: j.ID, Kind: j.Kind, Pool: j.Pool, Created: j.Created, By: j.By, Args: args})
}

// DecodeJob decodes and validates a job message. Unknown fields, a key given twice in one
// object, a NUL byte in any string, an unknown version or kind, missing or wrong-typed
// fields and oversized messages are errors that say what is wrong (see checkJSON); every
// error it returns is Permanent, since sending the same bytes again cannot help.
func DecodeJob(data []byte) (*Job, error) {
	if len(data) > MaxJobSize {
		return nil, Permanent(fmt.Errorf("%w: job message is %d bytes, the limit is %d", ErrInvalid, len(data), MaxJobSize))
	}
	if err := checkJSON(data); err != nil {
		return nil, Permanent(err)
	}
	var w jobWire
	if err := strictUnmarshal(data, &w); err != nil {
		return nil, Permanent(fmt.Errorf("%w: job message is not valid JSON: %v", ErrInvalid, err))
	}
	if w.V != Version {
		return nil, Permanent(fmt.Errorf("%w: job message has version %d, this worker reads version %d", ErrUnknownVersion, w.V, Version))
	}
	args, err := newArgs(w.Kind)
	if err != nil {
		return nil, Permanent(err)
	}
	if len(w.Args) == 0 || bytes.Equal(w.Args, []byte("null")) {
		return nil, Permanent(fmt.Errorf("%w: %s job has no \"args\"", ErrInvalid, w.Kind))
	}
	if err := strictUnmarshal(w.Args, args); err != nil {
		return nil, Permanent(fmt.Errorf("%w: %s job args: %v", ErrInvalid, w.Kind, err))
	}
	j := &Job{V: w.V, ID: w.ID, Kind: w.Kind, Pool: w.Pool, Created: w.Created, By: w.By, Args: args}
	if err := j.Validate(); err != nil {
		return nil, Permanent(err)
	}
	return j, nil
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// foldKey folds a key as encoding/json does to match it to a field: two keys with the
// same fold are read as the same field.
func foldKey(key string) string {
	return strings.Map(func(r rune) rune { return unicode.ToUpper(unicode.ToLower(r)) }, key)
}

// NewJob returns a job for args with a generated id, the default pool and the current time.
// Set ID, Pool or By on the result to change them.
func NewJob(args JobArgs) *Job {
	return &Job{V: Version, ID: NewID(), Kind: args.Kind(), Pool: DefaultPool, Created: time.Now().UTC(), Args: args}
}

// Validate reports the first thing wrong with the job, or nil.
func (j *Job) Validate() error {
	if j.V != Version {
		return fmt.Errorf("%w: version %d, want %d", ErrUnknownVersion, j.V, Version)
	}
	if err := ValidateID(j.ID); err != nil {
		return err
	}
	if err := ValidatePool(j.Pool); err != nil {
		return err
	}
	if j.Args == nil {
		return fmt.Errorf("%w: job %s has no args", ErrInvalid, j.ID)
	}
	if j.Args.Kind() != j.Kind {
		return fmt.Errorf("%w: job kind %q does not match its %s args", ErrInvalid, j.Kind, j.Args.Kind())
	}
	if len(j.By) > 256 {
		return fmt.Errorf("%w: \"by\" is %d bytes, the limit is 256", ErrInvalid, len(j.By))
	}
	if err := j.Args.Validate(); err != nil {
		return fmt.Errorf("%s job %s: %w", j.Kind, j.ID, err)
	}
	return nil
}

var (
	idPattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	tagPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,127}$`)
)

// ValidateID checks a job id: 1 to 128 letters, digits, '-' or '_', starting with a letter
// or digit, so that it is safe as a Nats-Msg-Id, a KV key and a file name.
func ValidateID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: job id %q: use 1-128 letters, digits, '-' or '_', starting with a letter or digit", ErrInvalid, id)
	}
	return nil
}

// ValidatePool checks a pool name, which is a subject token.
func ValidatePool(pool string) error {
	if !namePattern.MatchString(pool) {
		return fmt.Errorf("%w: pool %q: use 1-64 letters, digits, '-' or '_'", ErrInvalid, pool)
	}
	return nil
}

// ValidateRepoName checks a repository name; the empty name means the worker's default repo.
func ValidateRepoName(name string) error {
	if name != "" && !namePattern.MatchString(name) {
		return fmt.Errorf("%w: repo name %q: use 1-64 letters, digits, '-' or '_'", ErrInvalid, name)
	}
	return nil
}

func validateAbs(what, p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	case len(p) > 4096:
		return fmt.Errorf("%w: %s is %d bytes, the limit is 4096", ErrInvalid, what, len(p))
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%w: %s %q contains a NUL byte", ErrInvalid, what, p)
	case !path.IsAbs(p):
		return fmt.Errorf("%w: %s %q is not an absolute path", ErrInvalid, what, p)
	case path.Clean(p) != p:
		return fmt.Errorf("%w: %s %q is not clean (want %q)", ErrInvalid, what, p, path.Clean(p))
	}
	return nil
}

var snapshotRefPattern = regexp.MustCompile(`^(latest|[0-9a-f]{4,64})$`)
