package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"
	"github.com/brr-dev/brr/internal/testkit/chrome"
	"github.com/chromedp/chromedp"
)

// TestDashboard loads the dashboard of a real brr-worker in headless Chromium: the page
// shows the worker, a job posted over the API appears in it as succeeded, and its
// snapshot and its bytes too, all without a reload; the page raises no script error and
// fits a phone's width. Screenshots of both sizes are saved as test artifacts.
func TestDashboard(t *testing.T) {
	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 2, Sizes: []int{200 << 10, 20, 8 << 10, 0, 3}})
	p := openDashboard(t, fmt.Sprintf("health:\n  interval: 1s\n  rpo: {%q: 1h}\n", src), 1280, 1000)
	base, key, tab, do, poll, sel := p.base, p.key, p.tab, p.do, p.poll, q
	workerID := healthzWorker(t, base)
	waitFor := func(what, cond string) {
		t.Helper()
		do(what, poll(cond))
	}

	p.load()
	waitFor("the page shows the worker", sel(`#workers-body tr[data-worker="`+workerID+`"]`))
	waitFor("the live feed connects", sel("#live.on"))
	do("mark the page", chromedp.Evaluate[chromedp.Void]("window.__brrNoReload = 42"))

	id := "dash-" + time.Now().UTC().Format("150405.000000")
	id = strings.ReplaceAll(id, ".", "-")
	postJob(t, base, key, fmt.Sprintf(`{"kind":"backup","id":%q,"args":{"path":%q}}`, id, src))

	waitFor("the job shows as succeeded", sel(`#jobs-body tr[data-job="`+id+`"][data-status="succeeded"]`))
	waitFor("the source shows its snapshot", sel(`#sources-body tr[data-source=`+chrome.JSString(src)+`]`)+
		` && !`+sel(`#sources-body tr[data-source=`+chrome.JSString(src)+`]`)+`.textContent.includes("never")`)
	waitFor("the bytes chart has a bar", sel("#chart-bytes svg rect"))
	waitFor("the event log has the job", `[...document.querySelectorAll("#events-log li")].some(li => li.textContent.includes("job.backup.succeeded"))`)

	marker, err := chromedp.Run(tab, chromedp.Evaluate[int]("window.__brrNoReload || 0"))
	if err != nil || marker != 42 {
		t.Fatalf("page marker = %d (%v): the page reloaded, so the update did not come live", marker, err)
	}
	p.shoot("dashboard.png", "")

	// A phone: the page must not be wider than the screen.
	do("emulate a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	waitFor("the page lays out for the phone", "window.innerWidth === 390")
	overflow, err := chromedp.Run(tab, chromedp.Evaluate[int]("document.documentElement.scrollWidth - window.innerWidth"))
	if err != nil {
		t.Fatal(err)
	}
	if overflow > 0 {
		t.Errorf("on a 390 px wide phone the page is %d px too wide: it scrolls sideways", overflow)
	}
	p.shoot("dashboard-phone.png", "")

	tab.CheckConsole()
}

// newTab starts Chromium at browser, of width×height (zero: its default), and returns a
// tab of it; both end with the test. A step of tab.Do that fails shows the page and the
// logs of w.
func newTab(t *testing.T, browser string, w *testkit.Worker, width, height int) *chrome.Tab {
	t.Helper()
	return chrome.Open(t, chrome.Options{Browser: browser, Width: width, Height: height,
		Timeout: 3 * time.Minute, PollTimeout: 60 * time.Second, Logs: w.Logs,
		Page: `document.querySelector("main").innerText + "\nbanner: " + document.querySelector("#banner").innerText + "\nlive: " + document.querySelector("#live").className`})
}

// writeAPIKey writes key to a file for a worker's http.api_key_file and returns its path.
func writeAPIKey(t *testing.T, key string) string {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "api.key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile
}

// healthzWorker returns the id the worker reports on /healthz.
func healthzWorker(t *testing.T, base string) string {
	t.Helper()
	res, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var h struct{ Worker string }
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil || h.Worker == "" {
		t.Fatalf("/healthz: %v %+v", err, h)
	}
	return h.Worker
}

// postJob posts a job to the worker's API with the key and expects 202.
func postJob(t *testing.T, base, key, body string) {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/api/v1/jobs", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /api/v1/jobs: %d %s", res.StatusCode, data)
	}
}

// TestDashboardProtectedReads loads the dashboard of a worker that protects its reads:
// the page shows no data and asks for the key; once it has it, it shows the worker and
// follows the live events, whose stream needs the key too.
func TestDashboardProtectedReads(t *testing.T) {
	// The config continues the http block that openDashboard starts.
	p := openDashboard(t, "  protect_reads: true\n", 0, 0)
	workerID := healthzWorker(t, p.base)

	p.load()
	p.do("the page asks for the key", p.askedForKey())
	if shown := p.eval(`String(document.querySelectorAll("#workers-body tr[data-worker]").length)`); shown != "0" {
		t.Fatalf("without the key the page shows %s workers, want none", shown)
	}
	p.do("enter the key",
		p.enterKey(),
		p.poll(`document.querySelector('#workers-body tr[data-worker="`+workerID+`"]')`),
		p.poll(`document.querySelector("#live.on") && document.querySelector("#key-form").hidden`))
}
