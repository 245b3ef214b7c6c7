package events

import (
	"encoding/json"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
)

// newEvent returns an event of typ and status stamped with a new id, the time now and
// this worker; the caller fills in the job, repo and result fields.
func (c Config) newEvent(typ brr.EventType, status brr.Status) *brr.Event {
	return &brr.Event{
		V:      brr.Version,
		ID:     brr.NewID(),
		Type:   typ,
		Status: status,
		Time:   time.Now().UTC(),
		Worker: c.Worker,
		Host:   c.Host,
	}
}

// outboxMsgs turns e into the messages the outbox publishes: the event on its subject
// in BRR_EVENTS, and, for a job event that changes what `brr jobs` and Client.Wait should
// show (started, or final), the same JSON as the job's entry in KV BRR_RESULTS.
// Publishing to "$KV.<bucket>.<key>" is how a KV put looks on the wire, so the outbox
// needs no KV handle and the entry gets its own Nats-Msg-Id for de-duplication.
func (c Config) outboxMsgs(e *brr.Event) []state.OutboxMsg {
	// An Event holds only strings, numbers, times, and structs of those: Marshal
	// cannot fail on it.
	data, _ := json.Marshal(e)
	msgs := []state.OutboxMsg{{Subject: c.Subjects.Event(e), MsgID: e.ID, Data: data}}
	if e.Type == brr.EventJob && e.JobID != "" && resultStatus(e.Status) {
		msgs = append(msgs, state.OutboxMsg{
			Subject: "$KV." + c.Subjects.ResultsBucket() + "." + e.JobID,
			MsgID:   e.ID + "-r",
			Data:    data,
		})
	}
	return msgs
}

// eventMsg is e on its subject in BRR_EVENTS alone, without its BRR_RESULTS entry.
func (c Config) eventMsg(e *brr.Event) state.OutboxMsg {
	data, _ := json.Marshal(e) // cannot fail: see outboxMsgs
	return state.OutboxMsg{Subject: c.Subjects.Event(e), MsgID: e.ID, Data: data}
}

// resultStatus reports whether a job event with status s is kept in BRR_RESULTS: the
// statuses a waiting client acts on. Accepted is not (started follows it at once), nor
// is progress (a KV write each), nor retrying, which would overwrite whatever came in
// between: another worker's final result of a job delivered twice (see
// Consumer.endAttempt, which replaces only its own started entry with it).
func resultStatus(s brr.Status) bool {
	return s == brr.StatusStarted || s.Final()
}
