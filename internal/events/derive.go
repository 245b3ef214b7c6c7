package events

import (
	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
)

// finalMsgs returns what a finished job publishes besides its own job event, to go into
// the outbox in the same transaction as its record: the domain events its result implies
// (snapshot committed or removed, replication completed or failed, recovery points,
// drills) and the jobs it sets off (replication policy). status is succeeded, failed or
// dead; res may be nil, and d.job is nil for a message that did not decode.
func (c *Consumer) finalMsgs(d *delivery, status brr.Status, res *brr.Result, cause error) []state.OutboxMsg {
	if d.job == nil {
		return nil
	}
	var out []state.OutboxMsg
	for _, e := range c.replicationEvents(d, status, res, cause) {
		out = append(out, c.cfg.outboxMsgs(e)...)
	}
	for _, e := range c.recoveryEvents(d, status, res, cause) {
		out = append(out, c.cfg.outboxMsgs(e)...)
	}
	if status == brr.StatusSucceeded {
		out = append(out, c.policyJobs(d, res)...)
	}
	return out
}
