package web

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/brr-dev/brr/internal/testkit"
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

	ctx := testkit.Context(t, 2*time.Minute)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.WindowSize(1280, 1000),
	)...)
	tab, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	var (
		mu       sync.Mutex
		problems []string
	)
	messages := chromedp.Console(tab)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s:%d %s", m.URL, m.Line+1, m.Text))
				mu.Unlock()
			}
		}
	}()
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tab, actions...); err != nil {
			page, _ := chromedp.Run(context.WithoutCancel(tab), chromedp.Evaluate[string](
				`document.querySelector("#browse").innerText + "\nbanner: " + document.querySelector("#banner").innerText`))
			t.Fatalf("%s: %v\npage:\n%s", what, err, page)
		}
	}
	poll := func(cond string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))
	}
	names := `[...document.querySelectorAll("#browse-body tr[data-name]")].map(tr => tr.dataset.name).join(" ")`

	do("load the dashboard", chromedp.Navigate(f.url+"/"))
	do("the panel shows the newest snapshot's root",
		poll(`document.querySelector("#browse-snap").value === `+jsString(second)),
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
		poll(`document.querySelector("#diff-a").value === `+jsString(first)),
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

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(problems, "\n"))
	}
}
