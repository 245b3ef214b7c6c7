package web

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
	"github.com/brr-dev/brr/internal/testkit/chrome"
)

// TestDashboardRepos loads the dashboard in headless Chromium and reads its Repositories
// panel: a repo the worker registered, with its id, its replica and the workers serving
// it; and one added at runtime and not created yet, whose refusal by this worker shows
// as a warning. The refusal's message carries HTML, which must come out as text: no
// element is made of it and no script of it runs. A screenshot of the panel is saved
// with the other test artifacts.
func TestDashboardRepos(t *testing.T) {
	browser := testkit.FindChromium(t)
	const evil = `<img src=x onerror="window.__pwned=1"><b>bold</b>`
	why := "repo offsite: " + evil + " BRR_OFFSITE_PASSWORD is not set on this worker"
	f := setup(t, func(c *Config) {
		c.Refused = func() []brr.RefusedRepo { return []brr.RefusedRepo{unavailable(why)} }
	})
	f.addOffsite()
	f.beat("w-test", []string{"local"}, unavailable(why))
	f.beat("w-other", []string{"local", "offsite"})

	tab := chrome.Open(t, chrome.Options{Browser: browser, Width: 1280, Height: 1000,
		Page: `document.querySelector("#repos").innerText + "\nbanner: " + document.querySelector("#banner").innerText`})
	do, poll := tab.Do, tab.Poll
	text := func(css string) string {
		t.Helper()
		s, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector(`+chrome.JSString(css)+`).innerText`))
		if err != nil {
			t.Fatalf("text of %s: %v", css, err)
		}
		return s
	}

	do("load the dashboard", chromedp.Navigate(f.url+"/"))
	do("the panel shows both repos, served as the heartbeats say",
		poll(`document.querySelector('#repos-body tr[data-repo="local"]') && document.querySelector('#repos-body tr[data-repo="offsite"]')`),
		poll(`document.querySelector('#repos-body tr[data-repo="local"]').innerText.includes("w-other, w-test")`))

	local := text(`#repos-body tr[data-repo="local"]`)
	for _, want := range []string{"local", "file://", f.repoID[:12], "offsite", "w-other, w-test", "none"} {
		if !strings.Contains(local, want) {
			t.Errorf("the row of local lacks %q: %q", want, local)
		}
	}
	offsite := text(`#repos-body tr[data-repo="offsite"]`)
	for _, want := range []string{"s3://s3.example.com/backups/brr", "not created yet", "yes", "w-other"} {
		if !strings.Contains(offsite, want) {
			t.Errorf("the row of offsite lacks %q: %q", want, offsite)
		}
	}
	refusal := text(`#repos-body tr[data-repo="offsite"] .refusal[data-worker="w-test"]`)
	if want := "w-test: " + why; refusal != want {
		t.Errorf("the refusal reads %q, want the message as text: %q", refusal, want)
	}
	if n, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.querySelectorAll("#repos img, #repos b").length`)); err != nil || n != 0 {
		t.Errorf("the panel has %d elements made of the message's HTML (%v), want none", n, err)
	}
	if pwned, err := chromedp.Run(tab, chromedp.Evaluate[bool](`window.__pwned === 1`)); err != nil || pwned {
		t.Errorf("the message's script ran: %v %v", pwned, err)
	}
	if warned, err := chromedp.Run(tab, chromedp.Evaluate[bool](
		`getComputedStyle(document.querySelector('#repos-body .refusal')).backgroundColor !== getComputedStyle(document.querySelector('#repos')).backgroundColor`)); err != nil || !warned {
		t.Errorf("the refusal is not highlighted (%v)", err)
	}

	shot, err := chromedp.Run(tab, chromedp.Screenshot(chromedp.ID("repos")))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(testkit.ArtifactDir(t), "dashboard-repos.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("repositories panel: %s", path)

	tab.CheckConsole()
}
