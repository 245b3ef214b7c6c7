package web

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

// workersHealth is a health monitor that sees these workers.
type workersHealth []brr.WorkerInfo

func (h workersHealth) Report() brr.HealthReport {
	return brr.HealthReport{Status: brr.HealthOK, Workers: h, Time: time.Now()}
}

// GET /api/v1/sources lists the named sources of the live workers of the pool beside the
// sources of the snapshots: a source's snapshot rows say its name, kind and workers, and
// a named source with no snapshot yet is listed with none.
func TestSourcesListsConfiguredSources(t *testing.T) {
	src := newSource(t)
	now := time.Now().UTC()
	workers := workersHealth{
		{ID: "w1", Pools: []string{brr.DefaultPool}, Time: now, Sources: []brr.SourceInfo{
			{Name: "app", Kind: brr.SourcePath, Path: src},
			{Name: "appdb", Kind: brr.SourceSQLite, Path: "/srv/app/app.db"},
		}},
		{ID: "w2", Pools: []string{"edge", brr.DefaultPool}, Time: now, Sources: []brr.SourceInfo{
			{Name: "app", Kind: brr.SourcePath, Path: src},
			{Name: "pg", Kind: brr.SourceCommand, Repo: "offsite"},
		}},
		{ID: "w-gone", Pools: []string{brr.DefaultPool}, Time: now.Add(-time.Hour), Missing: true, Sources: []brr.SourceInfo{
			{Name: "gone", Kind: brr.SourcePath, Path: "/gone"},
		}},
		{ID: "w-edge", Pools: []string{"edge"}, Time: now, Sources: []brr.SourceInfo{
			{Name: "edgeonly", Kind: brr.SourcePath, Path: "/edge"},
		}},
	}
	f := setupIn(t, src, func(c *Config) {
		c.Health = workers
		c.RPO = map[string]time.Duration{"source:appdb": time.Hour}
	})
	f.backup("b1")

	var list SourceList
	decode(t, f.get("/api/v1/sources"), http.StatusOK, &list)
	bySource := map[string]Source{}
	for _, s := range list.Sources {
		bySource[s.Source] = s
	}
	if len(list.Sources) != 3 || len(bySource) != 3 {
		t.Fatalf("sources = %+v, want app, appdb and pg", list.Sources)
	}
	if s := bySource[src]; s.Name != "app" || s.Kind != brr.SourcePath || s.Snapshots != 1 || s.Latest == nil ||
		!slices.Equal(s.Workers, []string{"w1", "w2"}) || s.Repo != "local" {
		t.Errorf("app = %+v, want its snapshot, named app, on w1 and w2", s)
	}
	if s := bySource["source:appdb"]; s.Name != "appdb" || s.Kind != brr.SourceSQLite || s.Snapshots != 0 || s.Latest != nil ||
		s.Repo != "local" || s.Status != brr.HealthCritical || s.RPOSeconds != 3600 || !slices.Equal(s.Workers, []string{"w1"}) {
		t.Errorf("appdb = %+v, want no snapshot in local, critical against its RPO", s)
	}
	if s := bySource["source:pg"]; s.Name != "pg" || s.Kind != brr.SourceCommand || s.Snapshots != 0 || s.Repo != "offsite" || s.Status != "" {
		t.Errorf("pg = %+v, want no snapshot in offsite, no RPO", s)
	}

	// ?repo= keeps the named sources whose backups go there.
	decode(t, f.get("/api/v1/sources?repo=local"), http.StatusOK, &list)
	if len(list.Sources) != 2 || list.Sources[0].Source != src || list.Sources[1].Source != "source:appdb" {
		t.Fatalf("sources of repo local = %+v, want app and appdb", list.Sources)
	}
}
