package brr

import "fmt"

// BackupJob backs up the directory tree at Path into a repository.
type BackupJob struct {
	// Path is the absolute, clean path of the source on the worker's host.
	Path string `json:"path"`
	// Repo names a repository of the worker's config; empty means its default repo.
	Repo string   `json:"repo,omitempty"`
	Tags []string `json:"tags,omitempty"`
}

// Kind returns KindBackup.
func (BackupJob) Kind() Kind { return KindBackup }

// Scope returns the repo and the path backed up.
func (a BackupJob) Scope() Scope { return Scope{Repo: a.Repo, Source: a.Path} }

// Validate checks the path, the repo name and the tags.
func (a BackupJob) Validate() error {
	if err := validateAbs("backup path", a.Path); err != nil {
		return err
	}
	if err := ValidateRepoName(a.Repo); err != nil {
		return err
	}
	if len(a.Tags) > 32 {
		return fmt.Errorf("%w: %d tags, the limit is 32", ErrInvalid, len(a.Tags))
	}
	for _, t := range a.Tags {
		if !tagPattern.MatchString(t) {
			return fmt.Errorf("%w: tag %q: use 1-128 letters, digits or _.:=-", ErrInvalid, t)
		}
	}
	return nil
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
