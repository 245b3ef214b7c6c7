package e2e_test

import (
	"context"
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

// dashPage is a real brr-worker with an API key and a headless Chromium tab on its
// dashboard, for the tests that act by clicking. Everything ends with the test.
type dashPage struct {
	t   *testing.T
	w   *testkit.Worker
	c   *brr.Client
	ctx context.Context
	// base is the worker's HTTP address as a URL; key is its API key.
	base, key string
	tab       *chrome.Tab
}

// openDashboard starts a worker whose config is an http block with an API key file
// followed by config, connects a client, and opens a tab of width×height; the page is
// not loaded yet (load does it).
func openDashboard(t *testing.T, config string, width, height int) *dashPage {
	t.Helper()
	browser := testkit.FindChromium(t)
	const key = "e2e-dashboard-key-0123456789abcdef"
	keyFile := writeAPIKey(t, key)
	w := bins.StartWorker(t, testkit.WorkerOptions{Config: fmt.Sprintf("http:\n  api_key_file: %s\n%s", keyFile, config)})
	_, c := testkit.Connect(t, w.NATSURL)
	return &dashPage{t: t, w: w, c: c, ctx: testkit.Context(t, 5*time.Minute),
		base: "http://" + w.HTTP, key: key, tab: newTab(t, browser, w, width, height)}
}

// do runs actions in the tab, failing the test with what the page shows.
func (p *dashPage) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	p.tab.Do(what, actions...)
}

// poll waits for the JavaScript condition cond.
func (p *dashPage) poll(cond string) chromedp.Action[chromedp.Void] { return p.tab.Poll(cond) }

// load opens the dashboard.
func (p *dashPage) load() { p.t.Helper(); p.do("load the dashboard", chromedp.Navigate(p.base+"/")) }

// q is a querySelector call for css, in JavaScript.
func q(css string) string { return "document.querySelector(" + chrome.JSString(css) + ")" }

// click clicks what css selects once it is there, in one step: the tables are drawn
// again with every event, so a node found in one step may be gone in the next.
func (p *dashPage) click(css string) chromedp.Action[chromedp.Void] {
	return p.poll(q(css) + " && (" + q(css) + ".click(), true)")
}

// eval returns the string value of the JavaScript expression js.
func (p *dashPage) eval(js string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.tab, chromedp.Evaluate[string](js))
	if err != nil {
		p.t.Fatalf("%s: %v", js, err)
	}
	return s
}

// text is the textContent of what css selects.
func (p *dashPage) text(css string) string { p.t.Helper(); return p.eval(q(css) + ".textContent") }

// choose picks value in the select of id, as a user does (the page hears "change"),
// once the select offers it.
func (p *dashPage) choose(id, value string) chromedp.Action[chromedp.Void] {
	sel := "document.getElementById(" + chrome.JSString(id) + ")"
	v := chrome.JSString(value)
	return p.poll(sel + " && [..." + sel + ".options].some(o => o.value === " + v + ") && (" +
		sel + ".value = " + v + ", " + sel + `.dispatchEvent(new Event("change")), true)`)
}

// enterKey types the API key into the key form, which the page shows when a request
// was refused without it, and waits for the form to go.
func (p *dashPage) enterKey() chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.SendKeys(chromedp.ID("key-input"), p.key),
		chromedp.Click(chromedp.CSS("#key-form button")),
		p.poll(`document.querySelector("#key-form").hidden`))
}

// askedForKey waits for the page to show the key form.
func (p *dashPage) askedForKey() chromedp.Action[chromedp.Void] {
	return p.poll(`!document.querySelector("#key-form").hidden`)
}

// shoot keeps a screenshot as a test artifact: of the element of id section, or of the
// whole page when section is empty.
func (p *dashPage) shoot(name, section string) {
	p.t.Helper()
	var (
		shot []byte
		err  error
	)
	if section == "" {
		shot, err = chromedp.Run(p.tab, chromedp.FullScreenshot(100))
	} else {
		shot, err = chromedp.Run(p.tab, chromedp.Screenshot(chromedp.ID(section)))
	}
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(testkit.ArtifactDir(p.t), name)
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
}
