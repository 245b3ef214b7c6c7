package events

import (
	"sync"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
)

// watchAfter is how long an attempt runs before it is written down as running: its
// started entry in BRR_RESULTS and its started record in the state database. An attempt
// that ends sooner (a ping, a job refused at once) leaves only its final entry and
// record: nobody could have watched it run, and a job ends long before its AckWait, so
// no redelivery needs to learn that it is still running. One that runs longer gets both
// while it runs, as before: `brr jobs show`, Client.Job and the worker that gets the job
// should its ack be lost (runningElsewhere) see it running.
const watchAfter = 250 * time.Millisecond

// running writes down that an attempt runs, once it has run for watchAfter (see there).
// Its end (stop) and the writing race under mu: once stop has run, nothing more is
// written, so the started entry never lands after the attempt's final one, which goes
// out through the outbox only after stop.
type running struct {
	mu    sync.Mutex
	timer *time.Timer
	ended bool
	// entry is set once the started entry went out (PublishNow: it may still be lost);
	// record carries the outcome of the started record's commit, nil while none began.
	entry  bool
	record chan error
}

// watchRun writes the started entry (the JSON of started, the event already announced)
// and the started record of d after watchAfter, unless the attempt ends first.
func (c *Consumer) watchRun(d *delivery, started *brr.Event) *running {
	r := &running{}
	rec := *d.rec
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timer = time.AfterFunc(watchAfter, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.ended {
			return
		}
		c.pub.PublishNow(c.cfg.resultMsg(started))
		r.entry = true
		r.record = make(chan error, 1)
		go func() { r.record <- c.store.PutJob(&rec) }()
	})
	return r
}

// stop ends the watch of an attempt that has ended, and waits for its started record
// when that is being written: the final record must come after it. It reports whether
// the started entry went out, and the started record's error.
func (r *running) stop() (entry bool, err error) {
	r.mu.Lock()
	r.ended = true
	r.timer.Stop()
	entry, record := r.entry, r.record
	r.mu.Unlock()
	if record != nil {
		err = <-record
	}
	return entry, err
}

// resultMsg is e's entry in BRR_RESULTS alone (see outboxMsgs).
func (c Config) resultMsg(e *brr.Event) state.OutboxMsg {
	msgs := c.outboxMsgs(e)
	return msgs[len(msgs)-1]
}
