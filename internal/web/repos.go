package web

import (
	"net/http"
	"slices"

	"github.com/brr-dev/brr"
)

// RepoList is the answer of GET /api/v1/repos: the repos of the worker's pools and, for
// the worker that answers, which of them it refuses.
type RepoList struct {
	Repos  []brr.RepoInfo `json:"repos"`
	Worker RepoWorker     `json:"worker"`
}

// RepoWorker is the worker that answers GET /api/v1/repos and the repos it refuses now.
// Its heartbeat says the same a little later; this is what it knows at the moment.
type RepoWorker struct {
	ID      string            `json:"id"`
	Refused []brr.RefusedRepo `json:"refused"`
}

var errNoRegistry = errorf(http.StatusServiceUnavailable, "this worker has no view of its pools' repo registry (KV BRR_REPOS); ask another worker of the pool, or run `brr repo ls`")

// listRepos answers what the pools' registry holds, joined with the workers' heartbeats:
// who serves each repo and who refuses it, and why.
func (s *Server) listRepos(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.RepoInfos == nil {
		return errNoRegistry
	}
	infos, err := s.cfg.RepoInfos(r.Context())
	if err != nil {
		return err
	}
	if infos == nil {
		infos = []brr.RepoInfo{}
	}
	refused := []brr.RefusedRepo{}
	if s.cfg.Refused != nil {
		refused = append(refused, s.cfg.Refused()...)
	}
	writeJSON(w, http.StatusOK, RepoList{Repos: infos, Worker: RepoWorker{ID: s.cfg.Worker, Refused: refused}})
	return nil
}

// sortedRepos are the names of the repos the worker knows of now, sorted; never nil.
func (s *Server) sortedRepos() []string {
	if s.cfg.Repos == nil {
		return []string{}
	}
	repos := append([]string{}, s.cfg.Repos()...)
	slices.Sort(repos)
	return slices.Compact(repos)
}

// replicate is the replication policy now; nil when there is none.
func (s *Server) replicate() map[string][]string {
	if s.cfg.Replicate == nil {
		return nil
	}
	return s.cfg.Replicate()
}
