package web

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/brr-dev/brr/internal/testkit"
	"github.com/brr-dev/brr/internal/testkit/chrome"
)

// TestDashboardBrowse loads the dashboard in headless Chromium with two snapshots: the
// Browse panel shows the newest one's root, goes into a directory and back, offers each
// file for download (the page fetches one and gets its bytes) and diffs the two
// snapshots. Screenshots of the panel, wide and on a phone, are saved as test artifacts.
func TestDashboardBrowse(t *testing.T) {
	browser := testkit.FindChromium(t)
	src := newSource(t)
	testkit.WriteFile(t, filepath.Join(src, "sub", "inner.txt"), []byte("inside\n"), 0o644)
	f := setupIn(t, src, nil)
	first := f.backup("dash-browse-1").Result.Backup.Snapshot
	testkit.WriteFile(t, filepath.Join(src, "fb"), []byte("changed"), 0o600)
	testkit.WriteFile(t, filepath.Join(src, "sub", "new.txt"), []byte("new\n"), 0o644)
	second := f.backup("dash-browse-2").Result.Backup.Snapshot

	tab := chrome.Open(t, chrome.Options{Browser: browser, Width: 1280, Height: 1000,
		Page: `document.querySelector("#browse").innerText + "\nbanner: " + document.querySelector("#banner").innerText`})
	do, poll := tab.Do, tab.Poll
	names := `[...document.querySelectorAll("#browse-body tr[data-name]")].map(tr => tr.dataset.name).join(" ")`

	do("load the dashboard", chromedp.Navigate(f.url+"/"))
	do("the panel shows the newest snapshot's root",
		poll(`document.querySelector("#browse-snap").value === `+chrome.JSString(second)),
		poll(names+` === "fa fb fc sub"`))
	do("open the directory", chromedp.Click(chromedp.CSS(`#browse-body tr[data-name="sub"] button`)),
		poll(names+` === "inner.txt new.txt"`),
		poll(`document.querySelector("#browse-path").innerText.includes("sub")`))
	do("back to the root", chromedp.Click(chromedp.CSS(`#browse-path button[data-path="/"]`)), poll(names+` === "fa fb fc sub"`))

	// The download link of fb answers its bytes, and of a directory a tar stream.
	got, err := chromedp.Run(tab, chromedp.Evaluate[string](
		`fetch(document.querySelector('#browse-body tr[data-name="fb"] a.download').href).then(r => r.text())`, chromedp.EvalAsValue, chromedp.EvalAwaitPromise))
	if err != nil || got != "changed" {
		t.Errorf("the download link of fb answered %q (%v), want %q", got, err, "changed")
	}
	tarType, err := chromedp.Run(tab, chromedp.Evaluate[string](
		`fetch(document.querySelector('#browse-body tr[data-name="sub"] a.download').href).then(r => r.headers.get("Content-Type"))`, chromedp.EvalAsValue, chromedp.EvalAwaitPromise))
	if err != nil || tarType != "application/x-tar" {
		t.Errorf("the download link of sub answered %q (%v), want a tar", tarType, err)
	}

	// The diff: the older snapshot against the newer, as the selects default to.
	changes := `[...document.querySelectorAll("#diff-body tr[data-change]")].map(tr => tr.dataset.change + " " + tr.dataset.path).join(", ")`
	do("diff the two snapshots",
		poll(`document.querySelector("#diff-a").value === `+chrome.JSString(first)),
		chromedp.Click(chromedp.CSS("#diff-button")),
		poll(`document.querySelectorAll("#diff-body tr[data-change]").length > 0`))
	diff, err := chromedp.Run(tab, chromedp.Evaluate[string](changes))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"modified /fb", "added /sub/new.txt"} {
		if !strings.Contains(diff, want) {
			t.Errorf("the diff shows %q, without %q", diff, want)
		}
	}

	dir := testkit.ArtifactDir(t)
	shot, err := chromedp.Run(tab, chromedp.Screenshot(chromedp.ID("browse")))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(dir, "dashboard-browse.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("browse panel: %s", path)

	do("emulate a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		poll("window.innerWidth === 390"))
	overflow, err := chromedp.Run(tab, chromedp.Evaluate[int]("document.documentElement.scrollWidth - window.innerWidth"))
	if err != nil || overflow > 0 {
		t.Errorf("on a 390 px wide phone the page is %d px too wide (%v)", overflow, err)
	}
	if shot, err = chromedp.Run(tab, chromedp.Screenshot(chromedp.ID("browse"))); err == nil {
		path = filepath.Join(dir, "dashboard-browse-phone.png")
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("browse panel on a phone: %s", path)
	}

	tab.CheckConsole()
}
