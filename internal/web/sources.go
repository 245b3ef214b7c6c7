package web

import (
	"cmp"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/brr-dev/brr"
)

// Source is one source's snapshots in one repository, against its recovery point
// objective, and what the workers' config says of it when it is a named source.
type Source struct {
	Repo      string `json:"repo"`
	Source    string `json:"source"`
	Snapshots int    `json:"snapshots"`
	// Latest is the newest snapshot, nil when there is none.
	Latest *brr.Snapshot `json:"latest,omitempty"`
	// AgeSeconds is the age of the newest snapshot; RPOSeconds the objective (0: none
	// configured).
	AgeSeconds float64 `json:"age_seconds"`
	RPOSeconds float64 `json:"rpo_seconds"`
	// Status is ok, critical (no snapshot newer than the RPO) or "" (no RPO).
	Status brr.HealthStatus `json:"status,omitempty"`
	// Name and Kind are those of the named source (sources: in the workers' config) whose
	// snapshots these are, Workers the live workers that have it, as their heartbeats
	// say; all empty for a source that only snapshots name (a path backed up by path).
	// When several named sources have one path, Name is the first by name.
	Name    string         `json:"name,omitempty"`
	Kind    brr.SourceKind `json:"kind,omitempty"`
	Workers []string       `json:"workers,omitempty"`
}

// SourceList is the answer of GET /api/v1/sources.
type SourceList struct {
	Sources []Source `json:"sources"`
	// Unread names each repository that could not be listed, with why.
	Unread map[string]string `json:"unread,omitempty"`
}

// sources lists the snapshots of every configured repository (or of ?repo=) and sums
// them up per source, with each source's age against its RPO. The named sources of the
// live workers of this worker's pools (from their heartbeats) are listed too: a row of
// their snapshots says their name and kind, and one with no snapshot yet is listed with
// none, in the repo its backups go to. A source with an RPO and no snapshot in any
// repository is listed as critical.
func (s *Server) sources(w http.ResponseWriter, r *http.Request) error {
	repo, err := s.repoParam(r)
	if err != nil {
		return err
	}
	repos := s.sortedRepos()
	if repo != "" {
		repos = []string{repo}
	}
	if len(repos) == 0 {
		repos = []string{""}
	}
	now := s.cfg.Now()
	out := SourceList{Sources: []Source{}}
	seen := map[string]bool{}
	for _, name := range repos {
		list, err := s.client.Snapshots(r.Context(), name, "")
		if err != nil {
			if len(repos) == 1 {
				return err
			}
			if out.Unread == nil {
				out.Unread = map[string]string{}
			}
			out.Unread[name] = err.Error()
			continue
		}
		for _, src := range summarizeSources(name, list, s.cfg.RPO, now) {
			seen[src.Source] = true
			out.Sources = append(out.Sources, src)
		}
	}
	for _, c := range s.configuredSources() {
		found := false
		for i := range out.Sources {
			if src := &out.Sources[i]; src.Source == c.key {
				src.Name, src.Kind, src.Workers = c.info.Name, c.info.Kind, c.workers
				found = true
			}
		}
		target := cmp.Or(c.info.Repo, s.cfg.DefaultRepo)
		if found || (repo != "" && target != repo) {
			continue
		}
		src := Source{Repo: target, Source: c.key, Name: c.info.Name, Kind: c.info.Kind, Workers: c.workers}
		if d, ok := s.cfg.RPO[c.key]; ok {
			src.RPOSeconds = d.Seconds()
			if len(out.Unread) == 0 {
				src.Status = brr.HealthCritical
			}
		}
		seen[c.key] = true
		out.Sources = append(out.Sources, src)
	}
	for src, rpo := range s.cfg.RPO {
		if !seen[src] && len(out.Unread) == 0 {
			out.Sources = append(out.Sources, Source{Source: src, RPOSeconds: rpo.Seconds(), Status: brr.HealthCritical})
		}
	}
	sort.Slice(out.Sources, func(i, j int) bool {
		a, b := out.Sources[i], out.Sources[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		return a.Repo < b.Repo
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}

// configuredSource is a named source of the live workers of this worker's pools.
type configuredSource struct {
	key     string // what its snapshots are of
	info    brr.SourceInfo
	workers []string // sorted
}

// configuredSources are the named sources that the heartbeats of the live workers of
// this worker's pools carry, one per key (the first by name when several share one),
// sorted by name. None without a health monitor.
func (s *Server) configuredSources() []configuredSource {
	if s.cfg.Health == nil {
		return nil
	}
	by := map[string]*configuredSource{}
	for _, w := range s.cfg.Health.Report().Workers {
		if w.Missing || !slices.ContainsFunc(w.Pools, func(p string) bool { return slices.Contains(s.cfg.Pools, p) }) {
			continue
		}
		for _, info := range w.Sources {
			key := info.Key()
			c := by[key]
			switch {
			case c == nil:
				c = &configuredSource{key: key, info: info}
				by[key] = c
			case info.Name < c.info.Name:
				c.info = info
			}
			if !slices.Contains(c.workers, w.ID) {
				c.workers = append(c.workers, w.ID)
			}
		}
	}
	out := make([]configuredSource, 0, len(by))
	for _, c := range by {
		slices.Sort(c.workers)
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b configuredSource) int { return cmp.Compare(a.info.Name, b.info.Name) })
	return out
}

// summarizeSources groups the snapshots of one repository by source.
func summarizeSources(repo string, list []brr.Snapshot, rpo map[string]time.Duration, now time.Time) []Source {
	by := map[string]*Source{}
	var order []string
	for i := range list {
		sn := &list[i]
		src := by[sn.Source]
		if src == nil {
			src = &Source{Repo: repo, Source: sn.Source}
			by[sn.Source] = src
			order = append(order, sn.Source)
		}
		if src.Repo == "" {
			src.Repo = sn.Repo
		}
		src.Snapshots++
		if src.Latest == nil || sn.Time.After(src.Latest.Time) {
			src.Latest = sn
		}
	}
	out := make([]Source, 0, len(order))
	for _, name := range order {
		src := by[name]
		src.AgeSeconds = now.Sub(src.Latest.Time).Seconds()
		if d, ok := rpo[name]; ok {
			src.RPOSeconds = d.Seconds()
			src.Status = brr.HealthOK
			if src.AgeSeconds > src.RPOSeconds {
				src.Status = brr.HealthCritical
			}
		}
		out = append(out, *src)
	}
	return out
}
