// Package chrome drives a headless Chromium for the dashboard tests: a tab that ends with
// the test, steps that fail it with what the page shows, and what the page logged as an
// error. It is apart from testkit so that only the tests that use a browser build
// chromedp.
package chrome

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/brr-dev/brr/internal/testkit"
)

// Options says how to open a Tab.
type Options struct {
	// Browser is the Chromium to start, from testkit.FindChromium.
	Browser string
	// Width and Height are the window's size; zero: Chromium's default.
	Width, Height int
	// Timeout bounds the browser's life; zero: 2 minutes.
	Timeout time.Duration
	// PollTimeout bounds each Poll; zero: 30 seconds.
	PollTimeout time.Duration
	// Page is a JavaScript expression (a string) that Do shows when a step fails: what
	// the page says.
	Page string
	// Logs, when set, is more that Do shows when a step fails, e.g. a worker's logs.
	Logs func() string
}

// Tab is a tab of a headless Chromium, for chromedp.Run and chromedp.Do. It and the
// browser end with the test.
type Tab struct {
	context.Context
	t        *testing.T
	o        Options
	mu       sync.Mutex
	problems []string
}

// Open starts Chromium and opens a tab in it, which records what the page logs as an
// error or an exception (see CheckConsole).
func Open(t *testing.T, o Options) *Tab {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.PollTimeout == 0 {
		o.PollTimeout = 30 * time.Second
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(o.Browser),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
	)
	if o.Width > 0 && o.Height > 0 {
		opts = append(opts, chromedp.WindowSize(o.Width, o.Height))
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(testkit.Context(t, o.Timeout), opts...)
	ctx, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	tab := &Tab{Context: ctx, t: t, o: o}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				tab.mu.Lock()
				tab.problems = append(tab.problems, fmt.Sprintf("%s:%d %s", m.URL, m.Line+1, m.Text))
				tab.mu.Unlock()
			}
		}
	}()
	return tab
}

// Do runs actions in the tab and fails the test, with what the page shows, when one
// fails.
func (tab *Tab) Do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tab.t.Helper()
	err := chromedp.Do(tab, actions...)
	if err == nil {
		return
	}
	page := ""
	if tab.o.Page != "" {
		page, _ = chromedp.Run(context.WithoutCancel(tab.Context), chromedp.Evaluate[string](tab.o.Page))
	}
	if tab.o.Logs != nil {
		tab.t.Fatalf("%s: %v\npage:\n%s\nworker logs:\n%s", what, err, page, tab.o.Logs())
	}
	tab.t.Fatalf("%s: %v\npage:\n%s", what, err, page)
}

// Poll waits for the JavaScript condition cond to be true.
func (tab *Tab) Poll(cond string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(tab.o.PollTimeout))
}

// CheckConsole fails the test when the page logged an error or an exception.
func (tab *Tab) CheckConsole() {
	tab.t.Helper()
	tab.mu.Lock()
	defer tab.mu.Unlock()
	if len(tab.problems) > 0 {
		tab.t.Errorf("the page logged errors:\n%s", strings.Join(tab.problems, "\n"))
	}
}

// JSString is s as a JavaScript string literal.
func JSString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
