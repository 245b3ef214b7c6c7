package web

import (
	"archive/tar"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBrowse lists, diffs and downloads from two snapshots through the API, by id
// prefix, against the real job engine and query service; an escaping path and an
// unknown snapshot get clear errors.
func TestBrowse(t *testing.T) {
	f := setup(t, nil)
	first := f.backup("browse-1").Result.Backup.Snapshot
	fb := bytes.Repeat([]byte{9}, 2500)
	if err := os.WriteFile(filepath.Join(f.src, "fb"), fb, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.src, "fd"), []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	second := f.backup("browse-2").Result.Backup.Snapshot

	var tree Tree
	decode(t, f.get("/api/v1/snapshots/"+second[:6]+"/tree"), http.StatusOK, &tree)
	var names []string
	for _, e := range tree.Entries {
		names = append(names, e.Name)
	}
	if got, want := strings.Join(names, " "), "fa fb fc fd"; got != want || tree.Snapshot.ID != second || tree.Entry.Path != "/" || tree.Truncated {
		t.Errorf("tree of %s: %s (snapshot %s, entry %+v, truncated %v), want %s", second[:6], got, tree.Snapshot.ID, tree.Entry, tree.Truncated, want)
	}
	decode(t, f.get("/api/v1/snapshots/"+first[:6]+"/tree?path=/fb"), http.StatusOK, &tree)
	if len(tree.Entries) != 1 || tree.Entries[0].Size != 2000 || tree.Entry.Type != "file" {
		t.Errorf("tree of a file: %+v", tree)
	}
	decode(t, f.get("/api/v1/snapshots/"+second+"/tree?limit=2"), http.StatusOK, &tree)
	if len(tree.Entries) != 2 || !tree.Truncated {
		t.Errorf("tree with limit=2: %d entries, truncated %v", len(tree.Entries), tree.Truncated)
	}

	var diff Diff
	decode(t, f.get("/api/v1/snapshots/"+first[:8]+"/diff/"+second[:8]), http.StatusOK, &diff)
	var changes []string
	for _, c := range diff.Changes {
		changes = append(changes, c.Change+" "+c.Path)
	}
	if got, want := strings.Join(changes, ", "), "modified /fb, added /fd"; got != want || diff.A.ID != first || diff.B.ID != second {
		t.Errorf("diff = %s (%s → %s), want %s", got, diff.A.ID, diff.B.ID, want)
	}
	for _, c := range diff.Changes {
		if c.Path == "/fb" && (c.OldSize != 2000 || c.NewSize != 2500) {
			t.Errorf("diff of /fb: sizes %d → %d, want 2000 → 2500", c.OldSize, c.NewSize)
		}
	}

	res := f.get("/api/v1/snapshots/" + second[:6] + "/file?path=" + url.QueryEscape("/fb"))
	if res.status != http.StatusOK || !bytes.Equal(res.body, fb) || res.header.Get("Content-Length") != "2500" ||
		res.header.Get("Content-Disposition") != `attachment; filename="fb"` {
		t.Errorf("file /fb: status %d, %d bytes, headers %v", res.status, len(res.body), res.header)
	}
	res = f.get("/api/v1/snapshots/" + first[:6] + "/file?path=/")
	if res.status != http.StatusOK || res.header.Get("Content-Type") != "application/x-tar" {
		t.Fatalf("file / (a tar): status %d, headers %v: %s", res.status, res.header, res.body)
	}
	tr := tar.NewReader(bytes.NewReader(res.body))
	var inTar []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		inTar = append(inTar, h.Name)
	}
	if got := strings.Join(inTar, " "); got != "fa fb fc" {
		t.Errorf("tar of the first snapshot holds %s, want fa fb fc", got)
	}

	for _, c := range []struct {
		path   string
		status int
		says   string
	}{
		{"/api/v1/snapshots/" + second + "/tree?path=" + url.QueryEscape("/../etc"), http.StatusBadRequest, `has a \"..\" element`},
		{"/api/v1/snapshots/" + second + "/file?path=" + url.QueryEscape("fa/../../etc/passwd"), http.StatusBadRequest, `has a \"..\" element`},
		{"/api/v1/snapshots/" + second + "/file?path=" + url.QueryEscape("//etc/passwd"), http.StatusNotFound, "no /etc in the snapshot"},
		{"/api/v1/snapshots/" + second + "/file", http.StatusBadRequest, "give the path"},
		{"/api/v1/snapshots/abcd0123/tree", http.StatusNotFound, "no snapshot abcd0123"},
		{"/api/v1/snapshots/xyz/tree", http.StatusBadRequest, "hex characters"},
		{"/api/v1/snapshots/" + second + "/tree?limit=0", http.StatusBadRequest, "limit"},
	} {
		res := f.get(c.path)
		if res.status != c.status || !strings.Contains(string(res.body), c.says) {
			t.Errorf("GET %s: %d %s, want %d saying %s", c.path, res.status, res.body, c.status, c.says)
		}
	}
}
