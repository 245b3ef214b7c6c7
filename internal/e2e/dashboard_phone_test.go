package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
	"github.com/brr-dev/brr/internal/testkit/chrome"
)

// TestDashboardPhone loads the dashboard of a real worker in headless Chromium at a
// phone's size, 390×844, with long lists in the panels added for the operator's
// controls: a directory of 150 files with long names in Browse, a diff of two snapshots
// that changed each of them, and 30 dead letters with long errors. It measures the
// page: nothing is wider than the screen, and each long list scrolls in a box of its
// own instead of pushing the next panel thousands of pixels down. Screenshots of each
// panel are kept as test artifacts.
func TestDashboardPhone(t *testing.T) {
	src := t.TempDir()
	const files = 150
	write := func(round int) {
		for i := range files {
			name := fmt.Sprintf("a-rather-long-file-name-for-a-phone-screen-number-%03d.txt", i)
			if err := os.WriteFile(filepath.Join(src, name), []byte(strings.Repeat(fmt.Sprint(round, i), 50+i)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	p := openDashboard(t, fmt.Sprintf("sources:\n  docs: {path: %q}\n", src), 390, 844)
	c, ctx := p.c, p.ctx
	for round := range 2 {
		write(round)
		e, err := publishWait(t, ctx, c, brr.BackupJob{SourceName: "docs"})
		if err != nil || e.Status != brr.StatusSucceeded {
			t.Fatalf("backup %d ended %+v (%v)", round, e, err)
		}
	}
	const dead = 30
	missing := filepath.Join(t.TempDir(), strings.Repeat("a-directory-that-is-not-there/", 6))
	for i := range dead {
		if _, err := c.Publish(ctx, brr.BackupJob{Path: fmt.Sprint(missing, i)}, brr.WithID(fmt.Sprintf("dead-%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 2*time.Minute, "the dead letters", func() bool {
		return len(deadLetters(t, p.base, p.key)) == dead
	})

	p.do("emulate a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	p.load()
	p.do("give the page the key", chromedp.Evaluate[chromedp.Void](`sessionStorage.setItem("brr.apiKey", `+chrome.JSString(p.key)+`)`))
	p.load()
	p.do("the panels are drawn",
		p.poll("window.innerWidth === 390"),
		p.poll(fmt.Sprintf(`document.querySelectorAll("#browse-body tr").length >= %d`, files)),
		p.poll(fmt.Sprintf(`document.querySelectorAll("#dlq-body tr[data-dead]").length === %d`, dead)),
		p.poll(q(`#act-drill-snap option[value="latest"]`)),
		p.click("#diff-button"),
		p.poll(fmt.Sprintf(`document.querySelectorAll("#diff-body tr").length >= %d`, files)))

	if over := atoi(p.eval("String(document.documentElement.scrollWidth - window.innerWidth)")); over > 0 {
		t.Errorf("on a 390 px wide phone the page is %d px too wide: it scrolls sideways", over)
	}
	// No panel, and nothing in one outside a box that scrolls, reaches past the screen.
	for _, id := range []string{"browse", "dlq", "actions", "jobs"} {
		wide := p.eval(`(() => { const out = [];
			for (const e of document.querySelectorAll("#` + id + `, #` + id + ` *")) {
				if (e.closest(".scroll") && !e.classList.contains("scroll")) continue;
				const r = e.getBoundingClientRect();
				if (r.width && (r.right > window.innerWidth + 0.5 || r.left < -0.5)) out.push(e.tagName + (e.id ? "#" + e.id : "") + "." + e.className + " " + Math.round(r.left) + ".." + Math.round(r.right));
			}
			return out.slice(0, 5).join("; "); })()`)
		if wide != "" {
			t.Errorf("panel %s: past the 390 px screen: %s", id, wide)
		}
	}
	// Each long list scrolls in its own box, a screen high at most.
	for _, box := range []string{"#browse-body", "#diff-body", "#dlq-body"} {
		js := q(box) + `.closest(".scroll")`
		h, inner := atoi(p.eval("String(Math.round("+js+".getBoundingClientRect().height))")), atoi(p.eval("String("+js+".scrollHeight)"))
		if h > 844 || inner <= h {
			t.Errorf("the list %s is %d px high in a box of %d px, want it in a box of at most a screen (844 px) that scrolls", box, inner, h)
		}
	}
	for _, id := range []string{"browse", "dlq", "actions"} {
		if h := atoi(p.eval(`String(Math.round(document.getElementById("` + id + `").getBoundingClientRect().height))`)); h > 2200 {
			t.Errorf("panel %s is %d px high on a phone, want its lists bounded", id, h)
		}
	}
	for _, id := range []string{"actions", "dlq", "browse"} {
		p.shoot("dashboard-phone-"+id+".png", id)
	}
}

func atoi(s string) int {
	var n int
	_, _ = fmt.Sscan(s, &n)
	return n
}
