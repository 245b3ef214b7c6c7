package brr

import (
	"errors"
	"strings"
	"testing"
)

// A restore names a target directory, or a source whose restore_command takes the
// snapshot; what goes with a target does not go without one.
func TestRestoreJobValidate(t *testing.T) {
	for _, tt := range []struct {
		name    string
		job     RestoreJob
		mention string // "" for a valid job
	}{
		{"target", RestoreJob{Snapshot: "latest", Target: "/r"}, ""},
		{"source path", RestoreJob{Snapshot: "latest", Source: "/srv/app", Target: "/r"}, ""},
		{"source key", RestoreJob{Snapshot: "latest", Source: "source:app-db", Target: "/r"}, ""},
		{"source name with target", RestoreJob{Snapshot: "latest", SourceName: "app-db", Target: "/r"}, ""},
		{"source name into restore_command", RestoreJob{Snapshot: "3fa2c1d9", SourceName: "app-db", Repo: "local"}, ""},
		{"no target", RestoreJob{Snapshot: "latest"}, "or a source_name"},
		{"bad source key", RestoreJob{Snapshot: "latest", Source: "source:a b", Target: "/r"}, `after "source:"`},
		{"relative source", RestoreJob{Snapshot: "latest", Source: "srv", Target: "/r"}, "not an absolute path"},
		{"bad source name", RestoreJob{Snapshot: "latest", SourceName: "a/b"}, "source name"},
		{"source and source name", RestoreJob{Snapshot: "latest", SourceName: "db", Source: "/srv"}, "give one"},
		{"paths without target", RestoreJob{Snapshot: "latest", SourceName: "db", Paths: []string{"x"}}, "go with a target"},
		{"overwrite without target", RestoreJob{Snapshot: "latest", SourceName: "db", Overwrite: true}, "go with a target"},
		{"bad repo without target", RestoreJob{Snapshot: "latest", SourceName: "db", Repo: "a b"}, "repo"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.job.Validate()
			switch {
			case tt.mention == "" && err != nil:
				t.Fatalf("Validate(%+v) = %v, want nil", tt.job, err)
			case tt.mention != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.mention)):
				t.Fatalf("Validate(%+v) = %v, want ErrInvalid mentioning %q", tt.job, err, tt.mention)
			}
		})
	}
}

// A restore message may name a source and leave out the target.
func TestDecodeRestoreBySourceName(t *testing.T) {
	job, err := DecodeJob([]byte(`{"v":1,"id":"j1","kind":"restore","pool":"db1","created":"2026-11-26T12:00:00Z","args":{"snapshot":"latest","source_name":"app-db"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if a := job.Args.(*RestoreJob); a.SourceName != "app-db" || a.Target != "" {
		t.Fatalf("args %+v", a)
	}
}
