package brr

import (
	"slices"
	"sort"
)

// RepoInfo is a repo of a pool as `brr repo ls` and GET /api/v1/repos show it: what the
// pool's registry holds for it and which live workers serve or refuse it.
type RepoInfo struct {
	Name string `json:"name"`
	Pool string `json:"pool"`
	// ID and Location name the repository once a worker opened or created it; empty for
	// a repo added with `brr repo add` that no worker has opened yet.
	ID       string `json:"id,omitempty"`
	Location string `json:"location,omitempty"`
	// Spec is how workers open it (no secret); nil for a registration from before specs.
	Spec *RepoSpec `json:"spec,omitempty"`
	// ReplicateTo is its replication policy; empty when it has none.
	ReplicateTo []string `json:"replicate_to"`
	// ServedBy are the live workers that serve it; RefusedBy the live workers that do
	// not, each with why (RefusedRepo.Message).
	ServedBy  []string          `json:"served_by"`
	RefusedBy map[string]string `json:"refused_by,omitempty"`
}

// RepoInfos joins a pool's registrations with its workers' heartbeats (missing workers
// are left out), one RepoInfo per registration, by name.
func RepoInfos(regs []RepoRegistration, workers []WorkerInfo) []RepoInfo {
	out := make([]RepoInfo, 0, len(regs))
	for _, reg := range regs {
		info := RepoInfo{Name: reg.Repo, Pool: reg.Pool, ID: reg.ID, Location: reg.Location, Spec: reg.Spec,
			ReplicateTo: []string{}, ServedBy: []string{}}
		if reg.ReplicateTo != nil {
			info.ReplicateTo = slices.Clone(*reg.ReplicateTo)
		}
		for _, w := range workers {
			if w.Missing || !slices.Contains(w.Pools, reg.Pool) {
				continue
			}
			if slices.Contains(w.Repos, reg.Repo) {
				info.ServedBy = append(info.ServedBy, w.ID)
			}
			for _, ref := range w.RefusedRepos {
				if ref.Repo == reg.Repo {
					if info.RefusedBy == nil {
						info.RefusedBy = map[string]string{}
					}
					info.RefusedBy[w.ID] = ref.Message
				}
			}
		}
		sort.Strings(info.ServedBy)
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
