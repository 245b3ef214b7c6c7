package web

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
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
				`document.querySelector("#repos").innerText + "\nbanner: " + document.querySelector("#banner").innerText`))
			t.Fatalf("%s: %v\npage:\n%s", what, err, page)
		}
	}
	poll := func(cond string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))
	}
	text := func(css string) string {
		t.Helper()
		s, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector(`+jsString(css)+`).innerText`))
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

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(problems, "\n"))
	}
}

// jsString quotes s for JavaScript.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
