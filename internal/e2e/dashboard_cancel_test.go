package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
	"github.com/brr-dev/brr/internal/testkit/chrome"
)

// TestDashboardCancel cancels a running job from the dashboard's jobs table in headless
// Chromium: the Cancel button asks for a confirmation ("Keep" sends nothing), the cancel
// needs the API key (the page asks for it), and once confirmed with the key the job ends
// cancelled and the table shows it, live. The job is a backup of a command source that
// would run for ten minutes.
func TestDashboardCancel(t *testing.T) {
	browser := testkit.FindChromium(t)
	const key = "e2e-dashcancel-key-0123456789abcdef"
	keyFile := writeAPIKey(t, key)
	w := bins.StartWorker(t, testkit.WorkerOptions{Config: fmt.Sprintf(
		"http:\n  api_key_file: %s\nsources:\n  slow: {command: \"sleep 600\"}\n", keyFile)})
	_, c := testkit.Connect(t, w.NATSURL)
	ctx := testkit.Context(t, 3*time.Minute)
	base := "http://" + w.HTTP

	postJob(t, base, key, `{"kind":"backup","id":"slow-1","args":{"source_name":"slow"}}`)

	tab := newTab(t, browser, w, 1280, 1000)
	do, poll := tab.Do, tab.Poll
	row := `#jobs-body tr[data-job="slow-1"]`
	button := func(action string) string {
		return `#jobs-body button[data-action="` + action + `"][data-job="slow-1"]`
	}
	q := func(css string) string { return "document.querySelector(" + chrome.JSString(css) + ")" }
	// click clicks the element css selects once it is there, in one step: the table is
	// drawn again with every event, so a node found in one step may be gone in the next.
	click := func(css string) chromedp.Action[chromedp.Void] {
		return poll(q(css) + " && (" + q(css) + ".click(), true)")
	}

	do("load the dashboard", chromedp.Navigate(base+"/"))
	do("the running job has a Cancel button",
		poll(q(row+`[data-status="started"]`)+" && "+q(button("cancel"))))

	do("Cancel, then Keep",
		click(button("cancel")),
		poll(q(button("cancel-confirm"))+" && "+q(button("cancel-keep"))),
		click(button("cancel-keep")),
		poll(q(button("cancel"))))
	if e, err := c.Job(ctx, "slow-1"); err != nil || e.Status != brr.StatusStarted {
		t.Fatalf("after Keep the job is %+v (%v), want still started", e, err)
	}

	// Without the key the cancel is refused and the page asks for the key.
	do("confirm without the key",
		click(button("cancel")),
		poll(q(button("cancel-confirm"))),
		click(button("cancel-confirm")),
		poll(`!document.querySelector("#key-form").hidden && `+q(button("cancel"))))
	if e, err := c.Job(ctx, "slow-1"); err != nil || e.Status != brr.StatusStarted {
		t.Fatalf("after a cancel without the key the job is %+v (%v), want still started", e, err)
	}

	do("enter the key, then cancel and confirm",
		chromedp.SendKeys(chromedp.ID("key-input"), key),
		chromedp.Click(chromedp.CSS("#key-form button")),
		poll(`document.querySelector("#key-form").hidden && `+q(button("cancel"))),
		click(button("cancel")),
		poll(q(button("cancel-confirm"))),
		click(button("cancel-confirm")),
		poll(q(row+`[data-status="cancelled"]`)+" && !"+q(button("cancel"))))

	e, err := c.Wait(ctx, "slow-1", nil)
	if e == nil || e.Status != brr.StatusCancelled {
		t.Fatalf("job ended %+v (%v), want cancelled", e, err)
	}
	shot, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(testkit.ArtifactDir(t), "dashboard-cancelled.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
