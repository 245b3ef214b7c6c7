package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestDashboardDeadLetters retries, discards and purges dead letters from the dashboard's
// Dead letters panel in headless Chromium. Four backups of a directory that is not there
// fail for good and land in the dead letters; the directory of the first is then made.
// Retry asks for a confirmation ("No" sends nothing), needs the API key (the page asks
// for it), and once confirmed with the key the job runs again and succeeds, and leaves
// the dead letters. Discard, confirmed, removes one without running it. Purge of those
// older than 7 days removes none of these fresh ones; Purge of all, after a "No" that
// keeps them, empties the dead letters. Each effect is read through the API; a
// screenshot of each screen is kept as a test artifact.
func TestDashboardDeadLetters(t *testing.T) {
	p := openDashboard(t, "", 1280, 1000)
	c, ctx, base, key := p.c, p.ctx, p.base, p.key

	src := filepath.Join(t.TempDir(), "later")
	dead := []string{"dead-retry", "dead-discard", "dead-purge-1", "dead-purge-2"}
	for i, id := range dead {
		path := src
		if i > 0 {
			path = fmt.Sprintf("%s-never-%d", src, i)
		}
		postJob(t, base, key, fmt.Sprintf(`{"kind":"backup","id":%q,"args":{"path":%q}}`, id, path))
	}
	for _, id := range dead {
		if e, err := c.Wait(ctx, id, nil); e == nil || e.Status == brr.StatusSucceeded {
			t.Fatalf("job %s ended %+v (%v), want it failed", id, e, err)
		}
	}
	testkit.Eventually(t, time.Minute, "the jobs in the dead letters", func() bool {
		return len(deadLetters(t, base, key)) == len(dead)
	})
	testkit.WriteTree(t, src, testkit.Tree{Seed: 5, Sizes: []int{4 << 10, 10}})

	button := func(job, action string) string {
		return `#dlq-body tr[data-dead="` + job + `"] button[data-dlq="` + action + `"]`
	}
	p.load()
	p.do("the panel lists the dead letters",
		p.poll(q(button("dead-retry", "retry"))+" && "+q(button("dead-discard", "discard"))))
	p.shoot("dashboard-dlq-listed.png", "dlq")

	p.do("Retry, then No",
		p.click(button("dead-retry", "retry")),
		p.poll(q(button("dead-retry", "retry-confirm"))+" && "+q(button("dead-retry", "keep"))))
	p.shoot("dashboard-dlq-confirm-retry.png", "dlq")
	p.do("No", p.click(button("dead-retry", "keep")), p.poll(q(button("dead-retry", "retry"))))
	if n := len(deadLetters(t, base, key)); n != len(dead) {
		t.Fatalf("after No there are %d dead letters, want %d", n, len(dead))
	}

	p.do("confirm without the key: the page asks for it",
		p.click(button("dead-retry", "retry")),
		p.click(button("dead-retry", "retry-confirm")),
		p.poll(`!document.querySelector("#key-form").hidden && `+q(button("dead-retry", "retry"))))
	if n := len(deadLetters(t, base, key)); n != len(dead) {
		t.Fatalf("after a retry without the key there are %d dead letters, want %d", n, len(dead))
	}

	p.do("enter the key, then Retry and confirm",
		p.enterKey(),
		p.click(button("dead-retry", "retry")),
		p.click(button("dead-retry", "retry-confirm")))
	testkit.Eventually(t, 2*time.Minute, "the retried job succeeded", func() bool {
		e, err := c.Job(ctx, "dead-retry")
		return err == nil && e.Status == brr.StatusSucceeded
	})
	if left := deadIDs(t, p); !slices.Equal(left, dead[1:]) {
		t.Fatalf("after the retry the dead letters are %v, want %v", left, dead[1:])
	}
	if snaps, err := c.Snapshots(ctx, "", src); err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots of %s after the retry: %v (%v), want one", src, snaps, err)
	}
	p.do("the panel drops the retried one", p.poll("!"+q(`#dlq-body tr[data-dead="dead-retry"]`)))
	p.do("the jobs table shows it succeeded", p.poll(q(`#jobs-body tr[data-job="dead-retry"][data-status="succeeded"]`)))

	p.do("Discard and confirm",
		p.click(button("dead-discard", "discard")),
		p.poll(q(button("dead-discard", "discard-confirm"))))
	p.shoot("dashboard-dlq-confirm-discard.png", "dlq")
	p.do("confirm the discard",
		p.click(button("dead-discard", "discard-confirm")),
		p.poll("!"+q(`#dlq-body tr[data-dead="dead-discard"]`)))
	if left := deadIDs(t, p); !slices.Equal(left, dead[2:]) {
		t.Fatalf("after the discard the dead letters are %v, want %v", left, dead[2:])
	}
	if e, err := c.Job(ctx, "dead-discard"); err != nil || e.Status == brr.StatusSucceeded {
		t.Fatalf("the discarded job is %+v (%v): it must not have run again", e, err)
	}

	// Purge those older than 7 days: these are minutes old, so none goes.
	p.do("Purge… older than 7 days, and Yes",
		p.choose("dlq-purge-before", "7d"),
		p.click("#dlq-purge"),
		p.poll("!"+q("#dlq-purge-confirm")+".hidden && "+q("#dlq-purge-what")+`.textContent.includes("older than 7 days (0 listed)")`),
		p.click("#dlq-purge-yes"),
		p.poll(q("#dlq-purge-result")+`.textContent === "Purged 0 dead letters."`))
	if left := deadIDs(t, p); !slices.Equal(left, dead[2:]) {
		t.Fatalf("after a purge of those older than 7 days the dead letters are %v, want %v", left, dead[2:])
	}
	p.do("Purge… all, then No",
		p.choose("dlq-purge-before", ""),
		p.click("#dlq-purge"),
		p.poll("!"+q("#dlq-purge-confirm")+".hidden && "+q("#dlq-purge-what")+`.textContent.includes("every dead letter (2 listed)")`))
	p.shoot("dashboard-dlq-confirm-purge.png", "dlq")
	p.do("No", p.click("#dlq-purge-no"), p.poll(q("#dlq-purge-confirm")+".hidden"))
	if left := deadIDs(t, p); !slices.Equal(left, dead[2:]) {
		t.Fatalf("after No the dead letters are %v, want %v", left, dead[2:])
	}
	p.do("Purge… all, and Yes",
		p.click("#dlq-purge"),
		p.poll("!"+q("#dlq-purge-confirm")+".hidden"),
		p.click("#dlq-purge-yes"),
		p.poll(q("#dlq-purge-result")+`.textContent === "Purged 2 dead letters."`),
		p.poll("!"+q(`#dlq-body tr[data-dead]`)+" && "+q("#dlq-body")+`.textContent.includes("no dead letters")`))
	if left := deadIDs(t, p); len(left) != 0 {
		t.Fatalf("after the purge the dead letters are %v, want none", left)
	}
	for _, id := range dead[2:] {
		if e, err := c.Job(ctx, id); err != nil || e.Status == brr.StatusSucceeded {
			t.Fatalf("the purged job %s is %+v (%v): it must not have run again", id, e, err)
		}
	}
	p.shoot("dashboard-dlq-empty.png", "dlq")
}

// deadIDs are the job ids of the dead letters, through the API, sorted (the jobs fail
// in any order).
func deadIDs(t *testing.T, p *dashPage) []string {
	t.Helper()
	var ids []string
	for _, e := range deadLetters(t, p.base, p.key) {
		ids = append(ids, e.JobID)
	}
	slices.Sort(ids)
	return ids
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
