// Package natsutil holds what brr's readers of JetStream share about the server's answers.
package natsutil

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brr-dev/brr/internal/clock"
)

// Unanswered paces the fetches of a JetStream ordered consumer that get no responders.
// Each batch is read through a consumer of its own, which the ordered consumer creates
// from where the last one ended; in a cluster, a batch asked of a server that does not
// know yet where the new consumer lives gets nats.ErrNoResponders. Such a batch is asked
// again, up to UnansweredMax times in a row, a little later each time. The zero value is
// ready to use, one per read.
type Unanswered struct {
	n int // fetches in a row that got no responders
}

// UnansweredMax is how many fetches in a row may get no responders before a read gives up.
const UnansweredMax = 10

// Again is told of a fetch that failed with err, and returns nil when the fetch is to be
// asked again, once it has waited 20 ms times the fetches in a row that got no
// responders. Otherwise it returns the error to give up with: err, when it is not no
// responders or UnansweredMax fetches in a row got it, or ctx's error, when ctx ended
// the wait.
func (u *Unanswered) Again(ctx context.Context, err error) error {
	if !errors.Is(err, nats.ErrNoResponders) || u.n >= UnansweredMax {
		return err
	}
	u.n++
	if !clock.Sleep(ctx, time.Duration(u.n)*20*time.Millisecond) {
		return ctx.Err()
	}
	return nil
}

// Answered starts the count again: a fetch got messages.
func (u *Unanswered) Answered() { u.n = 0 }
