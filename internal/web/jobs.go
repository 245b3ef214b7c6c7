package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
)

// JobRequest is the body of POST /api/v1/jobs: a job's kind and arguments, as the
// job message carries them, with an optional id, pool and requester.
type JobRequest struct {
	Kind brr.Kind `json:"kind"`
	// ID is the job id and idempotency key; empty: a new one.
	ID string `json:"id,omitempty"`
	// Pool is where the job goes; empty: this worker's first pool.
	Pool string `json:"pool,omitempty"`
	// By says who asked; empty: "http <client address>".
	By   string          `json:"by,omitempty"`
	Args json.RawMessage `json:"args"`
}

// JobAccepted is the answer to a job that was queued.
type JobAccepted struct {
	brr.PublishResult
	// URL is where the job's state can be read.
	URL string `json:"url"`
}

func (s *Server) postJob(w http.ResponseWriter, r *http.Request) error {
	var req JobRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Kind == "" {
		return errorf(http.StatusBadRequest, "the job has no \"kind\": send one of %s", kindNames())
	}
	if len(req.Args) == 0 || bytes.Equal(req.Args, []byte("null")) {
		req.Args = json.RawMessage("{}")
	}
	if req.ID == "" {
		req.ID = brr.NewID()
	}
	if req.Pool == "" {
		req.Pool = s.cfg.Pools[0]
	}
	if req.By == "" {
		req.By = "http " + clientIP(r)
	}
	// The job is built as its message and decoded the way a worker decodes it, so the
	// API accepts exactly what a worker would run: same strictness, same errors.
	wire, err := json.Marshal(map[string]any{
		"v": brr.Version, "id": req.ID, "kind": req.Kind, "pool": req.Pool,
		"created": s.cfg.Now().UTC(), "by": req.By, "args": req.Args,
	})
	if err != nil {
		return fmt.Errorf("encode job: %w", err)
	}
	job, err := brr.DecodeJob(wire)
	if err != nil {
		return err
	}
	if err := s.served(r, job.Pool); err != nil {
		return err
	}
	res, err := s.client.PublishJob(r.Context(), job)
	if err != nil {
		return err
	}
	if res.Duplicate {
		return errorf(http.StatusConflict, "job id %s was already published (within the job stream's duplicate window), so this one was dropped: GET /api/v1/jobs/%s for its state, or send another id", job.ID, job.ID)
	}
	url := "/api/v1/jobs/" + job.ID
	w.Header().Set("Location", url)
	s.log.Info().Str("job_id", job.ID).Str("kind", string(job.Kind)).Str("pool", job.Pool).Str("client", clientIP(r)).Msg("job published over http")
	writeJSON(w, http.StatusAccepted, JobAccepted{PublishResult: res, URL: url})
	return nil
}

// served checks that a worker serves pool before a job is queued there: a job for a pool
// that no worker serves would wait in the queue, unseen, until one starts, so it is
// refused with 503 instead. The pools of this worker are served by this worker and are
// not asked about.
func (s *Server) served(r *http.Request, pool string) error {
	if slices.Contains(s.cfg.Pools, pool) {
		return nil
	}
	_, err := s.client.Served(r.Context(), pool)
	if errors.Is(err, brr.ErrNoWorker) {
		return errorf(http.StatusServiceUnavailable, "no worker serves pool %q, so the job was not queued (it would wait until one starts): start a brr-worker with %q in its pools, or send the job to a pool that has workers (this worker serves %s)", pool, pool, strings.Join(s.cfg.Pools, ", "))
	}
	return err
}

// decodeBody decodes a JSON request body into v: at most MaxBodySize bytes, no unknown
// fields, nothing after the object.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, MaxBodySize)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more data after the JSON object")
	}
	if err == nil {
		if _, rerr := io.Copy(io.Discard, body); rerr != nil {
			err = rerr
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooBig):
		return errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", MaxBodySize)
	case errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, `request body is empty: send a JSON job such as {"kind":"backup","args":{"path":"/srv/app"}}`)
	}
	return errorf(http.StatusBadRequest, "request body is not a valid job request: %v", err)
}

func kindNames() string {
	names := make([]string, len(brr.Kinds))
	for i, k := range brr.Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// JobList is the answer of GET /api/v1/jobs.
type JobList struct {
	// Jobs are the latest lifecycle event of each job, newest first.
	Jobs []*brr.Event `json:"jobs"`
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 50, 1, 1000, "limit")
	if err != nil {
		return err
	}
	kind, status := brr.Kind(q.Get("kind")), brr.Status(q.Get("status"))
	if kind != "" && !kind.Valid() {
		return errorf(http.StatusBadRequest, "kind %q: want one of %s", kind, kindNames())
	}
	if status != "" && !validToken(string(status)) {
		return errorf(http.StatusBadRequest, "status %q: want a job status such as started, succeeded, failed", status)
	}
	quiet, err := boolParam(q.Get("quiet"), "quiet")
	if err != nil {
		return err
	}
	fetch := limit
	if kind != "" || status != "" || quiet {
		fetch = 10 * limit // filtered after the fetch: look further back
	}
	events, err := s.client.Jobs(r.Context(), fetch)
	if err != nil {
		return err
	}
	out := JobList{Jobs: []*brr.Event{}}
	for _, e := range events {
		if (kind != "" && e.Kind != kind) || (status != "" && e.Status != status) || (quiet && e.Kind == brr.KindPing) {
			continue
		}
		if out.Jobs = append(out.Jobs, e); len(out.Jobs) == limit {
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// JobState is the answer of GET /api/v1/jobs/{id}: the job's latest lifecycle event in
// the pool, and this worker's record of it when this worker took it.
type JobState struct {
	ID     string           `json:"id"`
	Event  *brr.Event       `json:"event,omitempty"`
	Record *state.JobRecord `json:"record,omitempty"`
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := brr.ValidateID(id); err != nil {
		return err
	}
	st := JobState{ID: id}
	e, err := s.client.Job(r.Context(), id)
	switch {
	case err == nil:
		st.Event = e
	case !errors.Is(err, brr.ErrNotFound):
		return err
	}
	if s.cfg.Records != nil {
		rec, err := s.cfg.Records.Job(id)
		switch {
		case err == nil:
			st.Record = rec
		case !errors.Is(err, brr.ErrNotFound):
			return err
		}
	}
	if st.Event == nil && st.Record == nil {
		return errorf(http.StatusNotFound, "job %s not found: no worker has taken it yet, its result expired, or the id is wrong (GET /api/v1/jobs lists recent jobs)", id)
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// intParam parses an integer query parameter; empty gives def.
func intParam(v string, def, lo, hi int, name string) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, errorf(http.StatusBadRequest, "%s %q: want a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// validToken reports whether s can be one token of a subject filter.
func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// sinceParam parses a "since" parameter: a duration back from now ("1h", "7d") or an
// RFC 3339 time; empty gives the zero time.
func sinceParam(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := parseWindow(v); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, errorf(http.StatusBadRequest, "since %q: want a duration back from now such as 30m, 24h or 7d, or a time such as 2026-11-26T12:00:00Z", v)
	}
	return t, nil
}

// parseWindow parses a duration with the extra unit d (days) and w (weeks): 90m, 24h,
// 7d, 2w.
func parseWindow(v string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(v, suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil || f <= 0 {
				return 0, fmt.Errorf("window %q: want a positive number before %q", v, suffix)
			}
			return time.Duration(f * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("window %q: want a positive duration such as 30m, 24h or 7d", v)
	}
	return d, nil
}
