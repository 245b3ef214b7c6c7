package brr

import "time"

// HealthStatus is the state of a health check: ok, warn or critical.
type HealthStatus string

// The health statuses, from best to worst.
const (
	HealthOK       HealthStatus = "ok"
	HealthWarn     HealthStatus = "warn"
	HealthCritical HealthStatus = "critical"
)

// Worse returns the worse of s and t; an empty status counts as ok.
func (s HealthStatus) Worse(t HealthStatus) HealthStatus {
	rank := func(h HealthStatus) int {
		switch h {
		case HealthCritical:
			return 2
		case HealthWarn:
			return 1
		}
		return 0
	}
	if rank(t) > rank(s) {
		return t
	}
	if s == "" {
		return HealthOK
	}
	return s
}

// The health checks: the last token of brr.events.health.<check> and HealthCheck.Check.
// CheckWorker is the heartbeat, whose events carry a WorkerInfo instead of a HealthCheck.
const (
	CheckWorker         = "worker"
	CheckRPO            = "rpo"
	CheckReplicationLag = "replication_lag"
	CheckRepository     = "repository"
	CheckDisk           = "disk"
	CheckDLQ            = "dlq"
	CheckCanary         = "canary"
	CheckRepoRegistry   = "repo_registry"
)

// HealthCheck is the result of one health check for one subject (a source, a
// replication target, a repo), published on brr.events.health.<check>.
type HealthCheck struct {
	// Check names the check: rpo, replication_lag, repository, disk, dlq, canary,
	// repo_registry.
	Check string `json:"check"`
	// Subject is what was checked: a source path, "local->offsite", a repo name, a worker.
	Subject string       `json:"subject,omitempty"`
	Status  HealthStatus `json:"status"`
	// Message says, for people, what was found and what to do when it is not ok.
	Message string `json:"message"`
	// Value is the measured figure (an age in seconds, a count, bytes, milliseconds).
	Value float64 `json:"value"`
	// Time is when the check ran; Since when it entered its current status.
	Time  time.Time `json:"time"`
	Since time.Time `json:"since"`
}

// HealthReport is the aggregate health of a pool: the worst status of its checks.
type HealthReport struct {
	Status  HealthStatus  `json:"status"`
	Checks  []HealthCheck `json:"checks"`
	Workers []WorkerInfo  `json:"workers"`
	Time    time.Time     `json:"time"`
}
