package events

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
)

// invalidKind is the kind token of the dead letter of a message whose subject does not
// even name a kind.
const invalidKind brr.Kind = "invalid"

// maxReason bounds the reason given to TermWithReason, which goes into an advisory.
const maxReason = 256

// deadLetter ends a job for good: the dead letter (the request as it arrived and why it
// failed), the job's failed or dead event and what its outcome out (nil when it has
// none) publishes go into the outbox in the same transaction as its record, then the
// message is terminated. A job whose message did not decode gets a record too, under its
// Nats-Msg-Id or "seq-<n>".
func (c *Consumer) deadLetter(d *delivery, cause error, status brr.Status, out *brr.Outcome) {
	res := resultOf(out)
	msg := d.msg
	if d.rec == nil {
		pool, kind, ok := c.cfg.Subjects.ParseJob(msg.Subject())
		if !ok {
			pool, kind = d.pool, invalidKind
		}
		id := fallbackID(msg.Headers().Get("Nats-Msg-Id"), envelopeID(msg.Data()), d.seq)
		if d.job != nil {
			id = d.job.ID
		}
		d.rec = recordOf(d, id, kind, pool)
		if json.Valid(msg.Data()) {
			d.rec.Request = msg.Data()
		}
		d.rec.Worker = c.cfg.Worker
		d.rec.Started = time.Now().UTC()
	}
	rec := d.rec
	rec.Status = status
	rec.Error = cause.Error()
	rec.Result = res
	rec.Finished = time.Now().UTC()
	ended(rec, out)

	// The dead letter keeps the job as it ran: for a job fired from a schedule, under its
	// per-tick id (rec.Request), so that `brr dlq retry` runs that job and not the template.
	request := msg.Data()
	if d.job != nil && len(rec.Request) > 0 {
		request = rec.Request
	}
	dl, err := deadLetterMsgs(c.cfg, rec, msg.Subject(), request, d.attempt, d.seq)
	if err != nil {
		c.putBack(d, err)
		return
	}
	e := c.jobEvent(d, status)
	e.Error = rec.Error
	e.Result = res
	msgs := append(c.cfg.outboxMsgs(e), dl...)
	msgs = append(msgs, c.outcomeMsgs(d, out)...)
	if err := c.store.PutJob(rec, msgs...); err != nil {
		c.putBack(d, fmt.Errorf("record dead letter: %w", err))
		return
	}
	if status == brr.StatusDead {
		c.dead.Add(1)
	} else {
		c.failed.Add(1)
	}
	d.logger(c.log).Warn().Str("job_id", rec.ID).Str("status", string(status)).Str("reason", rec.Error).Msg("job sent to the dead-letter stream")
	reason := rec.Error
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	_ = msg.TermWithReason(reason)
	c.observe(d, status, false, res, cause)
}

// envelopeID is the "id" of a job message that does not decode as a job (bad args, an
// unknown kind) but whose envelope is a JSON object with a valid id, so that `brr jobs
// show ID` finds the failure of a message sent without Nats-Msg-Id (`nats pub`); "" when
// there is none.
func envelopeID(data []byte) string {
	if len(data) > brr.MaxJobSize {
		return ""
	}
	var env struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(data, &env) != nil || brr.ValidateID(env.ID) != nil {
		return ""
	}
	return env.ID
}

// deadLetterMsgs returns the outbox message that writes the dead letter of rec to
// brr.dlq.<pool>.<kind>, with Nats-Msg-Id "dlq-<job id>-<seq>", seq being the job
// message's sequence in BRR_JOBS: a worker and the sweeper writing the dead letter of the
// same message make a single entry, and a job that `brr dlq retry` published again (a
// new message) that fails again makes a new one.
func deadLetterMsgs(cfg Config, rec *state.JobRecord, subject string, request []byte, attempts int, seq uint64) ([]state.OutboxMsg, error) {
	reason := rec.Error
	if len(request) > brr.MaxJobSize {
		// Keep the dead letter under the server's payload limit; what is kept shows
		// what was sent.
		reason += fmt.Sprintf(" (the request is cut to its first %d of %d bytes in this dead letter)", brr.MaxJobSize, len(request))
		request = request[:brr.MaxJobSize]
	}
	dl := brr.DeadLetter{
		V:        brr.Version,
		JobID:    rec.ID,
		Pool:     rec.Pool,
		Kind:     rec.Kind,
		Subject:  subject,
		Request:  request,
		Error:    reason,
		Status:   rec.Status,
		Attempts: attempts,
		Worker:   cfg.Worker,
		Time:     rec.Finished,
	}
	data, err := json.Marshal(dl)
	if err != nil {
		return nil, fmt.Errorf("encode dead letter of job %s: %w", rec.ID, err)
	}
	return []state.OutboxMsg{{Subject: cfg.Subjects.DLQ(rec.Pool, rec.Kind), MsgID: "dlq-" + rec.ID + "-" + strconv.FormatUint(seq, 10), Data: data}}, nil
}
