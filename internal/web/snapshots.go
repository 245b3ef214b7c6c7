package web

import (
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/brr-dev/brr"
)

// SnapshotList is the answer of GET /api/v1/snapshots.
type SnapshotList struct {
	Repo      string         `json:"repo"`
	Snapshots []brr.Snapshot `json:"snapshots"`
}

// repoParam checks a repo query parameter against the repos the worker knows of now;
// empty means the default repo.
func (s *Server) repoParam(r *http.Request) (string, error) {
	repo := r.URL.Query().Get("repo")
	if repo == "" {
		return "", nil
	}
	if err := brr.ValidateRepoName(repo); err != nil {
		return "", err
	}
	if repos := s.sortedRepos(); len(repos) > 0 && !slices.Contains(repos, repo) {
		return "", errorf(http.StatusNotFound, "repo %q is not configured (configured: %s); pick one of those, or add it to the pool with `brr repo add`", repo, strings.Join(repos, ", "))
	}
	return repo, nil
}

func (s *Server) snapshots(w http.ResponseWriter, r *http.Request) error {
	repo, err := s.repoParam(r)
	if err != nil {
		return err
	}
	source := r.URL.Query().Get("source")
	list, err := s.client.Snapshots(r.Context(), repo, source)
	if err != nil {
		return err
	}
	if repo == "" {
		repo = s.cfg.DefaultRepo
		if len(list) > 0 {
			repo = list[0].Repo
		}
	}
	if list == nil {
		list = []brr.Snapshot{}
	}
	writeJSON(w, http.StatusOK, SnapshotList{Repo: repo, Snapshots: list})
	return nil
}

// Source is one source's snapshots in one repository, against its recovery point
// objective.
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
}

// SourceList is the answer of GET /api/v1/sources.
type SourceList struct {
	Sources []Source `json:"sources"`
	// Unread names each repository that could not be listed, with why.
	Unread map[string]string `json:"unread,omitempty"`
}

// sources lists the snapshots of every configured repository (or of ?repo=) and sums
// them up per source, with each source's age against its RPO. A source with an RPO and
// no snapshot in any repository is listed as critical.
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

func (s *Server) checkpoints(w http.ResponseWriter, r *http.Request) error {
	repo, err := s.repoParam(r)
	if err != nil {
		return err
	}
	reply, err := s.client.Checkpoints(r.Context(), repo)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, reply)
	return nil
}
