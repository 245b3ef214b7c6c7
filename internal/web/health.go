package web

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
)

var errNoHealth = errorf(http.StatusServiceUnavailable, "the health monitor is not running on this worker, so it has no view of the pool's health and workers")

func (s *Server) health(w http.ResponseWriter, _ *http.Request) error {
	if s.cfg.Health == nil {
		return errNoHealth
	}
	rep := s.cfg.Health.Report()
	if rep.Checks == nil {
		rep.Checks = []brr.HealthCheck{}
	}
	if rep.Workers == nil {
		rep.Workers = []brr.WorkerInfo{}
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// WorkerList is the answer of GET /api/v1/workers.
type WorkerList struct {
	Workers []brr.WorkerInfo `json:"workers"`
}

func (s *Server) workers(w http.ResponseWriter, _ *http.Request) error {
	if s.cfg.Health == nil {
		return errNoHealth
	}
	list := s.cfg.Health.Report().Workers
	if list == nil {
		list = []brr.WorkerInfo{}
	}
	writeJSON(w, http.StatusOK, WorkerList{Workers: list})
	return nil
}

// PoolQueue is the job queue of one pool, as its durable consumer sees it.
type PoolQueue struct {
	Pool string `json:"pool"`
	// Pending jobs wait for a worker; InFlight were handed to one and not acked yet;
	// Redelivered of those were handed out more than once.
	Pending     uint64 `json:"pending"`
	InFlight    int    `json:"in_flight"`
	Redelivered int    `json:"redelivered"`
	// Waiting counts the workers' pull requests waiting for a job.
	Waiting int `json:"waiting"`
}

// QueueList is the answer of GET /api/v1/queue.
type QueueList struct {
	Pools []PoolQueue `json:"pools"`
}

// queue reads the state of the durable consumer of each of this worker's pools.
func (s *Server) queue(w http.ResponseWriter, r *http.Request) error {
	subj := s.client.Subjects()
	out := QueueList{Pools: []PoolQueue{}}
	for _, pool := range s.cfg.Pools {
		q := PoolQueue{Pool: pool}
		cons, err := s.js.Consumer(r.Context(), subj.JobsStream(), subj.Consumer(pool))
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrConsumerNotFound):
			// No worker of the pool has started yet: nothing is queued for it.
		case err != nil:
			return fmt.Errorf("read queue of pool %s: %w", pool, err)
		default:
			info := cons.CachedInfo()
			q.Pending, q.InFlight, q.Redelivered, q.Waiting = info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting
		}
		out.Pools = append(out.Pools, q)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
