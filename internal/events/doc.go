// Package events holds every JetStream detail of the worker: the streams and buckets it
// needs, the durable pull consumer each pool shares, the consume loop that decodes,
// runs and settles jobs (ack, nak with delay, term), the dead-letter stream, the sweeper
// that catches jobs whose worker died on their last attempt, and the publishing of events.
// It exists so that job code (internal/jobs) never sees NATS and the ack/nak/term decision
// is made in one place, from the error a job returns.
package events
