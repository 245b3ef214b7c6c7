package jobs

import (
	"time"

	"github.com/brr-dev/brr"
)

// policyBy is the By of the replicate jobs the replication policy sets off.
const policyBy = "policy"

// policyJobs are the replicate jobs the replication policy (ReplicateTo) sets off when a
// job of pool committed snaps to repo repoName: a backup its snapshot, a replicate job
// each snapshot it copied into its target. Each goes to the job's pool, with the id
// "repl-<first 16 hex digits of the snapshot>-<target>", which is also its Nats-Msg-Id:
// the same snapshot committed twice in the server's duplicate window makes one job. A
// cycle (a → b → a) ends, since a target that has the snapshot commits nothing.
func (e *Engine) policyJobs(pool, repoName string, snaps []string) []*brr.Job {
	var out []*brr.Job
	for _, snap := range snaps {
		for _, to := range e.replicateTo(repoName) {
			if to == repoName || len(snap) < 16 {
				continue
			}
			out = append(out, &brr.Job{
				V:       brr.Version,
				ID:      "repl-" + snap[:16] + "-" + to,
				Kind:    brr.KindReplicate,
				Pool:    pool,
				Created: time.Now().UTC(),
				By:      policyBy,
				Args:    &brr.ReplicateJob{Snapshot: snap, From: repoName, To: to},
			})
		}
	}
	return out
}
