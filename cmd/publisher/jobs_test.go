package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// `brr jobs show ID --wait` follows a job through a later attempt: one that came back
// after a drain put it back (no event in between) or after a retrying event. The second
// attempt's start and its progress are shown, its progress at once though the first
// attempt's was shown a moment before, then its result.
func TestJobsShowWaitFollowsALaterAttempt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		retry bool
	}{{"drained", false}, {"retrying", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, url := setup(t)
			job := &brr.Job{ID: "rs-" + tc.name, Kind: brr.KindRestore, Pool: "default"}
			attempt := func(n int, p *brr.Progress) func(*brr.Event) {
				return func(e *brr.Event) { e.Attempt, e.Progress = n, p }
			}
			w.emit(job, brr.StatusStarted, attempt(1, nil))

			done := make(chan result, 1)
			go func() { done <- brrCmd(t, url, "jobs", "show", job.ID, "--wait") }()
			// The watch is in place once the results bucket has a consumer.
			kv, err := w.js.Stream(context.Background(), "KV_"+w.subj.ResultsBucket())
			if err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, 10*time.Second, "jobs show to watch the job", func() bool {
				info, err := kv.Info(context.Background())
				return err == nil && info.State.Consumers > 0
			})

			// The results bucket keeps a job's latest entry only: an entry put before the
			// watch read the one before replaces it unseen. A worker's entries are
			// milliseconds apart at least; here each waits until the watch has read the
			// one before (its consumer delivered it).
			seen := func(status brr.Status, edit func(*brr.Event)) {
				w.emit(job, status, edit)
				entry, err := w.kv.Get(context.Background(), job.ID)
				if err != nil {
					t.Fatal(err)
				}
				testkit.Eventually(t, 10*time.Second, "jobs show to read the "+string(status)+" entry", func() bool {
					for info := range kv.ListConsumers(context.Background()).Info() {
						if info.Delivered.Stream >= entry.Revision() {
							return true
						}
					}
					return false
				})
			}
			w.emit(job, brr.StatusProgress, attempt(1, &brr.Progress{Phase: "restore", Files: 1, TotalFiles: 4, Bytes: 100, TotalBytes: 400}))
			if tc.retry {
				seen(brr.StatusRetrying, func(e *brr.Event) { e.Error, e.RetryInMS = "repo offline", 10 })
			}
			seen(brr.StatusAccepted, attempt(2, nil))
			seen(brr.StatusStarted, attempt(2, nil))
			w.emit(job, brr.StatusProgress, attempt(2, &brr.Progress{Phase: "restore", Files: 3, TotalFiles: 4, Bytes: 300, TotalBytes: 400}))
			w.emit(job, brr.StatusSucceeded, func(e *brr.Event) {
				e.Attempt = 2
				e.Result = &brr.Result{Restore: &brr.RestoreResult{Snapshot: "abcdef0123456789", Repo: "local", Target: "/srv/x", Files: 4, Bytes: 400}}
			})

			var r result
			select {
			case r = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("jobs show --wait did not end")
			}
			if r.code != 0 || !strings.Contains(r.stdout, "restored snapshot abcdef0123456789") {
				t.Fatalf("jobs show --wait: %v", r)
			}
			want := []string{"restore: 1/4 files", "started (attempt 2)", "restore: 3/4 files"}
			if tc.retry {
				want = append(want, "attempt 1 failed, retrying")
			}
			for _, s := range want {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%v", s, r)
				}
			}
		})
	}
}
