package web

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/brr-dev/brr"
)

// EventList is the answer of GET /api/v1/events.
type EventList struct {
	// Events are oldest first.
	Events []*brr.Event `json:"events"`
}

// eventQuery is what selects events, in GET /api/v1/events and the live stream: a
// subject filter (type, kind, status) and fields matched after decoding.
type eventQuery struct {
	subject string
	job     string
	repo    string
	source  string
	// quiet leaves out what repeats every health interval or faster: ping jobs (the
	// health canary), heartbeats and progress.
	quiet bool
}

func (q eventQuery) match(e *brr.Event) bool {
	return (q.job == "" || e.JobID == q.job) && (q.repo == "" || e.Repo == q.repo) && (q.source == "" || e.Source == q.source) &&
		!(q.quiet && noise(e))
}

// noise reports whether e is one of the events quiet leaves out.
func noise(e *brr.Event) bool {
	return e.Kind == brr.KindPing || e.Status == brr.StatusProgress ||
		e.Type == brr.EventHealth && e.Status == brr.Status(brr.CheckWorker)
}

// boolParam parses a true/false query parameter; empty is false.
func boolParam(v, name string) (bool, error) {
	switch v {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, errorf(http.StatusBadRequest, "%s %q: want true or false", name, v)
}

var eventTypes = []brr.EventType{brr.EventJob, brr.EventSnapshot, brr.EventReplication, brr.EventRecovery, brr.EventHealth}

// parseEventQuery reads type, kind, status, job, repo and source.
func (s *Server) parseEventQuery(q url.Values) (eventQuery, error) {
	typ, kind, status := brr.EventType(q.Get("type")), brr.Kind(q.Get("kind")), q.Get("status")
	if kind != "" && typ == "" {
		typ = brr.EventJob
	}
	known := false
	for _, t := range eventTypes {
		known = known || t == typ
	}
	switch {
	case typ != "" && !known:
		return eventQuery{}, errorf(http.StatusBadRequest, "type %q: want one of job, snapshot, replication, recovery, health", typ)
	case kind != "" && !kind.Valid():
		return eventQuery{}, errorf(http.StatusBadRequest, "kind %q: want one of %s", kind, kindNames())
	case kind != "" && typ != brr.EventJob:
		return eventQuery{}, errorf(http.StatusBadRequest, "kind goes with type job, not %q", typ)
	case status != "" && typ == "":
		return eventQuery{}, errorf(http.StatusBadRequest, "status %q needs a type (job, snapshot, replication, recovery or health)", status)
	case status != "" && !validToken(status):
		return eventQuery{}, errorf(http.StatusBadRequest, "status %q: use letters, digits, '-' or '_'", status)
	}
	quiet, err := boolParam(q.Get("quiet"), "quiet")
	if err != nil {
		return eventQuery{}, err
	}
	eq := eventQuery{job: q.Get("job"), repo: q.Get("repo"), source: q.Get("source"), quiet: quiet}
	if eq.job != "" {
		if err := brr.ValidateID(eq.job); err != nil {
			return eventQuery{}, err
		}
	}
	subj := s.client.Subjects()
	eq.subject = subj.Events(typ)
	if status == "" && kind == "" {
		return eq, nil
	}
	base := strings.TrimSuffix(eq.subject, ">")
	if status == "" {
		status = ">"
	}
	if typ == brr.EventJob {
		k := string(kind)
		if k == "" {
			k = "*"
		}
		eq.subject = base + k + "." + status
	} else {
		eq.subject = base + status
	}
	return eq, nil
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	eq, err := s.parseEventQuery(q)
	if err != nil {
		return err
	}
	limit, err := intParam(q.Get("limit"), 100, 1, 1000, "limit")
	if err != nil {
		return err
	}
	since, err := sinceParam(q.Get("since"), s.cfg.Now())
	if err != nil {
		return err
	}
	fetch := limit
	if eq.job != "" || eq.repo != "" || eq.source != "" || eq.quiet {
		fetch = 50 * limit // matched after the fetch: look further back
	}
	list, err := s.client.Events(r.Context(), eq.subject, since, fetch)
	if err != nil {
		return err
	}
	out := EventList{Events: []*brr.Event{}}
	for _, e := range list {
		if eq.match(e) {
			out.Events = append(out.Events, e)
		}
	}
	if len(out.Events) > limit {
		out.Events = out.Events[len(out.Events)-limit:]
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// Replication is the state of one replication pair: its latest run and lag.
type Replication struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Configured says the worker's replication policy names this pair.
	Configured bool `json:"configured"`
	// Status and Time are those of the latest replication event of the pair, empty
	// when there is none in the event stream.
	Status     brr.Status `json:"status,omitempty"`
	Time       time.Time  `json:"time,omitzero"`
	JobID      string     `json:"job_id,omitempty"`
	Error      string     `json:"error,omitempty"`
	Snapshots  int        `json:"snapshots"`
	BytesSent  int64      `json:"bytes_sent"`
	DurationMS int64      `json:"duration_ms,omitempty"`
	// Lag is how far To was behind From after the latest completed run.
	Lag *brr.ReplicationLag `json:"lag,omitempty"`
}

// ReplicationList is the answer of GET /api/v1/replication.
type ReplicationList struct {
	Pairs []Replication `json:"pairs"`
}

// replication reports each replication pair, from the configured policy and the
// replication events in the stream: the latest run and the lag it measured.
func (s *Server) replication(w http.ResponseWriter, r *http.Request) error {
	list, err := s.client.Events(r.Context(), s.client.Subjects().Events(brr.EventReplication), time.Time{}, 1000)
	if err != nil {
		return err
	}
	pairs := map[[2]string]*Replication{}
	pair := func(from, to string) *Replication {
		p := pairs[[2]string{from, to}]
		if p == nil {
			p = &Replication{From: from, To: to}
			pairs[[2]string{from, to}] = p
		}
		return p
	}
	for from, tos := range s.replicate() {
		for _, to := range tos {
			pair(from, to).Configured = true
		}
	}
	for _, e := range list { // oldest first: the latest run wins
		ri := e.Replication
		if ri == nil || e.Status == brr.StatusProgress {
			continue
		}
		from := ri.From
		if from == "" {
			from = s.cfg.DefaultRepo // a started event of a job that named no repo
		}
		p := pair(from, ri.To)
		p.Status, p.Time, p.JobID, p.Error = e.Status, e.Time, e.JobID, e.Error
		p.Snapshots, p.BytesSent, p.DurationMS = len(ri.Snapshots), ri.BytesSent, ri.DurationMS
		if ri.Lag != nil {
			p.Lag = ri.Lag
		}
	}
	out := ReplicationList{Pairs: make([]Replication, 0, len(pairs))}
	for _, p := range pairs {
		out.Pairs = append(out.Pairs, *p)
	}
	sort.Slice(out.Pairs, func(i, j int) bool {
		a, b := out.Pairs[i], out.Pairs[j]
		return a.From < b.From || a.From == b.From && a.To < b.To
	})
	writeJSON(w, http.StatusOK, out)
	return nil
}
