package brr

import "time"

// Result is what a job produced; the field of the job's kind is set. It travels in the
// job's succeeded event (and, for verify, in failed ones too: the damage found).
type Result struct {
	Backup  *BackupResult  `json:"backup,omitempty"`
	Restore *RestoreResult `json:"restore,omitempty"`
	Verify  *VerifyResult  `json:"verify,omitempty"`
	Ping    *PingResult    `json:"ping,omitempty"`

	Replicate  *ReplicateResult  `json:"replicate,omitempty"`
	Prune      *PruneResult      `json:"prune,omitempty"`
	Checkpoint *CheckpointResult `json:"checkpoint,omitempty"`
	Drill      *DrillResult      `json:"drill,omitempty"`
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
	Snapshot string   `json:"snapshot"`
	Repo     string   `json:"repo"`
	Target   string   `json:"target"`
	Files    int64    `json:"files"`
	Dirs     int64    `json:"dirs"`
	Symlinks int64    `json:"symlinks"`
	Bytes    int64    `json:"bytes"`
	Warnings []string `json:"warnings,omitempty"`
	// FellBackFrom names the repo the restore was asked to use when it read from a
	// replica (Repo) instead, and FallbackReason says why: the primary could not be read
	// or its copy of the snapshot is damaged.
	FellBackFrom   string `json:"fell_back_from,omitempty"`
	FallbackReason string `json:"fallback_reason,omitempty"`
	DurationMS     int64  `json:"duration_ms"`
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

// ReplicateResult is what a replicate job copied.
type ReplicateResult struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Snapshots are the ids copied by this job; Present counts the asked-for snapshots
	// the target had already.
	Snapshots []string `json:"snapshots"`
	Present   int      `json:"present"`
	// BlobsSent and BytesSent (stored size in the target) are what the target lacked;
	// BlobsPresent counts blobs it had already.
	BlobsSent    int64 `json:"blobs_sent"`
	BytesSent    int64 `json:"bytes_sent"`
	BlobsPresent int64 `json:"blobs_present"`
	// Lag is how far the target is behind the source after this job.
	Lag ReplicationLag `json:"lag"`
	// Copied describes the snapshots copied, as the target now lists them (Repo is To).
	Copied []Snapshot `json:"copied,omitempty"`
	// Warnings lists what went wrong without failing the job.
	Warnings   []string `json:"warnings,omitempty"`
	DurationMS int64    `json:"duration_ms"`
}

// ReplicationLag measures how far a replica is behind its source repository.
type ReplicationLag struct {
	// Behind counts the source's snapshots the target lacks.
	Behind int `json:"behind"`
	// Oldest is the time of the oldest snapshot the target lacks, and AgeSeconds its age
	// when measured; both are zero when Behind is 0.
	Oldest     *time.Time `json:"oldest,omitempty"`
	AgeSeconds float64    `json:"age_seconds"`
	Measured   time.Time  `json:"measured"`
}

// ReplicationInfo is the body of a brr.events.replication.* event.
type ReplicationInfo struct {
	From       string          `json:"from"`
	To         string          `json:"to"`
	Snapshots  []string        `json:"snapshots,omitempty"`
	BlobsSent  int64           `json:"blobs_sent"`
	BytesSent  int64           `json:"bytes_sent"`
	Lag        *ReplicationLag `json:"lag,omitempty"`
	DurationMS int64           `json:"duration_ms,omitempty"`
}

// PruneResult is what a prune job removed, or with DryRun would remove, and why.
type PruneResult struct {
	Repo   string `json:"repo"`
	DryRun bool   `json:"dry_run"`
	// Decisions lists every snapshot considered, kept or removed, with the reasons.
	Decisions []SnapshotDecision `json:"decisions"`
	// Removed are the ids of the snapshots removed (or, dry, to be removed).
	Removed []string `json:"removed"`
	Kept    int      `json:"kept"`
	// Packs: deleted now, repacked now (their live blobs copied to new packs), condemned
	// now (to be deleted by a prune after PendingUntil), and resurrected (condemned
	// earlier, then found in use again and kept).
	PacksDeleted     int   `json:"packs_deleted"`
	PacksRepacked    int   `json:"packs_repacked"`
	PacksCondemned   int   `json:"packs_condemned"`
	PacksResurrected int   `json:"packs_resurrected"`
	BlobsRemoved     int64 `json:"blobs_removed"`
	BytesFreed       int64 `json:"bytes_freed"`
	BytesRepacked    int64 `json:"bytes_repacked"`
	// PendingPacks and PendingBytes are condemned and waiting for their grace period to
	// end at PendingUntil.
	PendingPacks int        `json:"pending_packs"`
	PendingBytes int64      `json:"pending_bytes"`
	PendingUntil *time.Time `json:"pending_until,omitempty"`
	// Postponed says why condemned data that was due was not deleted: which running
	// writers (backups, replications) prune waits for.
	Postponed  string `json:"postponed,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// SnapshotDecision is what retention decided about one snapshot.
type SnapshotDecision struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Host   string    `json:"host"`
	Source string    `json:"source"`
	Tags   []string  `json:"tags,omitempty"`
	Keep   bool      `json:"keep"`
	// Reasons says which rules keep it ("last 3", "daily 2026-11-25", "pinned nightly");
	// empty for a removed snapshot.
	Reasons []string `json:"reasons,omitempty"`
}

// RecoveryPoint is a labelled, pinned snapshot.
type RecoveryPoint struct {
	Repo     string    `json:"repo"`
	Label    string    `json:"label"`
	Snapshot string    `json:"snapshot"`
	Source   string    `json:"source,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	By       string    `json:"by,omitempty"`
	Time     time.Time `json:"time"`
	// SnapshotTime is when the pinned snapshot was taken.
	SnapshotTime time.Time `json:"snapshot_time"`
}

// CheckpointResult is the recovery point a checkpoint job created or removed.
type CheckpointResult struct {
	Point   RecoveryPoint `json:"point"`
	Removed bool          `json:"removed,omitempty"`
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
