package metrics_test

import (
	"errors"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/metrics"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/testkit"
)

// gather returns the samples of family name, by their label values joined with ",".
func gather(t *testing.T, m *metrics.Metrics, name string) map[string]*dto.Metric {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.Metric{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			key := ""
			for i, l := range s.GetLabel() {
				if i > 0 {
					key += ","
				}
				key += l.GetValue()
			}
			out[key] = s
		}
	}
	return out
}

func TestJobLabelsAreBounded(t *testing.T) {
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	m := metrics.New(metrics.Options{Worker: "w1"})
	m.WatchRepos(map[string]metrics.RepoStats{"local": r}, "local")

	m.JobSettled(events.Settled{Kind: brr.KindVerify, Repo: "", Status: brr.StatusFailed, Duration: time.Second, Err: errors.New("damaged")})
	m.JobSettled(events.Settled{Kind: brr.KindVerify, Repo: "typo-repo", Status: brr.StatusFailed, Err: errors.New(`repo "typo-repo" is not configured`)})
	m.JobSettled(events.Settled{Kind: "no-such-kind", Status: brr.StatusFailed, Err: errors.New("bad subject")})
	m.JobSettled(events.Settled{Kind: brr.KindBackup, Repo: "local", Status: brr.StatusRetrying, Snoozed: true, Err: errors.New("leased")})
	m.JobSettled(events.Settled{Kind: brr.KindRestore, Status: brr.StatusSucceeded, Duration: 2 * time.Second,
		Result: &brr.Result{Restore: &brr.RestoreResult{Repo: "local", Bytes: 1234}}})

	failures := gather(t, m, "brr_verify_failures_total")
	if len(failures) != 2 || failures["local"].GetCounter().GetValue() != 1 || failures["other"].GetCounter().GetValue() != 1 {
		t.Fatalf("verify failures by repo = %v, want local (the default) and other (not configured)", failures)
	}
	jobs := gather(t, m, "brr_jobs_total")
	for key, want := range map[string]float64{"verify,failed": 2, "invalid,failed": 1, "backup,retrying": 1, "restore,succeeded": 1} {
		if got := jobs[key].GetCounter().GetValue(); got != want {
			t.Errorf("brr_jobs_total{%s} = %g, want %g", key, got, want)
		}
	}
	if got := gather(t, m, "brr_lease_waits_total")["backup"].GetCounter().GetValue(); got != 1 {
		t.Errorf("lease waits of backups = %g, want 1", got)
	}
	if got := gather(t, m, "brr_restore_bytes_total")["local"].GetCounter().GetValue(); got != 1234 {
		t.Errorf("restore bytes = %g, want 1234", got)
	}
	// Retrying attempts are not timed: only the four ends are.
	var timed uint64
	for _, s := range gather(t, m, "brr_job_duration_seconds") {
		timed += s.GetHistogram().GetSampleCount()
	}
	if timed != 4 {
		t.Errorf("job durations observed %d, want 4", timed)
	}
	// A repo that has stored nothing has no ratio yet.
	if ratio := gather(t, m, "brr_repo_compression_ratio"); len(ratio) != 0 {
		t.Errorf("compression ratio of an empty repo = %v, want none", ratio)
	}
	if stored := gather(t, m, "brr_repo_stored_bytes_added_total"); stored["local"] == nil {
		t.Errorf("brr_repo_stored_bytes_added_total{repo=local} missing")
	}
}

// TestWatchState exports the state database's commit figures as counters and
// cumulative histograms.
func TestWatchState(t *testing.T) {
	m := metrics.New(metrics.Options{Worker: "w1"})
	n := len(state.CommitLatencyBounds) + 1
	s := state.CommitStats{
		Commits: 3, Writes: 10,
		Commit:    state.Histogram{Counts: make([]uint64, n), Sum: 0.006},
		Disk:      state.Histogram{Counts: make([]uint64, n), Sum: 0.005},
		Wait:      state.Histogram{Counts: make([]uint64, n), Sum: 0.05},
		PerCommit: state.Histogram{Counts: make([]uint64, len(state.CommitWritesBounds)+1), Sum: 10},
	}
	s.Commit.Counts[3], s.Commit.Counts[4] = 2, 1 // ≤ 1 ms, ≤ 2 ms
	s.Disk.Counts[3] = 3
	s.Wait.Counts[4], s.Wait.Counts[n-1] = 9, 1 // one past every bound
	s.PerCommit.Counts[0], s.PerCommit.Counts[4] = 1, 2
	m.WatchState(func() state.CommitStats { return s })

	if got := gather(t, m, "brr_state_commits_total")[""].GetCounter().GetValue(); got != 3 {
		t.Errorf("brr_state_commits_total = %g, want 3", got)
	}
	if got := gather(t, m, "brr_state_writes_total")[""].GetCounter().GetValue(); got != 10 {
		t.Errorf("brr_state_writes_total = %g, want 10", got)
	}
	h := gather(t, m, "brr_state_commit_seconds")[""].GetHistogram()
	if h.GetSampleCount() != 3 || h.GetSampleSum() != 0.006 {
		t.Errorf("commit histogram count %d sum %g, want 3 and 0.006", h.GetSampleCount(), h.GetSampleSum())
	}
	cum := map[float64]uint64{}
	for _, b := range h.GetBucket() {
		cum[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	if cum[0.0005] != 0 || cum[0.001] != 2 || cum[0.002] != 3 || cum[1] != 3 {
		t.Errorf("commit histogram buckets %v, want cumulative 0 / 2 / 3 at 0.5 / 1 / 2 ms and 3 at 1 s", cum)
	}
	w := gather(t, m, "brr_state_write_wait_seconds")[""].GetHistogram()
	if w.GetSampleCount() != 10 {
		t.Errorf("wait histogram count %d, want 10 (the one past every bound included)", w.GetSampleCount())
	}
	if got := gather(t, m, "brr_state_writes_per_commit")[""].GetHistogram().GetSampleCount(); got != 3 {
		t.Errorf("writes per commit count %d, want 3", got)
	}
}
