package events

import "github.com/brr-dev/brr"

// recoveryEvents are the brr.events.recovery.* and snapshot.removed events of a finished
// checkpoint, drill, verify-with-drill, restore or prune job.
func (c *Consumer) recoveryEvents(d *delivery, status brr.Status, res *brr.Result, cause error) []*brr.Event {
	return nil // TODO(recovery helper)
}
