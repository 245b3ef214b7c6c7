package events

import (
	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
)

// replicationEvents are the brr.events.replication.* events of a finished replicate job.
func (c *Consumer) replicationEvents(d *delivery, status brr.Status, res *brr.Result, cause error) []*brr.Event {
	return nil // TODO(replication helper)
}

// policyJobs are the replicate jobs the replication policy sets off when a job committed
// a snapshot.
func (c *Consumer) policyJobs(d *delivery, res *brr.Result) []state.OutboxMsg {
	return nil // TODO(replication helper)
}
