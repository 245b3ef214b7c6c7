package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

// Heartbeats carry what each source is, and never its command or hooks.
func TestSourceInfos(t *testing.T) {
	c := Config{Sources: map[string]SourceConfig{
		"pg":    {Command: "pg_dump -h db.internal -U backup app", RestoreCommand: "pg_restore -h db.internal", Before: "ssh db.internal sync", Repo: "offsite"},
		"app":   {Path: "/srv/app", Excludes: []string{"*.log"}, Tags: []string{"app"}, After: "curl https://hooks.internal/done"},
		"appdb": {SQLite: "/srv/app/app.db", Watch: &WatchConfig{Delay: 5 * time.Second, MaxDelay: time.Minute}},
	}}
	got := c.sourceInfos()
	want := []brr.SourceInfo{
		{Name: "app", Kind: brr.SourcePath, Path: "/srv/app", Tags: []string{"app"}},
		{Name: "appdb", Kind: brr.SourceSQLite, Path: "/srv/app/app.db", Watch: &brr.SourceWatch{DelayMS: 5000, MaxDelayMS: 60000}},
		{Name: "pg", Kind: brr.SourceCommand, Repo: "offsite"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("sourceInfos() = %+v, want %+v", got, want)
	}
	data, err := json.Marshal(got)
	if err != nil || strings.Contains(string(data), "internal") {
		t.Fatalf("sourceInfos() shows a command or a hook: %s (%v)", data, err)
	}
	if (Config{}).sourceInfos() != nil {
		t.Fatal("sourceInfos() of a config with no sources: want nil")
	}
}
