package brr

import "time"

// PruneJob removes the snapshots a retention policy does not keep and then the data no
// snapshot needs, in two phases with a grace period (see docs/recovery.md).
type PruneJob struct {
	Repo string `json:"repo,omitempty"`
	// Policy overrides the retention policy the worker's config gives the repo. With
	// neither, no snapshot is removed and prune only collects unreferenced data.
	Policy *RetentionPolicy `json:"policy,omitempty"`
	// DryRun decides and reports what would go, and why, without changing anything.
	DryRun bool `json:"dry_run,omitempty"`
}

// Kind returns KindPrune.
func (PruneJob) Kind() Kind { return KindPrune }

// Scope returns the repo.
func (a PruneJob) Scope() Scope { return Scope{Repo: a.Repo} }

// Validate checks the repo name and the policy.
func (a PruneJob) Validate() error {
	if err := ValidateRepoName(a.Repo); err != nil {
		return err
	}
	if a.Policy != nil {
		return a.Policy.Validate()
	}
	return nil
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
