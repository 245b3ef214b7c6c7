package web

import (
	"embed"
	"io/fs"
	"net/http"
)

// static holds the dashboard: one page, its scripts and its style sheet, written by
// hand; there is no build step.
//
//go:embed static
var static embed.FS

// contentSecurityPolicy lets the page load only its own files and talk only to its own
// origin: no inline script, no third-party anything.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// mountDashboard serves the page at / and its files under /static/. They are public:
// they hold no data, and the page asks for the key when the API wants one.
func (s *Server) mountDashboard(mux *http.ServeMux) {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the directory is embedded above: it exists
	}
	fileServer := http.FileServerFS(files)
	serve := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", contentSecurityPolicy)
		w.Header().Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	}
	mux.HandleFunc("GET /{$}", serve)
	mux.Handle("GET /static/", http.StripPrefix("/static", http.HandlerFunc(serve)))
}
