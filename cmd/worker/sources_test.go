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
