package brr

import "fmt"

// DrillJob is a restore drill: it restores a snapshot into scratch space under the
// worker's data dir, checks every file against the snapshot, removes the copy and
// records the result.
type DrillJob struct {
	// Snapshot is a snapshot id, a unique prefix of one, or "latest" (of Source when set).
	Snapshot string `json:"snapshot"`
	Source   string `json:"source,omitempty"`
	Repo     string `json:"repo,omitempty"`
}

// Kind returns KindDrill.
func (DrillJob) Kind() Kind { return KindDrill }

// Scope returns the repo and the source that narrows the snapshot, if any.
func (a DrillJob) Scope() Scope { return Scope{Repo: a.Repo, Source: a.Source} }

// Validate checks the snapshot reference, the source and the repo name.
func (a DrillJob) Validate() error {
	if !snapshotRefPattern.MatchString(a.Snapshot) {
		return fmt.Errorf("%w: snapshot %q: want \"latest\" or 4-64 hex digits of a snapshot id", ErrInvalid, a.Snapshot)
	}
	if a.Source != "" {
		if err := validateSourceRef(a.Source); err != nil {
			return err
		}
	}
	return ValidateRepoName(a.Repo)
}

// DrillResult is the outcome of a restore drill.
type DrillResult struct {
	Repo     string `json:"repo"`
	Snapshot string `json:"snapshot"`
	Source   string `json:"source"`
	Passed   bool   `json:"passed"`
	Files    int64  `json:"files"`
	Dirs     int64  `json:"dirs"`
	Symlinks int64  `json:"symlinks"`
	Bytes    int64  `json:"bytes"`
	// Problems names each file that did not restore or does not match the snapshot
	// (at most 100; ProblemCount has them all).
	Problems     []string `json:"problems,omitempty"`
	ProblemCount int      `json:"problem_count"`
	DurationMS   int64    `json:"duration_ms"`
}
