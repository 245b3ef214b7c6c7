package main

import (
	"strings"
	"testing"
	"time"
)

// TestSourcesConfig parses a config with a source of each kind, a watch among them (a
// pointer field the strict key check must follow), and checks what validation refuses.
func TestSourcesConfig(t *testing.T) {
	m, err := parse(t, []string{"--config", writeConfig(t, `
sources:
  app: {path: /srv/app, excludes: ["*.log"], exclude_caches: true, exclude_larger_than: 1GiB, tags: [app],
        watch: {delay: 5s, max_delay: 1m}, before: "sync", after: "true", timeout: 10m}
  appdb: {command: "pg_dump -Fc appdb", restore_command: "pg_restore -d appdb", filename: appdb.dump}
  notes: {sqlite: /srv/notes/notes.db, watch: {delay: 2s, max_delay: 10s}}
`)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.Config
	app := cfg.Sources["app"]
	if app.Watch == nil || app.Watch.Delay != 5*time.Second || app.Watch.MaxDelay != time.Minute || app.ExcludeLargerThan != 1<<30 || app.Timeout != 10*time.Minute {
		t.Fatalf("sources.app = %+v (watch %+v)", app, app.Watch)
	}
	srcs, err := cfg.engineSources()
	if err != nil || srcs["appdb"].Filename != "appdb.dump" || srcs["notes"].Watch == nil || srcs["app"].Excludes[0] != "*.log" {
		t.Fatalf("engineSources = %+v, %v", srcs, err)
	}

	for _, tt := range []struct{ name, yaml, want string }{
		{"two kinds", "sources: {x: {path: /a, command: date}}", "sources.x: set exactly one of path"},
		{"no kind", "sources: {x: {tags: [a]}}", "sources.x: set exactly one of path"},
		{"relative path", "sources: {x: {path: srv/app}}", "sources.x.path: must be an absolute, clean path"},
		{"excludes on a command", "sources: {x: {command: date, excludes: [a]}}", "apply to a path source only"},
		{"bad exclude", "sources: {x: {path: /a, excludes: [\"#tmp\"]}}", "sources.x: exclude pattern \"#tmp\": starts with #"},
		{"watch a command", "sources: {x: {command: date, watch: {delay: 1s, max_delay: 2s}}}", "a command source has nothing to watch"},
		{"watch backwards", "sources: {x: {path: /a, watch: {delay: 1m, max_delay: 5s}}}", "max_delay (5s) must not be shorter than delay (1m0s)"},
		{"unknown repo", "sources: {x: {path: /a, repo: offsite}}", `sources.x.repo: "offsite" is not configured`},
		{"bad name", "sources: {\"a b\": {path: /a}}", `source name "a b"`},
		{"filename with a slash", "sources: {x: {command: date, filename: a/b}}", `sources.x.filename: "a/b" must be a plain file name`},
		{"unknown key", "sources: {x: {path: /a, exclude: [a]}}", `unknown key "sources.x.exclude"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, []string{"--config", writeConfig(t, tt.yaml+"\n")}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("config %s: %v; want an error containing %q", tt.yaml, err, tt.want)
			}
		})
	}
}

// TestRPOOfNamedSources: health.rpo takes source:NAME, what the snapshots of a command or
// sqlite source are of; a path source's name there is refused with the path to write
// instead, and a name this worker lacks is a warning, not an error.
func TestRPOOfNamedSources(t *testing.T) {
	m, err := parse(t, []string{"--config", writeConfig(t, `
sources:
  appdb: {sqlite: /srv/app/app.db}
  pg: {command: "pg_dump -Fc appdb"}
health: {rpo: {"source:appdb": 1h, "source:pg": 26h, "source:elsewhere": 2h, "/srv/app": 26h}}
`)}, nil)
	if err != nil {
		t.Fatalf("config with source:NAME RPOs: %v", err)
	}
	rpo := m.Config.rpo()
	if got, want := rpo["source:appdb"], time.Hour; got != want {
		t.Fatalf("rpo[source:appdb] = %s, want %s", got, want)
	}
	if got, want := rpo["source:pg"], 26*time.Hour; got != want {
		t.Fatalf("rpo[source:pg] = %s, want %s", got, want)
	}
	warnings := m.Config.rpoWarnings()
	if len(warnings) != 1 || !strings.Contains(warnings[0], `"source:elsewhere" names a source that is not in this worker's sources`) {
		t.Fatalf("rpoWarnings = %q, want one about source:elsewhere", warnings)
	}

	for _, tt := range []struct{ name, yaml, want string }{
		{"path source by name", "sources: {app: {path: /srv/app}}\nhealth: {rpo: {\"source:app\": 1h}}",
			`health.rpo: "source:app": source app is a path source, whose snapshots are of its path: write "/srv/app" instead`},
		{"bad name", "health: {rpo: {\"source:a b\": 1h}}", `health.rpo: "source:a b": the name of a source: must be 1-64 letters`},
		{"empty name", "health: {rpo: {\"source:\": 1h}}", `health.rpo: "source:": the name of a source`},
		{"relative path", "health: {rpo: {\"srv/app\": 1h}}", `health.rpo: "srv/app": must be an absolute, clean source path, or source:NAME`},
		{"zero", "health: {rpo: {\"source:pg\": 0s}}", "health.rpo.source:pg: must be a positive duration"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, []string{"--config", writeConfig(t, tt.yaml+"\n")}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("config %s: %v; want an error containing %q", tt.yaml, err, tt.want)
			}
		})
	}
}
