package web

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
)

// Analytics is the answer of GET /api/v1/analytics: how the jobs that ended in a window
// went, in total and per group.
type Analytics struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// By is the grouping: kind, source, day or hour (UTC).
	By     string  `json:"by"`
	Total  Stats   `json:"total"`
	Groups []Group `json:"groups"`
	// Samples says where the jobs came from: final job events in the event stream, and
	// this worker's own job records for jobs whose events are gone.
	Samples SampleCount `json:"samples"`
}

// SampleCount counts the jobs analytics read, by origin.
type SampleCount struct {
	Events  int `json:"events"`
	Records int `json:"records"`
}

// Group is the stats of one group of jobs: a kind, a source, a day or an hour.
type Group struct {
	Key string `json:"key"`
	// Start is the start of the day or hour; zero for kind and source groups.
	Start time.Time `json:"start,omitzero"`
	Stats
}

// Stats sums up a set of finished jobs.
type Stats struct {
	Jobs      int `json:"jobs"`
	Succeeded int `json:"succeeded"`
	// Failed counts jobs that ended failed or dead.
	Failed int `json:"failed"`
	// Cancelled counts jobs that ended cancelled: someone stopped them, so they are
	// neither a success nor a failure.
	Cancelled int `json:"cancelled"`
	// SuccessRate is Succeeded/(Jobs-Cancelled), null without such jobs.
	SuccessRate *float64 `json:"success_rate"`
	// DurationP50MS and DurationP95MS are percentiles (nearest rank) of the run time of
	// the jobs whose run time is known, cancelled ones left out (they did not run to
	// their end); null when none is.
	DurationP50MS *int64 `json:"duration_p50_ms"`
	DurationP95MS *int64 `json:"duration_p95_ms"`
	// Bytes is what the jobs moved: read by backups and verifies, written by restores
	// and drills, sent by replications.
	Bytes int64 `json:"bytes"`
	// BackupBytes is the size of the files in the backups' snapshots, BytesAdded what
	// the backups stored that their repository did not have (after compression), and
	// DedupRatio BackupBytes/BytesAdded: null when nothing was added.
	BackupBytes int64    `json:"backup_bytes"`
	BytesAdded  int64    `json:"bytes_added"`
	DedupRatio  *float64 `json:"dedup_ratio"`
}

// sample is one finished job, from its final event or this worker's record of it.
type sample struct {
	id     string
	kind   brr.Kind
	source string
	status brr.Status // succeeded, failed, dead or cancelled
	end    time.Time
	// durMS is the run time, -1 when unknown.
	durMS       int64
	bytes       int64
	backupBytes int64
	bytesAdded  int64
}

// maxRecords bounds the job records one analytics request reads.
const maxRecords = 20000

var groupings = []string{"kind", "source", "day", "hour"}

func (s *Server) analytics(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	window := 7 * 24 * time.Hour
	if v := q.Get("window"); v != "" {
		d, err := parseWindow(v)
		if err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
		window = d
	}
	if window < time.Minute || window > 90*24*time.Hour {
		return errorf(http.StatusBadRequest, "window %q: want 1m to 90d", q.Get("window"))
	}
	by := q.Get("by")
	if by == "" {
		by = "kind"
	}
	known := false
	for _, g := range groupings {
		known = known || g == by
	}
	if !known {
		return errorf(http.StatusBadRequest, "by %q: want one of %s", by, strings.Join(groupings, ", "))
	}
	if by == "hour" && window > 14*24*time.Hour {
		return errorf(http.StatusBadRequest, "by hour goes up to a window of 14d; use by=day for %s", q.Get("window"))
	}
	kind, source := brr.Kind(q.Get("kind")), q.Get("source")
	if kind != "" && !kind.Valid() {
		return errorf(http.StatusBadRequest, "kind %q: want one of %s", kind, kindNames())
	}
	to := s.cfg.Now().UTC()
	from := to.Add(-window)
	samples, count, err := s.collect(r.Context(), from, kind)
	if err != nil {
		return err
	}
	if source != "" {
		kept := samples[:0]
		for _, sm := range samples {
			if sm.source == source {
				kept = append(kept, sm)
			}
		}
		samples = kept
	}
	a := summarize(samples, by, from, to)
	a.Samples = count
	writeJSON(w, http.StatusOK, a)
	return nil
}

// collect gathers the jobs that ended at or after from: final job events from the
// stream, then this worker's records of jobs the stream no longer has. Ping jobs are
// left out unless kind asks for them: they are the health canary, not work.
func (s *Server) collect(ctx context.Context, from time.Time, kind brr.Kind) ([]sample, SampleCount, error) {
	var count SampleCount
	byID := map[string]*sample{}
	base := strings.TrimSuffix(s.client.Subjects().Events(brr.EventJob), ">")
	k := string(kind)
	if k == "" {
		k = "*"
	}
	for _, st := range []brr.Status{brr.StatusSucceeded, brr.StatusFailed, brr.StatusDead, brr.StatusCancelled} {
		events, err := s.client.Events(ctx, base+k+"."+string(st), from, 0)
		if err != nil {
			return nil, count, err
		}
		for _, e := range events {
			if e.Kind == brr.KindPing && kind != brr.KindPing || dryRun(e.Result) {
				continue
			}
			sm := eventSample(e)
			if old := byID[sm.id]; old == nil || sm.end.After(old.end) {
				byID[sm.id] = &sm
			}
		}
	}
	count.Events = len(byID)
	if s.cfg.Records != nil {
		recs, err := s.cfg.Records.Jobs(maxRecords)
		if err != nil {
			return nil, count, fmt.Errorf("read job records: %w", err)
		}
		for _, rec := range recs {
			sm, ok := recordSample(rec)
			if !ok || sm.end.Before(from) || (kind != "" && sm.kind != kind) || (kind == "" && sm.kind == brr.KindPing) {
				continue
			}
			if old := byID[sm.id]; old != nil {
				if old.durMS < 0 {
					old.durMS = sm.durMS // a failed job's event has no run time
				}
				continue
			}
			byID[sm.id] = &sm
			count.Records++
		}
	}
	out := make([]sample, 0, len(byID))
	for _, sm := range byID {
		out = append(out, *sm)
	}
	return out, count, nil
}

// dryRun reports whether res is a backup's dry run: it stored nothing, and is no sample
// of what backups take.
func dryRun(res *brr.Result) bool { return res != nil && res.Backup != nil && res.Backup.DryRun }

func eventSample(e *brr.Event) sample {
	sm := sample{id: e.JobID, kind: e.Kind, source: e.Source, status: e.Status, end: e.Time, durMS: -1}
	sm.fill(e.Result)
	return sm
}

func recordSample(rec *state.JobRecord) (sample, bool) {
	if !rec.Status.Final() || rec.Finished.IsZero() || dryRun(rec.Result) {
		return sample{}, false
	}
	sm := sample{id: rec.ID, kind: rec.Kind, source: rec.Source, status: rec.Status, end: rec.Finished, durMS: -1}
	sm.fill(rec.Result)
	if sm.durMS < 0 && !rec.Started.IsZero() && !rec.Finished.Before(rec.Started) {
		sm.durMS = rec.Finished.Sub(rec.Started).Milliseconds()
	}
	return sm, true
}

// fill takes the run time and byte counts from a job's result.
func (sm *sample) fill(res *brr.Result) {
	if res == nil {
		return
	}
	dur := int64(-1)
	switch {
	case res.Backup != nil:
		b := res.Backup
		dur, sm.bytes, sm.backupBytes, sm.bytesAdded = b.DurationMS, b.BytesRead, b.Bytes, b.BytesAdded
		if sm.source == "" {
			sm.source = b.Source
		}
	case res.Restore != nil:
		dur, sm.bytes = res.Restore.DurationMS, res.Restore.Bytes
	case res.Verify != nil:
		dur, sm.bytes = res.Verify.DurationMS, res.Verify.BytesRead
	case res.Replicate != nil:
		dur, sm.bytes = res.Replicate.DurationMS, res.Replicate.BytesSent
	case res.Prune != nil:
		dur = res.Prune.DurationMS
	case res.Drill != nil:
		dur, sm.bytes = res.Drill.DurationMS, res.Drill.Bytes
	}
	if dur >= 0 {
		sm.durMS = dur
	}
}

// summarize computes the stats of samples, in total and grouped by by, over [from, to].
// Day and hour groups cover the whole window, empty ones included, so that a chart of
// them has no gaps; kind and source groups exist only where there are jobs.
func summarize(samples []sample, by string, from, to time.Time) Analytics {
	a := Analytics{From: from, To: to, By: by, Total: stats(samples), Groups: []Group{}}
	groups := map[string][]sample{}
	for _, sm := range samples {
		groups[groupKey(sm, by)] = append(groups[groupKey(sm, by)], sm)
	}
	if by == "day" || by == "hour" {
		step := 24 * time.Hour
		if by == "hour" {
			step = time.Hour
		}
		for t := from.UTC().Truncate(step); !t.After(to); t = t.Add(step) {
			key := bucketKey(t, by)
			a.Groups = append(a.Groups, Group{Key: key, Start: t, Stats: stats(groups[key])})
		}
		return a
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a.Groups = append(a.Groups, Group{Key: k, Stats: stats(groups[k])})
	}
	return a
}

func groupKey(sm sample, by string) string {
	switch by {
	case "kind":
		return string(sm.kind)
	case "source":
		return sm.source
	}
	step := 24 * time.Hour
	if by == "hour" {
		step = time.Hour
	}
	return bucketKey(sm.end.UTC().Truncate(step), by)
}

func bucketKey(t time.Time, by string) string {
	if by == "hour" {
		return t.Format("2006-01-02T15Z")
	}
	return t.Format("2006-01-02")
}

func stats(samples []sample) Stats {
	var st Stats
	var durs []int64
	for _, sm := range samples {
		st.Jobs++
		switch sm.status {
		case brr.StatusSucceeded:
			st.Succeeded++
		case brr.StatusCancelled:
			st.Cancelled++
		default:
			st.Failed++
		}
		if sm.durMS >= 0 && sm.status != brr.StatusCancelled {
			durs = append(durs, sm.durMS)
		}
		st.Bytes += sm.bytes
		st.BackupBytes += sm.backupBytes
		st.BytesAdded += sm.bytesAdded
	}
	if ran := st.Jobs - st.Cancelled; ran > 0 {
		st.SuccessRate = ptr(float64(st.Succeeded) / float64(ran))
	}
	if len(durs) > 0 {
		sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
		st.DurationP50MS = ptr(percentile(durs, 50))
		st.DurationP95MS = ptr(percentile(durs, 95))
	}
	if st.BytesAdded > 0 {
		st.DedupRatio = ptr(float64(st.BackupBytes) / float64(st.BytesAdded))
	}
	return st
}

// percentile is the nearest-rank percentile p of sorted, which is not empty.
func percentile(sorted []int64, p float64) int64 {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ptr[T any](v T) *T { return &v }
