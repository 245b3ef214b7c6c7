package web

import (
	"net/http"
	"slices"
	"strings"

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
