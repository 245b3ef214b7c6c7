package web

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
	"github.com/brr-dev/brr/internal/testkit/chrome"
)

// TestDashboardJobsTable loads the dashboard in headless Chromium at a phone's size with
// fifty jobs of every kind: the What column sums up every kind's result (not only
// backups'), a very long error takes a few lines, not a page, and the jobs list does not
// push the Workers panel thousands of pixels down.
func TestDashboardJobsTable(t *testing.T) {
	browser := testkit.FindChromium(t)
	f := setup(t, nil)
	ctx := testkit.Context(t, 2*time.Minute)
	kv, err := f.js.KeyValue(ctx, brr.Subjects{}.ResultsBucket())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	put := func(id string, kind brr.Kind, status brr.Status, res *brr.Result, errText string) {
		e := &brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventJob, Status: status, Time: now, Worker: "w-test",
			JobID: id, Kind: kind, Pool: brr.DefaultPool, Result: res, Error: errText}
		data, _ := json.Marshal(e)
		if _, err := kv.Put(ctx, id, data); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 44 {
		put(fmt.Sprintf("filler-%02d", i), brr.KindVerify, brr.StatusSucceeded, &brr.Result{Verify: &brr.VerifyResult{Repo: "local"}}, "")
	}
	put("job-replicate", brr.KindReplicate, brr.StatusSucceeded, &brr.Result{Replicate: &brr.ReplicateResult{From: "local", To: "offsite", Snapshots: []string{"a", "b"}, BytesSent: 2048}}, "")
	put("job-prune", brr.KindPrune, brr.StatusSucceeded, &brr.Result{Prune: &brr.PruneResult{Repo: "local", Removed: []string{"a"}, Kept: 7}}, "")
	put("job-checkpoint", brr.KindCheckpoint, brr.StatusSucceeded, &brr.Result{Checkpoint: &brr.CheckpointResult{Point: brr.RecoveryPoint{Label: "pre-upgrade", Snapshot: "abcdef0123"}}}, "")
	put("job-drill", brr.KindDrill, brr.StatusSucceeded, &brr.Result{Drill: &brr.DrillResult{Passed: true, Files: 3, Bytes: 300}}, "")
	put("job-restore", brr.KindRestore, brr.StatusSucceeded, &brr.Result{Restore: &brr.RestoreResult{Files: 4, Target: "/srv/restore"}}, "")
	put("job-long-error", brr.KindRestore, brr.StatusFailed, nil, strings.Repeat("/srv/app/some/long/path/file.txt: exists in the target; ", 200))

	tab := chrome.Open(t, chrome.Options{Browser: browser, Width: 390, Height: 844})
	tab.Do("load the dashboard", chromedp.Navigate(f.url+"/"),
		tab.Poll(`document.querySelectorAll('#jobs-body tr[data-job]').length === 50`))
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(tab, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return s
	}
	for id, want := range map[string]string{
		"job-replicate":  "local → offsite: 2 snapshots copied",
		"job-prune":      "removed 1 snapshot, kept 7",
		"job-checkpoint": "point pre-upgrade on snapshot abcdef01",
		"job-drill":      "passed: 3 files",
		"job-restore":    "4 files into /srv/restore",
	} {
		if got := eval(`document.querySelector('#jobs-body tr[data-job="` + id + `"]').innerText`); !strings.Contains(got, want) {
			t.Errorf("the row of %s reads %q, want %q", id, got, want)
		}
	}
	if h := eval(`String(document.querySelector('#jobs-body tr[data-job="job-long-error"]').getBoundingClientRect().height)`); atof(h) > 250 {
		t.Errorf("the row with a long error is %s px high, want a few lines", h)
	}
	if y := eval(`String(document.querySelector('#workers').getBoundingClientRect().top + window.scrollY)`); atof(y) > 1800 {
		t.Errorf("the Workers panel starts at %s px on a phone, want the jobs list bounded", y)
	}
}

func atof(s string) float64 {
	var f float64
	_, _ = fmt.Sscan(s, &f)
	return f
}
