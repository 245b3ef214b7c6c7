package brr

// VerifyJob checks a repository: its structure, and with ReadData every blob's bytes.
// With Drill it also runs a restore drill of the repo's newest snapshot (see DrillJob);
// the result is in VerifyResult.Drill and a failed drill fails the verify.
type VerifyJob struct {
	Repo     string `json:"repo,omitempty"`
	ReadData bool   `json:"read_data,omitempty"`
	Drill    bool   `json:"drill,omitempty"`
}

// Kind returns KindVerify.
func (VerifyJob) Kind() Kind { return KindVerify }

// Scope returns the repo.
func (a VerifyJob) Scope() Scope { return Scope{Repo: a.Repo} }

// Validate checks the repo name.
func (a VerifyJob) Validate() error { return ValidateRepoName(a.Repo) }

// VerifyResult is the report of a verify job.
type VerifyResult struct {
	Repo      string `json:"repo"`
	ReadData  bool   `json:"read_data"`
	Snapshots int    `json:"snapshots"`
	Packs     int    `json:"packs"`
	Blobs     int    `json:"blobs"`
	BytesRead int64  `json:"bytes_read"`
	// Damaged names every damaged or missing pack or blob, with the snapshots and file paths
	// it affects. A verify with damage ends failed, with this report in its event.
	Damaged []Damage `json:"damaged,omitempty"`
	// Drill is the restore drill a verify with Drill ran.
	Drill      *DrillResult `json:"drill,omitempty"`
	DurationMS int64        `json:"duration_ms"`
}

// OK reports whether verify found no damage.
func (r *VerifyResult) OK() bool { return len(r.Damaged) == 0 }

// Damage is one damaged or missing object found by verify.
type Damage struct {
	Pack      string   `json:"pack,omitempty"`
	Blob      string   `json:"blob,omitempty"`
	Problem   string   `json:"problem"`
	Snapshots []string `json:"snapshots,omitempty"`
	Paths     []string `json:"paths,omitempty"`
}
