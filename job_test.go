package brr

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestJobRoundTrip(t *testing.T) {
	asOf := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, args := range []JobArgs{
		&BackupJob{Path: "/srv/app", Repo: "local", Tags: []string{"nightly", "env=prod"}},
		&RestoreJob{Snapshot: "latest", Source: "/srv/app", AsOf: &asOf, Target: "/restore", Paths: []string{"etc/app.conf"}, Overwrite: true},
		&VerifyJob{Repo: "offsite", ReadData: true},
		&PingJob{DelayMS: 5},
	} {
		job := NewJob(args)
		data, err := json.Marshal(job)
		if err != nil {
			t.Fatalf("marshal %s: %v", args.Kind(), err)
		}
		got, err := DecodeJob(data)
		if err != nil {
			t.Fatalf("decode %s: %v\n%s", args.Kind(), err, data)
		}
		if got.ID != job.ID || got.Kind != job.Kind || got.Pool != job.Pool || !got.Created.Equal(job.Created) {
			t.Fatalf("decoded envelope %+v, want %+v", got, job)
		}
		again, _ := json.Marshal(got)
		if string(again) != string(data) {
			t.Fatalf("re-encoded job differs:\n got %s\nwant %s", again, data)
		}
	}
}

func TestDecodeJobRejects(t *testing.T) {
	valid := `{"v":1,"id":"j1","kind":"backup","pool":"default","created":"2026-11-26T12:00:00Z","args":{"path":"/srv"}}`
	if _, err := DecodeJob([]byte(valid)); err != nil {
		t.Fatalf("valid job rejected: %v", err)
	}
	tests := []struct {
		name, msg string
		is        error
		mention   string
	}{
		{"not json", `hello`, ErrInvalid, "not valid JSON"},
		{"empty", ``, ErrInvalid, "not valid JSON"},
		{"version 2", strings.Replace(valid, `"v":1`, `"v":2`, 1), ErrUnknownVersion, "version 2"},
		{"no version", strings.Replace(valid, `"v":1,`, ``, 1), ErrUnknownVersion, "version 0"},
		{"unknown kind", strings.Replace(valid, `"backup"`, `"frobnicate"`, 1), ErrUnknownKind, "frobnicate"},
		{"no kind", strings.Replace(valid, `"kind":"backup",`, ``, 1), ErrUnknownKind, "no \"kind\""},
		{"no args", `{"v":1,"id":"j1","kind":"backup","pool":"default","created":"2026-11-26T12:00:00Z"}`, ErrInvalid, "no \"args\""},
		{"unknown field", strings.Replace(valid, `"pool"`, `"color":"red","pool"`, 1), ErrInvalid, "color"},
		{"unknown arg field", strings.Replace(valid, `"path":"/srv"`, `"path":"/srv","recursive":true`, 1), ErrInvalid, "recursive"},
		{"wrong type", strings.Replace(valid, `"path":"/srv"`, `"path":42`, 1), ErrInvalid, "path"},
		{"missing path", strings.Replace(valid, `"path":"/srv"`, ``, 1), ErrInvalid, "backup path is empty"},
		{"relative path", strings.Replace(valid, `"/srv"`, `"srv/app"`, 1), ErrInvalid, "not an absolute path"},
		{"unclean path", strings.Replace(valid, `"/srv"`, `"/srv/../etc"`, 1), ErrInvalid, "not clean"},
		{"bad id", strings.Replace(valid, `"j1"`, `"a b"`, 1), ErrInvalid, "job id"},
		{"empty id", strings.Replace(valid, `"j1"`, `""`, 1), ErrInvalid, "job id"},
		{"bad pool", strings.Replace(valid, `"default"`, `"a.b"`, 1), ErrInvalid, "pool"},
		{"trailing", valid + `{}`, ErrInvalid, "trailing"},
		{"too big", `{"v":1,"junk":"` + strings.Repeat("x", MaxJobSize) + `"}`, ErrInvalid, "limit"},
		{"restore target relative", `{"v":1,"id":"j1","kind":"restore","pool":"default","created":"2026-11-26T12:00:00Z","args":{"snapshot":"latest","target":"../../etc"}}`, ErrInvalid, "restore target"},
		{"restore path escape", `{"v":1,"id":"j1","kind":"restore","pool":"default","created":"2026-11-26T12:00:00Z","args":{"snapshot":"latest","target":"/r","paths":["a/../../x"]}}`, ErrInvalid, "restore path"},
		{"restore bad ref", `{"v":1,"id":"j1","kind":"restore","pool":"default","created":"2026-11-26T12:00:00Z","args":{"snapshot":"zz","target":"/r"}}`, ErrInvalid, "snapshot"},
		{"restore root", `{"v":1,"id":"j1","kind":"restore","pool":"default","created":"2026-11-26T12:00:00Z","args":{"snapshot":"latest","target":"/"}}`, ErrInvalid, "\"/\""},
		{"ping delay", `{"v":1,"id":"j1","kind":"ping","pool":"default","created":"2026-11-26T12:00:00Z","args":{"delay_ms":-1}}`, ErrInvalid, "delay_ms"},
		{"bad tag", strings.Replace(valid, `"path":"/srv"`, `"path":"/srv","tags":["a b"]`, 1), ErrInvalid, "tag"},
		{"negative keep", `{"v":1,"id":"j1","kind":"prune","pool":"default","created":"2026-11-26T12:00:00Z","args":{"policy":{"keep_last":-1}}}`, ErrInvalid, "keep_last -1"},
		{"replicate to itself", `{"v":1,"id":"j1","kind":"replicate","pool":"default","created":"2026-11-26T12:00:00Z","args":{"snapshot":"all","from":"a","to":"a"}}`, ErrInvalid, "to itself"},
		{"replicate without target", `{"v":1,"id":"j1","kind":"replicate","pool":"default","created":"2026-11-26T12:00:00Z","args":{"snapshot":"latest"}}`, ErrInvalid, "target repo"},
		{"checkpoint bad label", `{"v":1,"id":"j1","kind":"checkpoint","pool":"default","created":"2026-11-26T12:00:00Z","args":{"snapshot":"latest","label":"a b"}}`, ErrInvalid, "label"},
		// What encoding/json lets through: it keeps the last of two keys, and a NUL byte
		// ends a string for C code and file systems.
		{"duplicate envelope key", strings.Replace(valid, `"id":"j1"`, `"id":"j1","id":"j2"`, 1), ErrInvalid, `the key "id" twice`},
		{"duplicate arg", strings.Replace(valid, `"path":"/srv"`, `"path":"/srv","path":"/etc"`, 1), ErrInvalid, `the key "args.path" twice`},
		{"duplicate args", strings.Replace(valid, `}}`, `},"args":{"path":"/etc"}}`, 1), ErrInvalid, `the key "args" twice`},
		{"duplicate in case", strings.Replace(valid, `"path":"/srv"`, `"path":"/srv","Path":"/etc"`, 1), ErrInvalid, `"path" and "Path" differ only in case`},
		{"duplicate by kelvin sign", strings.Replace(valid, `"kind":"backup"`, `"kind":"backup","\u212aind":"ping"`, 1), ErrInvalid, "\"kind\" and \"\u212aind\" differ only in case"},
		{"duplicate deep", `{"v":1,"id":"j1","kind":"prune","pool":"default","created":"2026-11-26T12:00:00Z","args":{"policy":{"tags":{"daily":{"keep_last":1,"keep_last":9}}}}}`, ErrInvalid, `the key "args.policy.tags.daily.keep_last" twice`},
		{"duplicate after an array", strings.Replace(valid, `"path":"/srv"`, `"path":"/srv","tags":["a",{"x":1}],"tags":["b"]`, 1), ErrInvalid, `the key "args.tags" twice`},
		{"NUL in by", strings.Replace(valid, `"pool"`, `"by":"me\u0000@host","pool"`, 1), ErrInvalid, `NUL byte in the value of "by"`},
		{"NUL in a tag", strings.Replace(valid, `"path":"/srv"`, `"path":"/srv","tags":["ok","a\u0000b"]`, 1), ErrInvalid, `NUL byte in the value of "args.tags[1]"`},
		{"NUL in a key", strings.Replace(valid, `"path":"/srv"`, `"path":"/srv","pa\u0000th":"/etc"`, 1), ErrInvalid, `key with a NUL byte: "args.pa\x00th"`},
		{"NUL in the id", strings.Replace(valid, `"j1"`, `"j1\u0000"`, 1), ErrInvalid, `NUL byte in the value of "id"`},
		{"drill bad snapshot", `{"v":1,"id":"j1","kind":"drill","pool":"default","created":"2026-11-26T12:00:00Z","args":{"snapshot":"xyz"}}`, ErrInvalid, "snapshot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeJob([]byte(tt.msg))
			if err == nil {
				t.Fatalf("DecodeJob accepted %s", tt.msg)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			if !IsPermanent(err) {
				t.Errorf("error %q is not permanent", err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

func TestKindMismatch(t *testing.T) {
	j := NewJob(&PingJob{})
	j.Kind = KindBackup
	if err := j.Validate(); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Validate = %v, want a kind mismatch", err)
	}
}

func TestNewIDValid(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := NewID()
		if err := ValidateID(id); err != nil {
			t.Fatalf("NewID %q: %v", id, err)
		}
		if seen[id] {
			t.Fatalf("NewID repeated %q", id)
		}
		seen[id] = true
	}
}

func TestPermanentAndSnooze(t *testing.T) {
	base := errors.New("boom")
	if IsPermanent(base) {
		t.Fatal("plain error is permanent")
	}
	if err := Permanent(base); !IsPermanent(err) || !errors.Is(err, base) {
		t.Fatalf("Permanent(%v) = %v", base, err)
	}
	if Permanent(nil) != nil || Snooze(nil, time.Second) != nil {
		t.Fatal("wrapping nil gave an error")
	}
	d, ok := SnoozeDelay(Snooze(base, 3*time.Second))
	if !ok || d != 3*time.Second {
		t.Fatalf("SnoozeDelay = %v, %v", d, ok)
	}
	if _, ok := SnoozeDelay(base); ok {
		t.Fatal("plain error snoozes")
	}
}

func FuzzDecodeJob(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"j1","kind":"backup","pool":"default","created":"2026-11-26T12:00:00Z","args":{"path":"/srv","tags":["a"]}}`))
	f.Add([]byte(`{"v":1,"id":"j2","kind":"restore","pool":"p","created":"2026-11-26T12:00:00Z","args":{"snapshot":"latest","target":"/r","paths":["a/b"],"as_of":"2026-11-26T12:00:00Z"}}`))
	f.Add([]byte(`{"v":1,"id":"j3","kind":"verify","pool":"default","created":"2026-11-26T12:00:00Z","args":{"read_data":true}}`))
	f.Add([]byte(`{"v":1,"id":"j4","kind":"ping","pool":"default","created":"2026-11-26T12:00:00Z","args":{}}`))
	f.Add([]byte(`{"v":1,"id":"j5","kind":"backup","pool":"default","created":"2026-11-26T12:00:00Z","args":{"path":"/srv","Path":"/etc"}}`))
	f.Add([]byte(`{"v":1,"id":"j6","kind":"backup","pool":"default","created":"2026-11-26T12:00:00Z","args":{"path":"/srv","tags":["a\u0000"]}}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		job, err := DecodeJob(data)
		if err != nil {
			if !IsPermanent(err) {
				t.Fatalf("decode error is not permanent: %v", err)
			}
			return
		}
		if err := job.Validate(); err != nil {
			t.Fatalf("decoded job does not validate: %v", err)
		}
		again, err := json.Marshal(job)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeJob(again); err != nil {
			t.Fatalf("re-encoded job does not decode: %v\n%s", err, again)
		}
	})
}

func TestScope(t *testing.T) {
	tests := []struct {
		args JobArgs
		want Scope
	}{
		{&BackupJob{Path: "/srv/app", Repo: "local"}, Scope{Repo: "local", Source: "/srv/app"}},
		{&RestoreJob{Snapshot: "latest", Source: "/srv/app", Target: "/r", Repo: "offsite"}, Scope{Repo: "offsite", Source: "/srv/app"}},
		{&VerifyJob{Repo: "offsite", ReadData: true}, Scope{Repo: "offsite"}},
		{&ReplicateJob{Snapshot: "all", Source: "/srv/app", From: "local", To: "offsite"}, Scope{Repo: "offsite", Source: "/srv/app"}},
		{&PruneJob{Repo: "local"}, Scope{Repo: "local"}},
		{&CheckpointJob{Snapshot: "latest", Source: "/srv/app", Repo: "local", Label: "l"}, Scope{Repo: "local", Source: "/srv/app"}},
		{&DrillJob{Snapshot: "latest", Source: "/srv/app", Repo: "local"}, Scope{Repo: "local", Source: "/srv/app"}},
		{&PingJob{DelayMS: 5}, Scope{}},
		{&KeyJob{Action: KeyList, Repo: "offsite"}, Scope{Repo: "offsite"}},
		{&BackupJob{Path: "/srv/app"}, Scope{Source: "/srv/app"}}, // the default repo
	}
	for _, tt := range tests {
		if got := tt.args.Scope(); got != tt.want {
			t.Errorf("%s Scope() = %+v, want %+v", tt.args.Kind(), got, tt.want)
		}
	}
	// Every kind is in the table.
	seen := map[Kind]bool{}
	for _, tt := range tests {
		seen[tt.args.Kind()] = true
	}
	for _, k := range Kinds {
		if !seen[k] {
			t.Errorf("kind %s has no Scope case", k)
		}
	}
}
