package health

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natsutil"
)

// RepositoryCheck reports, per repo, the result and age of its last verify job: critical
// when it failed, warn when there is none on record or it is older than MaxAge. It reads
// the verify jobs' final events from the event stream, only those after the ones its last
// turn read (its memo keeps the stream position and each repo's last verify), so a verify
// is remembered after the stream has aged it out.
type RepositoryCheck struct {
	JS       jetstream.JetStream
	Subjects brr.Subjects
	// Repos are the repos to report on; DefaultRepo is the one a verify that names none
	// went to.
	Repos       func() []string
	DefaultRepo string
	// Partial: as SnapshotCheck.Partial.
	Partial func() bool
	// MaxAge is how old the last verify may be before the check warns; default 8 days
	// (a weekly verify, and a day of slack).
	MaxAge time.Duration
}

// verifyMemo is the RepositoryCheck's memo.
type verifyMemo struct {
	// Seq is the stream sequence of the last event read.
	Seq  uint64                  `json:"seq"`
	Last map[string]verifyRecord `json:"last"`
}

// verifyRecord is the end of one verify job.
type verifyRecord struct {
	JobID   string     `json:"job_id"`
	Status  brr.Status `json:"status"`
	Time    time.Time  `json:"time"`
	Error   string     `json:"error,omitempty"`
	Damaged int        `json:"damaged,omitempty"`
}

// Name returns brr.CheckRepository.
// SitOut is Partial's answer.
func (c *RepositoryCheck) SitOut() bool { return c.Partial != nil && c.Partial() }

func (c *RepositoryCheck) Name() string { return brr.CheckRepository }

// Run reads the verify events since the last turn and reports each repo.
func (c *RepositoryCheck) Run(ctx context.Context, t Tick) (Outcome, error) {
	memo := verifyMemo{Last: map[string]verifyRecord{}}
	if len(t.Memo) > 0 {
		if err := json.Unmarshal(t.Memo, &memo); err != nil || memo.Last == nil {
			memo = verifyMemo{Last: map[string]verifyRecord{}}
		}
	}
	if err := c.read(ctx, &memo); err != nil {
		return Outcome{}, err
	}
	maxAge := cmp.Or(c.MaxAge, 8*24*time.Hour)
	var out Outcome
	for _, name := range c.Repos() {
		res := brr.HealthCheck{Check: brr.CheckRepository, Subject: name, Value: -1}
		rec, ok := memo.Last[name]
		if !ok {
			res.Status = brr.HealthWarn
			res.Message = fmt.Sprintf("no verify of repo %s on record: run brr verify --repo %s, and schedule one (brr schedule add)", name, name)
			out.Results = append(out.Results, res)
			continue
		}
		age := max(t.Now.Sub(rec.Time), 0)
		res.Value = age.Seconds()
		switch {
		case rec.Status != brr.StatusSucceeded:
			res.Status = brr.HealthCritical
			what := "could not finish"
			if rec.Damaged > 0 {
				what = fmt.Sprintf("found %d damaged or missing object(s)", rec.Damaged)
			}
			res.Message = fmt.Sprintf("the last verify of repo %s (job %s, %s ago) %s: %s; see brr jobs show %s, repair, and verify again",
				name, rec.JobID, human(age), what, rec.Error, rec.JobID)
		case age > maxAge:
			res.Status = brr.HealthWarn
			res.Message = fmt.Sprintf("the last verify of repo %s passed %s ago, more than %s: verify it again, and schedule verifies more often", name, human(age), human(maxAge))
		default:
			res.Status = brr.HealthOK
			res.Message = fmt.Sprintf("the last verify of repo %s passed %s ago (job %s)", name, human(age), rec.JobID)
		}
		out.Results = append(out.Results, res)
	}
	data, err := json.Marshal(memo)
	if err != nil {
		return Outcome{}, fmt.Errorf("encode verify memo: %w", err)
	}
	out.Memo = data
	return out, nil
}

// fetchWait bounds the wait for one batch of verify events.
const fetchWait = 5 * time.Second

// read takes in the final events of verify jobs stored after memo.Seq.
func (c *RepositoryCheck) read(ctx context.Context, memo *verifyMemo) error {
	var filters []string
	// A cancelled verify is left out on purpose: stopped by someone, it says nothing of
	// the repo, and the last verify that ran to its end stands.
	for _, s := range []brr.Status{brr.StatusSucceeded, brr.StatusFailed, brr.StatusDead} {
		filters = append(filters, c.Subjects.Event(&brr.Event{Type: brr.EventJob, Kind: brr.KindVerify, Status: s}))
	}
	// The consumer is read to its end at once: let the server drop it soon after. A fetch
	// (re)creates it; should that fail, this turn fails, and the next one tries again
	// (nats.go would retry forever, on a context of its own).
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: 10 * time.Second,
		MaxResetAttempts: 1}
	if memo.Seq > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = memo.Seq + 1
	}
	cons, err := c.JS.OrderedConsumer(ctx, c.Subjects.EventsStream(), cfg)
	if err != nil {
		return fmt.Errorf("read verify events: %w", err)
	}
	var unanswered natsutil.Unanswered
	for {
		batch, err := fetchNoWait(ctx, cons, 256)
		if err != nil {
			return fmt.Errorf("read verify events: %w", err)
		}
		n, done := 0, false
		// A fetch whose answer was lost (the server restarted under it) would wait on its
		// own expiry, not on ctx: the check must stop when the worker does.
		msgs, wait := batch.Messages(), time.NewTimer(fetchWait)
	read:
		for {
			var msg jetstream.Msg
			select {
			case m, ok := <-msgs:
				if !ok {
					break read
				}
				msg = m
			case <-ctx.Done():
				wait.Stop()
				return fmt.Errorf("read verify events: %w", ctx.Err())
			case <-wait.C:
				return fmt.Errorf("read verify events: no answer from the server within %s", fetchWait)
			}
			n++
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			memo.Seq = max(memo.Seq, meta.Sequence.Stream)
			done = meta.NumPending == 0
			if e, err := brr.DecodeEvent(msg.Data()); err == nil {
				c.record(memo, e)
			}
		}
		wait.Stop()
		if n > 0 {
			unanswered.Answered()
		}
		err = batch.Error()
		if errors.Is(err, nats.ErrNoResponders) {
			// Each fetch is served by a consumer of its own, which a server of a cluster
			// that does not host it may not know of yet: ask again from where it stopped.
			if err := unanswered.Again(ctx, err); err != nil {
				return fmt.Errorf("read verify events: %w", err)
			}
			continue
		}
		if err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("read verify events: %w", err)
		}
		if n == 0 || done {
			return nil
		}
	}
}

// fetchNoWait is cons.FetchNoWait, which takes no context: it recreates the ordered
// consumer first, waiting up to 10 s for a server that may be restarting. The check stops
// with the worker: on ctx's end it returns, and leaves the call to end on its own.
func fetchNoWait(ctx context.Context, cons jetstream.Consumer, n int) (jetstream.MessageBatch, error) {
	type fetched struct {
		batch jetstream.MessageBatch
		err   error
	}
	ch := make(chan fetched, 1)
	go func() {
		b, err := cons.FetchNoWait(n)
		ch <- fetched{b, err}
	}()
	select {
	case f := <-ch:
		return f.batch, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// record keeps e as its repo's last verify when it is the newest seen.
func (c *RepositoryCheck) record(memo *verifyMemo, e *brr.Event) {
	name := e.Repo
	rec := verifyRecord{JobID: e.JobID, Status: e.Status, Time: e.Time.UTC(), Error: e.Error}
	if e.Result != nil && e.Result.Verify != nil {
		if e.Result.Verify.Repo != "" {
			name = e.Result.Verify.Repo
		}
		rec.Damaged = len(e.Result.Verify.Damaged)
	}
	if name == "" {
		name = c.DefaultRepo
	}
	if cur, ok := memo.Last[name]; ok && cur.Time.After(rec.Time) {
		return
	}
	memo.Last[name] = rec
}
