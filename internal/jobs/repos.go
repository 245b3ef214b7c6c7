package jobs

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
)

// The repositories an engine serves change while it runs: the worker opens the repos
// the pool's registry gains and drops those it loses (cmd/worker). Repos, Refused and
// ReplicateTo are read under e.reposMu; once the engine runs they change only through
// SetRepo, DropRepo, SetRefused and SetReplicateTo.

// SetRepo serves r under name from now on, replacing what name was (which the caller
// closes) and clearing a refusal of name.
func (e *Engine) SetRepo(name string, r *repo.Repository) {
	e.reposMu.Lock()
	defer e.reposMu.Unlock()
	if e.Repos == nil {
		e.Repos = map[string]*repo.Repository{}
	}
	e.Repos[name] = r
	delete(e.Refused, name)
}

// DropRepo stops serving repo name: no job started from now on gets it. The repository
// is closed once no job that may hold it runs any more (at the latest by Close). It
// returns whether name was served.
func (e *Engine) DropRepo(name string) bool {
	e.reposMu.Lock()
	defer e.reposMu.Unlock()
	r, ok := e.Repos[name]
	delete(e.Repos, name)
	delete(e.Refused, name)
	if ok && r != nil {
		e.retired = append(e.retired, r)
		e.closeRetiredLocked()
	}
	return ok
}

// SetRefused marks repo name as one this worker has but does not serve, and why: its
// jobs are snoozed for another worker of the pool (see Repo). It stops serving name if
// it did. An empty why clears the refusal.
func (e *Engine) SetRefused(name, why string) {
	if why != "" {
		e.DropRepo(name)
	}
	e.reposMu.Lock()
	defer e.reposMu.Unlock()
	if why == "" {
		delete(e.Refused, name)
		return
	}
	if e.Refused == nil {
		e.Refused = map[string]string{}
	}
	e.Refused[name] = why
}

// SetReplicateTo replaces the replication policy (see ReplicateTo).
func (e *Engine) SetReplicateTo(policy map[string][]string) {
	e.reposMu.Lock()
	defer e.reposMu.Unlock()
	e.ReplicateTo = policy
}

// RepoNames are the repos the engine serves, sorted.
func (e *Engine) RepoNames() []string {
	e.reposMu.RLock()
	defer e.reposMu.RUnlock()
	return slices.Sorted(maps.Keys(e.Repos))
}

// Policy is a copy of the replication policy.
func (e *Engine) Policy() map[string][]string {
	e.reposMu.RLock()
	defer e.reposMu.RUnlock()
	out := make(map[string][]string, len(e.ReplicateTo))
	for from, to := range e.ReplicateTo {
		out[from] = slices.Clone(to)
	}
	return out
}

// replicateTo is the replication policy of repo name.
func (e *Engine) replicateTo(name string) []string {
	e.reposMu.RLock()
	defer e.reposMu.RUnlock()
	return slices.Clone(e.ReplicateTo[name])
}

// served is the repository the engine serves under name, or nil.
func (e *Engine) served(name string) *repo.Repository {
	e.reposMu.RLock()
	defer e.reposMu.RUnlock()
	return e.Repos[name]
}

// jobStarted and jobEnded count the jobs running, so that a dropped repository is closed
// only when none of them may still hold it.
func (e *Engine) jobStarted() {
	e.reposMu.Lock()
	e.running++
	e.reposMu.Unlock()
}

func (e *Engine) jobEnded() {
	e.reposMu.Lock()
	e.running--
	e.closeRetiredLocked()
	e.reposMu.Unlock()
}

// closeRetiredLocked closes the dropped repositories when no job runs.
func (e *Engine) closeRetiredLocked() {
	if e.running > 0 {
		return
	}
	for _, r := range e.retired {
		_ = r.Close()
	}
	e.retired = nil
}

// Close closes the repositories dropped while jobs ran. The repositories the engine
// serves are its owner's to close.
func (e *Engine) Close() {
	e.reposMu.Lock()
	defer e.reposMu.Unlock()
	for _, r := range e.retired {
		_ = r.Close()
	}
	e.retired = nil
}

// Repo resolves a job's repo name: "" is the default repo (DefaultRepo, else "local", else
// the only one configured, refused repos included). It returns the repository and its
// name. A repo this worker refuses gives its name and an error that Handle turns into a
// snooze, or a failure once the job is RefusedFor old; a query gets the error as it is.
func (e *Engine) Repo(name string) (*repo.Repository, string, error) {
	e.reposMu.RLock()
	defer e.reposMu.RUnlock()
	names := make([]string, 0, len(e.Repos)+len(e.Refused))
	for n := range e.Repos {
		names = append(names, n)
	}
	for n := range e.Refused {
		if _, ok := e.Repos[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if name == "" {
		name = e.DefaultRepo
	}
	if name == "" {
		if slices.Contains(names, "local") {
			name = "local"
		} else if len(names) == 1 {
			name = names[0]
		}
	}
	if why, ok := e.Refused[name]; ok {
		return nil, name, &refusedError{what: "repo " + name, why: why}
	}
	if r, ok := e.Repos[name]; ok && r != nil {
		return r, name, nil
	}
	if name == "" {
		return nil, "", brr.Permanent(fmt.Errorf("the job names no repo and this worker has no default (configured: %s); name one with --repo", strings.Join(names, ", ")))
	}
	return nil, "", brr.Permanent(fmt.Errorf("repo %q is not configured (configured: %s); name one of those, add it to the worker's config or to the pool with `brr repo add`", name, strings.Join(names, ", ")))
}
