package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
	"github.com/brr-dev/brr/internal/testkit/chrome"
)

// TestDashboardDeadLetters retries and discards dead letters from the dashboard's Dead
// letters panel in headless Chromium. Two backups of a directory that is not there fail
// for good and land in the dead letters; the directory is then made. Retry asks for a
// confirmation ("No" sends nothing), needs the API key (the page asks for it), and once
// confirmed with the key the job runs again and succeeds, and leaves the dead letters.
// Discard, confirmed, removes the other one without running it. Each effect is read
// through the API; a screenshot of each screen is kept as a test artifact.
func TestDashboardDeadLetters(t *testing.T) {
	browser := testkit.FindChromium(t)
	const key = "e2e-dashdlq-key-0123456789abcdef"
	keyFile := writeAPIKey(t, key)
	w := bins.StartWorker(t, testkit.WorkerOptions{Config: fmt.Sprintf("http:\n  api_key_file: %s\n", keyFile)})
	_, c := testkit.Connect(t, w.NATSURL)
	ctx := testkit.Context(t, 4*time.Minute)
	base := "http://" + w.HTTP

	src := filepath.Join(t.TempDir(), "later")
	postJob(t, base, key, fmt.Sprintf(`{"kind":"backup","id":"dead-retry","args":{"path":%q}}`, src))
	postJob(t, base, key, fmt.Sprintf(`{"kind":"backup","id":"dead-discard","args":{"path":%q}}`, src+"-never"))
	for _, id := range []string{"dead-retry", "dead-discard"} {
		if e, err := c.Wait(ctx, id, nil); e == nil || e.Status == brr.StatusSucceeded {
			t.Fatalf("job %s ended %+v (%v), want it failed", id, e, err)
		}
	}
	testkit.Eventually(t, time.Minute, "both jobs in the dead letters", func() bool {
		return len(deadLetters(t, base, key)) == 2
	})
	testkit.WriteTree(t, src, testkit.Tree{Seed: 5, Sizes: []int{4 << 10, 10}})

	tab := newTab(t, browser, w, 1280, 1000)
	do, poll := tab.Do, tab.Poll
	q := func(css string) string { return "document.querySelector(" + chrome.JSString(css) + ")" }
	button := func(job, action string) string {
		return `#dlq-body tr[data-dead="` + job + `"] button[data-dlq="` + action + `"]`
	}
	click := func(css string) chromedp.Action[chromedp.Void] {
		return poll(q(css) + " && (" + q(css) + ".click(), true)")
	}
	shoot := func(name string) {
		t.Helper()
		shot, err := chromedp.Run(tab, chromedp.Screenshot(chromedp.ID("dlq")))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		path := filepath.Join(testkit.ArtifactDir(t), name)
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}

	do("load the dashboard", chromedp.Navigate(base+"/"))
	do("the panel lists both dead letters",
		poll(q(button("dead-retry", "retry"))+" && "+q(button("dead-discard", "discard"))))
	shoot("dashboard-dlq-listed.png")

	do("Retry, then No",
		click(button("dead-retry", "retry")),
		poll(q(button("dead-retry", "retry-confirm"))+" && "+q(button("dead-retry", "keep"))))
	shoot("dashboard-dlq-confirm-retry.png")
	do("No", click(button("dead-retry", "keep")), poll(q(button("dead-retry", "retry"))))
	if n := len(deadLetters(t, base, key)); n != 2 {
		t.Fatalf("after No there are %d dead letters, want 2", n)
	}

	do("confirm without the key: the page asks for it",
		click(button("dead-retry", "retry")),
		click(button("dead-retry", "retry-confirm")),
		poll(`!document.querySelector("#key-form").hidden && `+q(button("dead-retry", "retry"))))
	if n := len(deadLetters(t, base, key)); n != 2 {
		t.Fatalf("after a retry without the key there are %d dead letters, want 2", n)
	}

	do("enter the key, then Retry and confirm",
		chromedp.SendKeys(chromedp.ID("key-input"), key),
		chromedp.Click(chromedp.CSS("#key-form button")),
		poll(`document.querySelector("#key-form").hidden`),
		click(button("dead-retry", "retry")),
		click(button("dead-retry", "retry-confirm")))
	testkit.Eventually(t, 2*time.Minute, "the retried job succeeded", func() bool {
		e, err := c.Job(ctx, "dead-retry")
		return err == nil && e.Status == brr.StatusSucceeded
	})
	if dead := deadLetters(t, base, key); len(dead) != 1 || dead[0].JobID != "dead-discard" {
		t.Fatalf("after the retry the dead letters are %+v, want only dead-discard", dead)
	}
	if snaps, err := c.Snapshots(ctx, "", src); err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots of %s after the retry: %v (%v), want one", src, snaps, err)
	}
	do("the panel drops the retried one", poll("!"+q(`#dlq-body tr[data-dead="dead-retry"]`)))
	do("the jobs table shows it succeeded", poll(q(`#jobs-body tr[data-job="dead-retry"][data-status="succeeded"]`)))

	do("Discard and confirm",
		click(button("dead-discard", "discard")),
		poll(q(button("dead-discard", "discard-confirm"))))
	shoot("dashboard-dlq-confirm-discard.png")
	do("confirm the discard",
		click(button("dead-discard", "discard-confirm")),
		poll("!"+q(`#dlq-body tr[data-dead]`)+" && "+q("#dlq-body")+`.textContent.includes("no dead letters")`))
	if dead := deadLetters(t, base, key); len(dead) != 0 {
		t.Fatalf("after the discard the dead letters are %+v, want none", dead)
	}
	if e, err := c.Job(ctx, "dead-discard"); err != nil || e.Status == brr.StatusSucceeded {
		t.Fatalf("the discarded job is %+v (%v): it must not have run again", e, err)
	}
	shoot("dashboard-dlq-empty.png")
}

// deadLetters reads GET /api/v1/dlq.
func deadLetters(t *testing.T, base, key string) []brr.DeadLetterEntry {
	t.Helper()
	req, err := http.NewRequest("GET", base+"/api/v1/dlq", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	var list struct {
		DeadLetters []brr.DeadLetterEntry `json:"dead_letters"`
	}
	if res.StatusCode != http.StatusOK || json.Unmarshal(data, &list) != nil {
		t.Fatalf("GET /api/v1/dlq: %d %s", res.StatusCode, data)
	}
	return list.DeadLetters
}
