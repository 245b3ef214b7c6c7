package brr

import (
	"strings"
)

// DefaultPrefix is the first token of every brr subject and, in upper case, of every
// stream and bucket name.
const DefaultPrefix = "brr"

// Subjects builds the subjects, stream and bucket names for one prefix. The zero value
// uses DefaultPrefix.
//
//	brr.jobs.<pool>.<kind>           job requests         (stream BRR_JOBS, WorkQueue)
//	brr.schedules.<name>             schedules            (stream BRR_JOBS)
//	brr.events.job.<kind>.<status>   job lifecycle        (stream BRR_EVENTS)
//	brr.events.<type>.<status>       other events         (stream BRR_EVENTS)
//	brr.dlq.<pool>.<kind>            dead letters         (stream BRR_DLQ)
//	brr.api.<pool>.<query>           queries to workers   (request/reply, no stream)
//	KV BRR_LEASES                    leases, one key per repo or source
//	KV BRR_RESULTS                   the latest job event of every job, by job id
//	KV BRR_HEALTH                    health check turns and their last results
//	KV BRR_REPOS                     which repository each repo name means, per pool
//	KV BRR_CANCEL                    cancel requests, one key per job id, with a TTL
type Subjects struct {
	Prefix string
}

func (s Subjects) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

func (s Subjects) name(suffix string) string {
	return strings.ToUpper(strings.ReplaceAll(s.prefix(), ".", "_")) + "_" + suffix
}

// Job is the subject a job of kind goes to in pool: brr.jobs.<pool>.<kind>.
func (s Subjects) Job(pool string, kind Kind) string {
	return s.prefix() + ".jobs." + pool + "." + string(kind)
}

// Jobs is the filter for every job of pool: brr.jobs.<pool>.>.
func (s Subjects) Jobs(pool string) string { return s.prefix() + ".jobs." + pool + ".>" }

// AllJobs is the filter for every job subject: brr.jobs.>.
func (s Subjects) AllJobs() string { return s.prefix() + ".jobs.>" }

// ParseJob splits a job subject into its pool and kind.
func (s Subjects) ParseJob(subject string) (pool string, kind Kind, ok bool) {
	rest, found := strings.CutPrefix(subject, s.prefix()+".jobs.")
	if !found {
		return "", "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", false
	}
	return parts[0], Kind(parts[1]), true
}

// Schedule is the subject of the schedule message called name: brr.schedules.<name>.
func (s Subjects) Schedule(name string) string { return s.prefix() + ".schedules." + name }

// AllSchedules is the filter for every schedule subject: brr.schedules.>.
func (s Subjects) AllSchedules() string { return s.prefix() + ".schedules.>" }

// Snooze is the subject of the one-shot schedule that brings back a snoozed job of pool
// (one that could not start yet): brr.snoozes.<pool>.<job id>. The server publishes the
// job to its job subject when the schedule fires, and removes the schedule.
func (s Subjects) Snooze(pool, jobID string) string {
	return s.prefix() + ".snoozes." + pool + "." + jobID
}

// AllSnoozes is the filter for every snooze subject: brr.snoozes.>.
func (s Subjects) AllSnoozes() string { return s.prefix() + ".snoozes.>" }

// Event is the subject of e: brr.events.job.<kind>.<status> for job events,
// brr.events.<type>.<status> for the others (the check's name for health events).
func (s Subjects) Event(e *Event) string {
	if e.Type == EventJob {
		return s.prefix() + ".events.job." + string(e.Kind) + "." + string(e.Status)
	}
	return s.prefix() + ".events." + string(e.Type) + "." + string(e.Status)
}

// Events is the filter for events: every event when typ is empty, else those of typ.
func (s Subjects) Events(typ EventType) string {
	if typ == "" {
		return s.prefix() + ".events.>"
	}
	return s.prefix() + ".events." + string(typ) + ".>"
}

// DLQ is the subject a dead job of kind in pool goes to: brr.dlq.<pool>.<kind>.
func (s Subjects) DLQ(pool string, kind Kind) string {
	return s.prefix() + ".dlq." + pool + "." + string(kind)
}

// AllDLQ is the filter for every dead-letter subject: brr.dlq.>.
func (s Subjects) AllDLQ() string { return s.prefix() + ".dlq.>" }

// API is the subject of a query served by the workers of pool: brr.api.<pool>.<query>.
func (s Subjects) API(pool, query string) string {
	return s.prefix() + ".api." + pool + "." + query
}

// JobsStream is the name of the job stream: BRR_JOBS.
func (s Subjects) JobsStream() string { return s.name("JOBS") }

// EventsStream is the name of the event stream: BRR_EVENTS.
func (s Subjects) EventsStream() string { return s.name("EVENTS") }

// DLQStream is the name of the dead-letter stream: BRR_DLQ.
func (s Subjects) DLQStream() string { return s.name("DLQ") }

// LeasesBucket is the name of the lease KV bucket: BRR_LEASES.
func (s Subjects) LeasesBucket() string { return s.name("LEASES") }

// ResultsBucket is the name of the KV bucket that keeps the latest job event of every
// job under its id: BRR_RESULTS. Wait and `brr jobs` read it.
func (s Subjects) ResultsBucket() string { return s.name("RESULTS") }

// Consumer is the name of the durable consumer that the workers of pool share.
func (s Subjects) Consumer(pool string) string { return "workers-" + pool }

// HealthBucket is the name of the KV bucket where the pool's health checks keep their
// state (whose turn a check is, its last results): BRR_HEALTH.
func (s Subjects) HealthBucket() string { return s.name("HEALTH") }

// ReposBucket is the name of the KV bucket where each pool registers which repository a
// repo name means, under <pool>.<repo>: BRR_REPOS. A worker whose repo of that name is
// another repository refuses to serve it, so that a pool's backups never split.
func (s Subjects) ReposBucket() string { return s.name("REPOS") }

// RepoKey is the key of repo's registration in pool in the ReposBucket: <pool>.<repo>.
func (s Subjects) RepoKey(pool, repo string) string { return pool + "." + repo }

// CancelBucket is the name of the KV bucket of cancel requests, one key per job id:
// BRR_CANCEL. Client.Cancel writes it; every worker watches it (see CancelRequest).
func (s Subjects) CancelBucket() string { return s.name("CANCEL") }
