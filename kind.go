package brr

import (
	"fmt"
	"strings"
)

// Kind names what a job does. Kinds are stable on the wire: they appear in job subjects
// (brr.jobs.<pool>.<kind>), in job messages and in event subjects.
type Kind string

// The job kinds.
const (
	KindBackup     Kind = "backup"
	KindRestore    Kind = "restore"
	KindVerify     Kind = "verify"
	KindReplicate  Kind = "replicate"
	KindPrune      Kind = "prune"
	KindCheckpoint Kind = "checkpoint"
	// KindDrill restores a snapshot into scratch space, checks every file against the
	// snapshot and removes the copy: a restore drill.
	KindDrill Kind = "drill"
	// KindPing does nothing but pass through the whole pipeline: the canary that health
	// checks and `brr bench` use to measure it.
	KindPing Kind = "ping"
	// KindKey lists, adds, removes or replaces the keys of a repository.
	KindKey Kind = "key"
)

// Kinds lists every kind a worker may be asked for, in a stable order.
var Kinds = []Kind{KindBackup, KindRestore, KindVerify, KindReplicate, KindPrune, KindCheckpoint, KindDrill, KindPing, KindKey}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	for _, known := range Kinds {
		if k == known {
			return true
		}
	}
	return false
}

// newArgs returns empty arguments of kind k for DecodeJob to fill: the one place that
// maps a kind on the wire to its JobArgs type.
func newArgs(k Kind) (JobArgs, error) {
	switch k {
	case KindBackup:
		return &BackupJob{}, nil
	case KindRestore:
		return &RestoreJob{}, nil
	case KindVerify:
		return &VerifyJob{}, nil
	case KindPing:
		return &PingJob{}, nil
	case KindReplicate:
		return &ReplicateJob{}, nil
	case KindPrune:
		return &PruneJob{}, nil
	case KindCheckpoint:
		return &CheckpointJob{}, nil
	case KindDrill:
		return &DrillJob{}, nil
	case KindKey:
		return &KeyJob{}, nil
	case "":
		return nil, fmt.Errorf("%w: job message has no \"kind\"", ErrUnknownKind)
	}
	return nil, fmt.Errorf("%w: %q (known: %s)", ErrUnknownKind, k, kindList())
}

// kindList names the known kinds for an error message.
func kindList() string {
	var names []string
	for _, k := range Kinds {
		names = append(names, string(k))
	}
	return strings.Join(names, ", ")
}
