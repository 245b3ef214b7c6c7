package brr

import (
	"fmt"
	"regexp"
)

// ReplicateJob copies snapshots from one repository to another: only the blobs the
// target lacks are sent, re-encrypted under the target's key; the target's snapshot is
// written last, under the same id as in the source.
type ReplicateJob struct {
	// Snapshot is a snapshot id, a unique prefix of one, "latest" (the newest, of Source
	// when set) or "all": every snapshot of From (of Source when set) that To lacks.
	Snapshot string `json:"snapshot"`
	// Source narrows "latest" and "all" to the snapshots of one source path.
	Source string `json:"source,omitempty"`
	// From names the repository to copy from; empty means the worker's default repo.
	From string `json:"from,omitempty"`
	// To names the repository to copy into.
	To string `json:"to"`
}

// Kind returns KindReplicate.
func (ReplicateJob) Kind() Kind { return KindReplicate }

var replicateRefPattern = regexp.MustCompile(`^(latest|all|[0-9a-f]{4,64})$`)

// Validate checks the snapshot reference and the two repo names.
func (a ReplicateJob) Validate() error {
	if !replicateRefPattern.MatchString(a.Snapshot) {
		return fmt.Errorf("%w: snapshot %q: want \"latest\", \"all\" or 4-64 hex digits of a snapshot id", ErrInvalid, a.Snapshot)
	}
	if a.Source != "" {
		if err := validateAbs("source", a.Source); err != nil {
			return err
		}
	}
	if a.To == "" {
		return fmt.Errorf("%w: replicate needs a target repo (\"to\")", ErrInvalid)
	}
	if err := ValidateRepoName(a.From); err != nil {
		return err
	}
	if err := ValidateRepoName(a.To); err != nil {
		return err
	}
	if a.From == a.To {
		return fmt.Errorf("%w: replicate from %q to itself", ErrInvalid, a.To)
	}
	return nil
}

// RetentionPolicy says which snapshots to keep: the newest KeepLast, and the newest
// snapshot of each of the last KeepHourly hours, KeepDaily days, KeepWeekly ISO weeks,
// KeepMonthly months and KeepYearly years that have one. Snapshots are grouped by host and
// source, and each group is decided on its own. A snapshot that no rule keeps is removed,
// unless it is pinned by a recovery point. A policy with no rule keeps everything.
type RetentionPolicy struct {
	KeepLast    int `json:"keep_last,omitempty" yaml:"keep_last"`
	KeepHourly  int `json:"keep_hourly,omitempty" yaml:"keep_hourly"`
	KeepDaily   int `json:"keep_daily,omitempty" yaml:"keep_daily"`
	KeepWeekly  int `json:"keep_weekly,omitempty" yaml:"keep_weekly"`
	KeepMonthly int `json:"keep_monthly,omitempty" yaml:"keep_monthly"`
	KeepYearly  int `json:"keep_yearly,omitempty" yaml:"keep_yearly"`
	// Tags gives snapshots that carry a tag their own policy: a snapshot with several
	// such tags uses the first in sorted order. Snapshots with a tag policy form their
	// own groups. Policies under Tags may not have Tags.
	Tags map[string]RetentionPolicy `json:"tags,omitempty" yaml:"tags"`
}

// Empty reports whether the policy has no rule at all (it keeps every snapshot).
func (p RetentionPolicy) Empty() bool {
	return p.KeepLast == 0 && p.KeepHourly == 0 && p.KeepDaily == 0 && p.KeepWeekly == 0 &&
		p.KeepMonthly == 0 && p.KeepYearly == 0 && len(p.Tags) == 0
}

// Validate checks that every count is 0 to 100000 and that tag policies are flat.
func (p RetentionPolicy) Validate() error {
	for name, n := range map[string]int{"keep_last": p.KeepLast, "keep_hourly": p.KeepHourly,
		"keep_daily": p.KeepDaily, "keep_weekly": p.KeepWeekly, "keep_monthly": p.KeepMonthly, "keep_yearly": p.KeepYearly} {
		if n < 0 || n > 100000 {
			return fmt.Errorf("%w: retention %s %d: want 0-100000", ErrInvalid, name, n)
		}
	}
	if len(p.Tags) > 64 {
		return fmt.Errorf("%w: retention has %d tag policies, the limit is 64", ErrInvalid, len(p.Tags))
	}
	for tag, tp := range p.Tags {
		if !tagPattern.MatchString(tag) {
			return fmt.Errorf("%w: retention tag %q: use 1-128 letters, digits or _.:=-", ErrInvalid, tag)
		}
		if len(tp.Tags) > 0 {
			return fmt.Errorf("%w: retention policy of tag %q has tag policies of its own", ErrInvalid, tag)
		}
		if err := tp.Validate(); err != nil {
			return fmt.Errorf("tag %s: %w", tag, err)
		}
	}
	return nil
}

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

// CheckpointJob creates a recovery point, a labelled pin on a snapshot that retention
// never removes, or with Remove deletes the recovery point Label.
type CheckpointJob struct {
	// Snapshot is a snapshot id, a unique prefix of one, or "latest" (of Source when
	// set); not used with Remove.
	Snapshot string `json:"snapshot,omitempty"`
	Source   string `json:"source,omitempty"`
	Repo     string `json:"repo,omitempty"`
	// Label names the recovery point; unique within a repo.
	Label  string `json:"label"`
	Reason string `json:"reason,omitempty"`
	Remove bool   `json:"remove,omitempty"`
}

// Kind returns KindCheckpoint.
func (CheckpointJob) Kind() Kind { return KindCheckpoint }

// Validate checks the label, the reason, the snapshot reference and the repo name.
func (a CheckpointJob) Validate() error {
	if !tagPattern.MatchString(a.Label) {
		return fmt.Errorf("%w: recovery point label %q: use 1-128 letters, digits or _.:=-", ErrInvalid, a.Label)
	}
	if len(a.Reason) > 1024 {
		return fmt.Errorf("%w: reason is %d bytes, the limit is 1024", ErrInvalid, len(a.Reason))
	}
	if !a.Remove && !snapshotRefPattern.MatchString(a.Snapshot) {
		return fmt.Errorf("%w: snapshot %q: want \"latest\" or 4-64 hex digits of a snapshot id", ErrInvalid, a.Snapshot)
	}
	if a.Source != "" {
		if err := validateAbs("source", a.Source); err != nil {
			return err
		}
	}
	return ValidateRepoName(a.Repo)
}

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

// Validate checks the snapshot reference, the source and the repo name.
func (a DrillJob) Validate() error {
	if !snapshotRefPattern.MatchString(a.Snapshot) {
		return fmt.Errorf("%w: snapshot %q: want \"latest\" or 4-64 hex digits of a snapshot id", ErrInvalid, a.Snapshot)
	}
	if a.Source != "" {
		if err := validateAbs("source", a.Source); err != nil {
			return err
		}
	}
	return ValidateRepoName(a.Repo)
}
