package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
	"github.com/brr-dev/brr/internal/testkit/chrome"
	"github.com/brr-dev/brr/internal/web"
)

// TestDashboardCancel cancels a running job from the dashboard's jobs table in headless
// Chromium: the Cancel button asks for a confirmation ("Keep" sends nothing), the cancel
// needs the API key (the page asks for it), and once confirmed with the key the job ends
// cancelled and the table shows it, live. The job is a backup of a command source that
// would run for ten minutes.
func TestDashboardCancel(t *testing.T) {
	p := openDashboard(t, "sources:\n  slow: {command: \"sleep 600\"}\n", 1280, 1000)
	c, ctx := p.c, p.ctx
	postJob(t, p.base, p.key, `{"kind":"backup","id":"slow-1","args":{"source_name":"slow"}}`)

	row := `#jobs-body tr[data-job="slow-1"]`
	button := func(action string) string {
		return `#jobs-body button[data-action="` + action + `"][data-job="slow-1"]`
	}

	p.load()
	p.do("the running job has a Cancel button",
		p.poll(q(row+`[data-status="started"]`)+" && "+q(button("cancel"))))

	p.do("Cancel, then Keep",
		p.click(button("cancel")),
		p.poll(q(button("cancel-confirm"))+" && "+q(button("cancel-keep"))),
		p.click(button("cancel-keep")),
		p.poll(q(button("cancel"))))
	if e, err := c.Job(ctx, "slow-1"); err != nil || e.Status != brr.StatusStarted {
		t.Fatalf("after Keep the job is %+v (%v), want still started", e, err)
	}

	// Without the key the cancel is refused and the page asks for the key.
	p.do("confirm without the key",
		p.click(button("cancel")),
		p.poll(q(button("cancel-confirm"))),
		p.click(button("cancel-confirm")),
		p.poll(`!document.querySelector("#key-form").hidden && `+q(button("cancel"))))
	if e, err := c.Job(ctx, "slow-1"); err != nil || e.Status != brr.StatusStarted {
		t.Fatalf("after a cancel without the key the job is %+v (%v), want still started", e, err)
	}

	p.do("enter the key, then cancel and confirm",
		p.enterKey(),
		p.poll(q(button("cancel"))),
		p.click(button("cancel")),
		p.poll(q(button("cancel-confirm"))),
		p.click(button("cancel-confirm")),
		p.poll(q(row+`[data-status="cancelled"]`)+" && !"+q(button("cancel"))))

	e, err := c.Wait(ctx, "slow-1", nil)
	if e == nil || e.Status != brr.StatusCancelled {
		t.Fatalf("job ended %+v (%v), want cancelled", e, err)
	}
	p.shoot("dashboard-cancelled.png", "")
}

// TestDashboardCancelQueued cancels from the dashboard a job that no worker has started.
// The worker runs one job at a time and is busy with a backup of a command source that
// would run for ten minutes, so two backups published after it wait in the queue (or
// in the worker's hands, announced accepted, waiting for its slot): the jobs table shows
// both, neither started, each with a Cancel button. One is cancelled by
// clicking (with the confirmation); the API then lists it as queued with its cancel
// asked. Once the long job is cancelled, the worker takes the queued ones: the cancelled
// one ends cancelled without running (no snapshot of its directory), the other runs.
func TestDashboardCancelQueued(t *testing.T) {
	src, other := t.TempDir(), t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 3, Sizes: []int{4 << 10, 10}})
	testkit.WriteTree(t, other, testkit.Tree{Seed: 4, Sizes: []int{4 << 10, 10}})
	p := openDashboard(t, fmt.Sprintf("concurrency: 1\nsources:\n  slow: {command: \"sleep 600\"}\n  docs: {path: %q}\n  other: {path: %q}\n", src, other), 1280, 1000)
	c, ctx := p.c, p.ctx
	postJob(t, p.base, p.key, `{"kind":"backup","id":"busy","args":{"source_name":"slow"}}`)
	testkit.Eventually(t, time.Minute, "the long job started", func() bool {
		e, err := c.Job(ctx, "busy")
		return err == nil && e.Status == brr.StatusStarted
	})
	postJob(t, p.base, p.key, `{"kind":"backup","id":"waits-cancel","args":{"source_name":"docs"}}`)
	postJob(t, p.base, p.key, `{"kind":"backup","id":"waits-run","args":{"source_name":"other"}}`)

	row := func(id string) string { return `#jobs-body tr[data-job="` + id + `"]` }
	button := func(id, action string) string {
		return `#jobs-body button[data-action="` + action + `"][data-job="` + id + `"]`
	}
	p.load()
	p.do("give the page the key", chromedp.Evaluate[chromedp.Void](`sessionStorage.setItem("brr.apiKey", `+chrome.JSString(p.key)+`)`))
	p.load()
	// Queued, or accepted when the worker pulled it ahead and announced that it waits for
	// its slot while the page was open: either way not started, and cancellable.
	waits := func(id string) string {
		return "(" + q(row(id)+`[data-status="queued"]`) + " || " + q(row(id)+`[data-status="accepted"]`) + ")"
	}
	p.do("both waiting jobs show as queued, with a Cancel button",
		p.poll(waits("waits-cancel")+" && "+waits("waits-run")+
			" && "+q(button("waits-cancel", "cancel"))+" && "+q(row("busy")+`[data-status="started"]`)))
	p.shoot("dashboard-queued.png", "jobs")

	p.do("Cancel the queued job and confirm",
		p.click(button("waits-cancel", "cancel")),
		p.poll(q(button("waits-cancel", "cancel-confirm"))),
		p.click(button("waits-cancel", "cancel-confirm")),
		p.poll(q(row("waits-cancel")+" .cancel-state")+` && /cancel asked|cancelling/.test(`+q(row("waits-cancel")+" .cancel-state")+`.textContent)`))
	p.shoot("dashboard-queued-cancel-asked.png", "jobs")
	waiting := queuedJobs(t, p)
	if len(waiting) != 2 || waiting[0].ID != "waits-cancel" || !waiting[0].CancelRequested || waiting[1].ID != "waits-run" || waiting[1].CancelRequested {
		t.Fatalf("GET /api/v1/queue/jobs: %+v, want waits-cancel (cancel asked) then waits-run", waiting)
	}

	if _, err := c.Cancel(ctx, "busy"); err != nil {
		t.Fatal(err)
	}
	e, err := c.Wait(ctx, "waits-cancel", nil)
	if e == nil || e.Status != brr.StatusCancelled {
		t.Fatalf("the queued job ended %+v (%v), want cancelled", e, err)
	}
	if snaps, err := c.Snapshots(ctx, "", src); err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots of %s: %+v (%v): the cancelled job must not have run", src, snaps, err)
	}
	if e, err := c.Wait(ctx, "waits-run", nil); err != nil || e.Status != brr.StatusSucceeded {
		t.Fatalf("the other queued job ended %+v (%v), want succeeded", e, err)
	}
	p.do("the table shows the cancel and the run",
		p.poll(q(row("waits-cancel")+`[data-status="cancelled"]`)+" && "+q(row("waits-run")+`[data-status="succeeded"]`)+
			" && !"+q(`#jobs-body tr[data-status="queued"]`)))
	if waiting := queuedJobs(t, p); len(waiting) != 0 {
		t.Fatalf("GET /api/v1/queue/jobs after the queue ran: %+v, want none", waiting)
	}
	p.shoot("dashboard-queued-ended.png", "jobs")
}

// queuedJobs reads GET /api/v1/queue/jobs, without pings.
func queuedJobs(t *testing.T, p *dashPage) []web.QueuedJob {
	t.Helper()
	res, err := http.Get(p.base + "/api/v1/queue/jobs?quiet=true") // not the health canary's pings
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	var list web.QueuedList
	if res.StatusCode != http.StatusOK || json.Unmarshal(data, &list) != nil {
		t.Fatalf("GET /api/v1/queue/jobs: %d %s", res.StatusCode, data)
	}
	return list.Jobs
}
