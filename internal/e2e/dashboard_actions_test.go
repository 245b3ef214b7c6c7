package e2e_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestDashboardActions queues jobs from the dashboard's Actions panel in headless
// Chromium, by clicking, on a worker with two repos (local and offsite): a backup of a
// named source, a checkpoint of the snapshot it made, a verify of the repo, a restore
// drill, a replication of the snapshot from local to offsite, then a drill and a
// checkpoint of the copy, picked from offsite's snapshots. Each shows what it will send
// and waits for "Yes"; "No" sends nothing; without the API key nothing is queued and the
// page asks for it; a replication from a repo to itself is refused before it is asked.
// Each effect is read through the API (the job succeeded; the snapshot, its copy in
// offsite and the recovery points exist) and the new job shows in the jobs table. A
// screenshot of each screen is kept as a test artifact.
func TestDashboardActions(t *testing.T) {
	dir := t.TempDir()
	writeKeys(t, dir, "local", "offsite")
	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 9, Sizes: []int{16 << 10, 100, 0}})
	p := openDashboard(t, fmt.Sprintf(`repos:
  local:   {url: "file://%[1]s/local", key_file: %[1]s/local.key}
  offsite: {url: "file://%[1]s/offsite", key_file: %[1]s/offsite.key}
sources:
  docs: {path: %[2]q}
`, dir, src), 1280, 1200)
	c, ctx := p.c, p.ctx
	confirming := func(kind string) chromedp.Action[chromedp.Void] {
		return p.poll("!" + q("#act-confirm") + ".hidden && " + q("#act-json") + `.textContent.includes('"kind": "` + kind + `"')`)
	}
	// queued waits for the panel to say which job it queued and returns its id.
	queued := func(what string) string {
		t.Helper()
		p.do(what, p.poll(q("#act-result[data-job]")+" && "+q("#act-confirm")+".hidden"))
		said := p.text("#act-result")
		id := p.eval(q("#act-result") + ".dataset.job")
		if id == "" || !strings.Contains(said, id) {
			t.Fatalf("the panel says %q of job %q", said, id)
		}
		return id
	}
	succeeded := func(ids ...string) chromedp.Action[chromedp.Void] {
		var conds []string
		for _, id := range ids {
			conds = append(conds, q(`#jobs-body tr[data-job="`+id+`"][data-status="succeeded"]`))
		}
		return p.poll(strings.Join(conds, " && "))
	}

	p.load()
	p.do("the named source and both repos are offered",
		p.poll(q(`#act-backup-source option[value="docs"]`)+" && "+q(`#act-replicate-to option[value="offsite"]`)))
	p.shoot("dashboard-actions.png", "actions")

	p.do("Back up…, then No", p.click("#act-backup button[type=submit]"), confirming("backup"))
	if got := p.text("#act-json"); !strings.Contains(got, `"source_name": "docs"`) {
		t.Fatalf("the confirmation shows %q, want the backup of docs", got)
	}
	p.shoot("dashboard-actions-confirm-backup.png", "actions")
	p.do("No", p.click("#act-no"), p.poll(q("#act-confirm")+".hidden"))

	p.do("Back up…, Yes without the key: the page asks for it",
		p.click("#act-backup button[type=submit]"), confirming("backup"),
		p.click("#act-yes"),
		p.poll(`!document.querySelector("#key-form").hidden && !`+q("#act-confirm")+".hidden"))
	jobs, err := c.Jobs(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Kind != brr.KindPing {
			t.Fatalf("after No and a Yes without the key the pool has job %+v, want none", j)
		}
	}

	p.do("enter the key and confirm again", p.enterKey(), p.click("#act-yes"))
	backup := queued("the backup is queued")
	e, err := c.Wait(ctx, backup, nil)
	if err != nil || e.Kind != brr.KindBackup || e.Result == nil || e.Result.Backup == nil {
		t.Fatalf("the backup ended %+v (%v), want it succeeded", e, err)
	}
	snap := e.Result.Backup.Snapshot
	snaps, err := c.Snapshots(ctx, "local", src)
	if err != nil || len(snaps) != 1 || snaps[0].ID != snap {
		t.Fatalf("snapshots of %s: %+v (%v), want the one the backup made, %s", src, snaps, err, snap)
	}
	p.do("the jobs table shows the backup succeeded", succeeded(backup))
	p.shoot("dashboard-actions-backup-queued.png", "actions")

	p.do("the new snapshot is offered for a checkpoint",
		p.choose("act-checkpoint-snap", snap),
		chromedp.SendKeys(chromedp.ID("act-checkpoint-label"), "pre-upgrade"),
		p.click("#act-checkpoint button[type=submit]"), confirming("checkpoint"))
	if got := p.text("#act-json"); !strings.Contains(got, `"repo": "local"`) || !strings.Contains(got, `"snapshot": "`+snap+`"`) || !strings.Contains(got, `"label": "pre-upgrade"`) {
		t.Fatalf("the confirmation shows %q, want a checkpoint pre-upgrade of %s in local", got, snap)
	}
	p.shoot("dashboard-actions-confirm-checkpoint.png", "actions")
	p.do("Yes", p.click("#act-yes"))
	cp := queued("the checkpoint is queued")
	if e, err := c.Wait(ctx, cp, nil); err != nil || e.Kind != brr.KindCheckpoint {
		t.Fatalf("the checkpoint ended %+v (%v), want it succeeded", e, err)
	}
	hasPoint(t, p, "local", "pre-upgrade", snap)
	p.do("the jobs table shows the checkpoint succeeded", succeeded(cp))

	p.do("Verify… and Yes", p.click("#act-verify button[type=submit]"), confirming("verify"), p.click("#act-yes"))
	verify := queued("the verify is queued")
	if e, err := c.Wait(ctx, verify, nil); err != nil || e.Result == nil || e.Result.Verify == nil || e.Result.Verify.Snapshots != 1 {
		t.Fatalf("the verify ended %+v (%v), want it succeeded over one snapshot", e, err)
	}
	p.do("Drill… of the snapshot and Yes",
		p.choose("act-drill-snap", snap),
		p.click("#act-drill button[type=submit]"), confirming("drill"), p.click("#act-yes"))
	drill := queued("the drill is queued")
	if e, err := c.Wait(ctx, drill, nil); err != nil || e.Result == nil || e.Result.Drill == nil || !e.Result.Drill.Passed || e.Result.Drill.Snapshot != snap || e.Result.Drill.Repo != "local" {
		t.Fatalf("the drill ended %+v (%v), want it passed on %s in local", e, err, snap)
	}
	p.do("the jobs table shows both succeeded", succeeded(verify, drill))

	// Replicate: a repo to itself is refused on the page; local → offsite is queued.
	p.do("Replicate… from local to local",
		p.choose("act-replicate-to", "local"),
		p.click("#act-replicate button[type=submit]"),
		p.poll(q("#act-confirm")+".hidden && "+q("#act-result")+`.textContent.includes("two different repos")`))
	p.do("Replicate… the snapshot from local to offsite",
		p.choose("act-replicate-to", "offsite"),
		p.choose("act-replicate-snap", snap),
		p.click("#act-replicate button[type=submit]"), confirming("replicate"))
	if got := p.text("#act-json"); !strings.Contains(got, `"from": "local"`) || !strings.Contains(got, `"to": "offsite"`) || !strings.Contains(got, `"snapshot": "`+snap+`"`) {
		t.Fatalf("the confirmation shows %q, want %s from local to offsite", got, snap)
	}
	p.shoot("dashboard-actions-confirm-replicate.png", "actions")
	p.do("Yes", p.click("#act-yes"))
	rep := queued("the replication is queued")
	e, err = c.Wait(ctx, rep, nil)
	if err != nil || e.Result == nil || e.Result.Replicate == nil || !slices.Equal(e.Result.Replicate.Snapshots, []string{snap}) || len(e.Result.Replicate.Copied) != 1 {
		t.Fatalf("the replication ended %+v (%v), want %s copied", e, err, snap)
	}
	copied := e.Result.Replicate.Copied[0].ID
	offsite, err := c.Snapshots(ctx, "offsite", "")
	if err != nil || len(offsite) != 1 || offsite[0].ID != copied || offsite[0].Source != src {
		t.Fatalf("snapshots of offsite: %+v (%v), want the copy %s of %s", offsite, err, copied, src)
	}
	p.do("the jobs table shows the replication succeeded", succeeded(rep))
	p.shoot("dashboard-actions-replicated.png", "actions")

	// The repo pickers: offsite's snapshots are offered once offsite is picked.
	p.do("Drill… of the copy in offsite",
		p.choose("act-drill-repo", "offsite"),
		p.choose("act-drill-snap", copied),
		p.click("#act-drill button[type=submit]"), confirming("drill"))
	if got := p.text("#act-json"); !strings.Contains(got, `"repo": "offsite"`) || !strings.Contains(got, `"snapshot": "`+copied+`"`) {
		t.Fatalf("the confirmation shows %q, want a drill of %s in offsite", got, copied)
	}
	p.do("Yes", p.click("#act-yes"))
	drill2 := queued("the drill of the copy is queued")
	if e, err := c.Wait(ctx, drill2, nil); err != nil || e.Result == nil || e.Result.Drill == nil || !e.Result.Drill.Passed || e.Result.Drill.Repo != "offsite" || e.Result.Drill.Snapshot != copied {
		t.Fatalf("the drill of the copy ended %+v (%v), want it passed on %s in offsite", e, err, copied)
	}
	p.do("Checkpoint… of the copy in offsite",
		p.choose("act-checkpoint-repo", "offsite"),
		p.choose("act-checkpoint-snap", copied),
		chromedp.SetValue(chromedp.ID("act-checkpoint-label"), "offsite-copy"),
		p.click("#act-checkpoint button[type=submit]"), confirming("checkpoint"), p.click("#act-yes"))
	cp2 := queued("the checkpoint of the copy is queued")
	if e, err := c.Wait(ctx, cp2, nil); err != nil || e.Kind != brr.KindCheckpoint {
		t.Fatalf("the checkpoint of the copy ended %+v (%v), want it succeeded", e, err)
	}
	hasPoint(t, p, "offsite", "offsite-copy", copied)
	p.do("the jobs table shows both succeeded", succeeded(drill2, cp2))
	p.shoot("dashboard-actions-offsite.png", "actions")
}

// hasPoint fails the test unless repo has the recovery point label on snapshot snap.
func hasPoint(t *testing.T, p *dashPage, repo, label, snap string) {
	t.Helper()
	points, err := p.c.Checkpoints(p.ctx, repo)
	if err != nil || !slices.ContainsFunc(points.Points, func(pt brr.RecoveryPoint) bool {
		return pt.Label == label && pt.Snapshot == snap
	}) {
		t.Fatalf("recovery points of %s: %+v (%v), want %s on %s", repo, points, err, label, snap)
	}
}
