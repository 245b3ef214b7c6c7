package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
	"github.com/brr-dev/brr/internal/testkit/chrome"
)

// TestDashboardActions queues jobs from the dashboard's Actions panel in headless
// Chromium, by clicking: a backup of a named source, then a checkpoint of the snapshot it
// made, a verify of the repo and a restore drill of the snapshot. Each shows what it will send and waits for "Yes"; "No" sends nothing; without
// the API key nothing is queued and the page asks for it. Each effect is read through
// the API (the job succeeded; the snapshot, then the recovery point, exist) and the new
// job shows in the jobs table. A screenshot of each screen is kept as a test artifact.
func TestDashboardActions(t *testing.T) {
	browser := testkit.FindChromium(t)
	const key = "e2e-dashact-key-0123456789abcdef"
	keyFile := writeAPIKey(t, key)
	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 9, Sizes: []int{16 << 10, 100, 0}})
	w := bins.StartWorker(t, testkit.WorkerOptions{Config: fmt.Sprintf(
		"http:\n  api_key_file: %s\nsources:\n  docs: {path: %q}\n", keyFile, src)})
	_, c := testkit.Connect(t, w.NATSURL)
	ctx := testkit.Context(t, 4*time.Minute)
	base := "http://" + w.HTTP

	tab := newTab(t, browser, w, 1280, 1200)
	do, poll := tab.Do, tab.Poll
	q := func(css string) string { return "document.querySelector(" + chrome.JSString(css) + ")" }
	click := func(css string) chromedp.Action[chromedp.Void] {
		return poll(q(css) + " && (" + q(css) + ".click(), true)")
	}
	text := func(css string) string {
		t.Helper()
		s, err := chromedp.Run(tab, chromedp.Evaluate[string](q(css)+".textContent"))
		if err != nil {
			t.Fatalf("text of %s: %v", css, err)
		}
		return s
	}
	shoot := func(name string) {
		t.Helper()
		shot, err := chromedp.Run(tab, chromedp.Screenshot(chromedp.ID("actions")))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		path := filepath.Join(testkit.ArtifactDir(t), name)
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	// queued waits for the panel to say which job it queued and returns its id.
	queued := func(what string) string {
		t.Helper()
		do(what, poll(q("#act-result[data-job]")+" && "+q("#act-confirm")+".hidden"))
		id := text("#act-result")
		s, err := chromedp.Run(tab, chromedp.Evaluate[string](q("#act-result")+".dataset.job"))
		if err != nil || s == "" || !strings.Contains(id, s) {
			t.Fatalf("the panel says %q of job %q (%v)", id, s, err)
		}
		return s
	}

	do("load the dashboard", chromedp.Navigate(base+"/"))
	do("the named source is offered",
		poll(q(`#act-backup-source option[value="docs"]`)))
	shoot("dashboard-actions.png")

	do("Back up…, then No",
		click("#act-backup button[type=submit]"),
		poll("!"+q("#act-confirm")+".hidden"))
	if got := text("#act-json"); !strings.Contains(got, `"kind": "backup"`) || !strings.Contains(got, `"source_name": "docs"`) {
		t.Fatalf("the confirmation shows %q, want the backup of docs", got)
	}
	shoot("dashboard-actions-confirm-backup.png")
	do("No", click("#act-no"), poll(q("#act-confirm")+".hidden"))

	do("Back up…, Yes without the key: the page asks for it",
		click("#act-backup button[type=submit]"),
		poll("!"+q("#act-confirm")+".hidden"),
		click("#act-yes"),
		poll(`!document.querySelector("#key-form").hidden && !`+q("#act-confirm")+".hidden"))
	jobs, err := c.Jobs(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Kind != brr.KindPing {
			t.Fatalf("after No and a Yes without the key the pool has job %+v, want none", j)
		}
	}

	do("enter the key and confirm again",
		chromedp.SendKeys(chromedp.ID("key-input"), key),
		chromedp.Click(chromedp.CSS("#key-form button")),
		poll(`document.querySelector("#key-form").hidden`),
		click("#act-yes"))
	backup := queued("the backup is queued")
	e, err := c.Wait(ctx, backup, nil)
	if err != nil || e.Kind != brr.KindBackup || e.Result == nil || e.Result.Backup == nil {
		t.Fatalf("the backup ended %+v (%v), want it succeeded", e, err)
	}
	snap := e.Result.Backup.Snapshot
	snaps, err := c.Snapshots(ctx, "", src)
	if err != nil || len(snaps) != 1 || snaps[0].ID != snap {
		t.Fatalf("snapshots of %s: %+v (%v), want the one the backup made, %s", src, snaps, err, snap)
	}
	do("the jobs table shows the backup succeeded",
		poll(q(`#jobs-body tr[data-job="`+backup+`"][data-status="succeeded"]`)))
	shoot("dashboard-actions-backup-queued.png")

	do("the new snapshot is offered for a checkpoint",
		poll(q(`#act-checkpoint-snap option[value="`+snap+`"]`)),
		chromedp.SetValue(chromedp.ID("act-checkpoint-snap"), snap),
		chromedp.SendKeys(chromedp.ID("act-checkpoint-label"), "pre-upgrade"),
		click("#act-checkpoint button[type=submit]"),
		poll("!"+q("#act-confirm")+".hidden"))
	if got := text("#act-json"); !strings.Contains(got, `"kind": "checkpoint"`) || !strings.Contains(got, `"snapshot": "`+snap+`"`) || !strings.Contains(got, `"label": "pre-upgrade"`) {
		t.Fatalf("the confirmation shows %q, want a checkpoint pre-upgrade of %s", got, snap)
	}
	shoot("dashboard-actions-confirm-checkpoint.png")
	do("Yes", click("#act-yes"))
	cp := queued("the checkpoint is queued")
	if e, err := c.Wait(ctx, cp, nil); err != nil || e.Kind != brr.KindCheckpoint {
		t.Fatalf("the checkpoint ended %+v (%v), want it succeeded", e, err)
	}
	points, err := c.Checkpoints(ctx, "")
	if err != nil || !slices.ContainsFunc(points.Points, func(p brr.RecoveryPoint) bool {
		return p.Label == "pre-upgrade" && p.Snapshot == snap
	}) {
		t.Fatalf("recovery points: %+v (%v), want pre-upgrade on %s", points, err, snap)
	}
	do("the jobs table shows the checkpoint succeeded",
		poll(q(`#jobs-body tr[data-job="`+cp+`"][data-status="succeeded"]`)))
	shoot("dashboard-actions-checkpoint-queued.png")

	// Verify and a restore drill, the same way; replicate needs a second repo and is
	// left to the API tests.
	do("Verify… and Yes",
		click("#act-verify button[type=submit]"),
		poll("!"+q("#act-confirm")+".hidden && "+q("#act-json")+`.textContent.includes('"kind": "verify"')`),
		click("#act-yes"))
	verify := queued("the verify is queued")
	if e, err := c.Wait(ctx, verify, nil); err != nil || e.Result == nil || e.Result.Verify == nil || e.Result.Verify.Snapshots != 1 {
		t.Fatalf("the verify ended %+v (%v), want it succeeded over one snapshot", e, err)
	}
	do("Drill… of the snapshot and Yes",
		chromedp.SetValue(chromedp.ID("act-drill-snap"), snap),
		click("#act-drill button[type=submit]"),
		poll("!"+q("#act-confirm")+".hidden && "+q("#act-json")+`.textContent.includes('"kind": "drill"')`),
		click("#act-yes"))
	drill := queued("the drill is queued")
	if e, err := c.Wait(ctx, drill, nil); err != nil || e.Result == nil || e.Result.Drill == nil || !e.Result.Drill.Passed || e.Result.Drill.Snapshot != snap {
		t.Fatalf("the drill ended %+v (%v), want it passed on %s", e, err, snap)
	}
	do("the jobs table shows both succeeded",
		poll(q(`#jobs-body tr[data-job="`+verify+`"][data-status="succeeded"]`)+" && "+q(`#jobs-body tr[data-job="`+drill+`"][data-status="succeeded"]`)))
}
