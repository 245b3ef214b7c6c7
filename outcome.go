package brr

// Outcome is what a worker's job handler returns when a job has run: its result, the
// domain events it caused and the jobs it sets off. Apps that publish jobs and read
// events do not need it; it is what a handler speaks to the consume loop, so that the
// facts about a job are stated where they are known, and the loop only records,
// publishes and settles them.
//
// Events and Jobs are published through the worker's outbox, in the same transaction
// that records the job's end, when the job ends for good (succeeded, failed or dead). An
// attempt that will be retried publishes neither (the next attempt states them again),
// nor does a job that ends cancelled.
type Outcome struct {
	// Result is what the job produced; nil when it produced nothing. A job that fails may
	// still have one (verify's damage report, what a replication sent before it stopped).
	Result *Result
	// Repo, Source and Snapshot, when set, name what the job worked on as it ended: the
	// repository by its resolved name, the source, the snapshot it made. They replace
	// the job's Scope in its record and its final event.
	Repo, Source, Snapshot string
	// Events are the domain events the job caused (snapshot.committed, recovery.*,
	// replication.*), besides its own brr.events.job.* lifecycle events. The handler
	// sets what the event is about (type, status, repo, snapshot, …); the consume loop
	// stamps V, ID, Time, Worker, Host and Attempt, and JobID, Kind and Pool where the
	// handler left them empty.
	Events []*Event
	// Jobs are follow-up jobs (the replication policy's replicate jobs), each published
	// on brr.jobs.<pool>.<kind> with its id as the Nats-Msg-Id, so that the same job
	// stated twice within the duplicate window runs once. A job that does not validate
	// is not published.
	Jobs []*Job
}

// Reporter is how a running job speaks at once, not through the outbox: what is said is
// published when it is said and lost if NATS is away, since the job's end, which goes
// through the outbox, tells the story again. Like Outcome, apps do not need it.
type Reporter interface {
	// Progress publishes a brr.events.job.<kind>.progress event. Jobs call it a few
	// times a second at most; it publishes each call.
	Progress(Progress)
	// Announce publishes a domain event now (replication.started and .progress),
	// stamped like the events of an Outcome.
	Announce(*Event)
}
