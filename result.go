package brr

import "time"

// Result is what a job produced; the field of the job's kind is set. It travels in the
// job's succeeded event (and, for verify, in failed ones too: the damage found).
type Result struct {
	Backup  *BackupResult  `json:"backup,omitempty"`
	Restore *RestoreResult `json:"restore,omitempty"`
	Verify  *VerifyResult  `json:"verify,omitempty"`
	Ping    *PingResult    `json:"ping,omitempty"`
}

// BackupResult describes the snapshot a backup committed.
type BackupResult struct {
	Snapshot string `json:"snapshot"`
	Parent   string `json:"parent,omitempty"`
	Repo     string `json:"repo"`
	Source   string `json:"source"`
	// Files and Dirs count the entries in the snapshot; Bytes is the size of its files.
	Files int64 `json:"files"`
	Dirs  int64 `json:"dirs"`
	Bytes int64 `json:"bytes"`
	// FilesNew, FilesChanged and FilesUnchanged compare with the parent snapshot;
	// unchanged files were not read again.
	FilesNew       int64 `json:"files_new"`
	FilesChanged   int64 `json:"files_changed"`
	FilesUnchanged int64 `json:"files_unchanged"`
	// BytesRead is what was read from the source; BlobsAdded and BytesAdded (stored, after
	// compression and encryption) are what the repository did not have yet.
	BytesRead  int64 `json:"bytes_read"`
	BlobsAdded int64 `json:"blobs_added"`
	BytesAdded int64 `json:"bytes_added"`
	// Warnings lists what was skipped or changed while read; the snapshot still committed.
	Warnings   []string `json:"warnings,omitempty"`
	DurationMS int64    `json:"duration_ms"`
}

// RestoreResult describes what a restore wrote.
type RestoreResult struct {
	Snapshot   string   `json:"snapshot"`
	Repo       string   `json:"repo"`
	Target     string   `json:"target"`
	Files      int64    `json:"files"`
	Dirs       int64    `json:"dirs"`
	Symlinks   int64    `json:"symlinks"`
	Bytes      int64    `json:"bytes"`
	Warnings   []string `json:"warnings,omitempty"`
	DurationMS int64    `json:"duration_ms"`
}

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
	Damaged    []Damage `json:"damaged,omitempty"`
	DurationMS int64    `json:"duration_ms"`
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

// PingResult is what a ping job returns.
type PingResult struct {
	Worker string `json:"worker"`
}

// Snapshot describes a snapshot in a repository, as listed by `brr snapshots`.
type Snapshot struct {
	ID     string    `json:"id"`
	Repo   string    `json:"repo"`
	Time   time.Time `json:"time"`
	Host   string    `json:"host"`
	Source string    `json:"source"`
	Tags   []string  `json:"tags,omitempty"`
	Parent string    `json:"parent,omitempty"`
	JobID  string    `json:"job_id,omitempty"`
	Files  int64     `json:"files"`
	Bytes  int64     `json:"bytes"`
	// BytesAdded is what this snapshot added to the repository when it was made.
	BytesAdded int64 `json:"bytes_added"`
}
