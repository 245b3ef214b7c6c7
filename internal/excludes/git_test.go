package excludes_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/excludes"
)

// tree is the tree every case's ignore files are laid into: "/" ends a directory.
var tree = []string{
	"README.md", "a.o", "b.o", "main.c", "x.tmp", "keep.tmp", "#notes", "!important",
	"trail ", "trail", " sp", "star*name", "starXname", "q1", "q22", "Ab", "ab", "cb", "1b",
	"-b", "]b", "é.txt", "e.txt", ".hidden", "aXbXc", "empty/",
	"node_modules/pkg/index.js", "node_modules/.bin/x",
	"src/main.go", "src/main.o", "src/foo", "src/x.log", "src/node_modules/lib/a.js",
	"src/build/out.bin", "src/gen/a.tmp", "src/gen/keep.tmp", "src/deep/er/x.log",
	"src/deep/er/keep.log", "src/.cache/y",
	"build/out.bin", "build/keep.txt", "build/sub/x.bin",
	"docs/a.md", "docs/build", "docs/sub/b.md", "docs/sub/build/x", "docs/sub/c.txt",
	"lib/foo/bar.c", "lib/foo.c", "lib/a/b/foo/z",
	"logs/a.log", "logs/2024/b.log", "logs/keep/c.log",
	".cache/x", "dir.d/x",
	"a/b/c/d.txt", "a/x/b/d.txt", "a/b/e.txt",
	// Named like the patterns that match nothing, to show that they do not.
	"a[b", `foo\`, "[", "[[:nope:]]b",
}

// invalid are patterns that git takes but that match nothing, not even a name spelled
// like them; jobs refuse them.
var invalid = []string{"a[b", `foo\`, "[[:nope:]]b", "[", "[]", "!", "/"}

// patternCase is a set of ignore files (directory → content) and root patterns.
type patternCase struct {
	name  string
	files map[string]string
	root  []string // the job's patterns: checked against `git ls-files -x` instead
}

func root(content string) map[string]string { return map[string]string{"": content} }

var cases = []patternCase{
	// Syntax: comments, blank lines, spaces, escapes, line endings.
	{name: "comments and blank lines", files: root("\n# a comment\n\n   \n*.o\n#*.tmp\n")},
	{name: "escaped hash", files: root(`\#notes` + "\n")},
	{name: "hash starts a comment", files: root("#notes\n")},
	{name: "escaped bang", files: root(`\!important` + "\n")},
	{name: "trailing spaces trimmed", files: root("README.md   \nmain.c \t\n")},
	{name: "escaped trailing space", files: root(`trail\ ` + "\n")},
	{name: "escaped space then spaces", files: root(`trail\    ` + "\n")},
	{name: "leading space kept", files: root(" sp\n")},
	{name: "crlf lines", files: root("*.o\r\n*.tmp\r\n")},
	{name: "crlf without final newline", files: root("*.o\r\n*.tmp\r")},
	{name: "byte order mark", files: root("\xef\xbb\xbf*.o\n")},
	{name: "no final newline", files: root("*.o\nmain.c")},
	{name: "invalid patterns match nothing", files: root(strings.Join(invalid, "\n") + "\nmain.c\n")},
	{name: "escaped star", files: root(`star\*name` + "\n")},
	// Where a pattern applies: basename, anchored, middle slash.
	{name: "basename at any depth", files: root("*.o\nmain.go\n")},
	{name: "leading slash anchors", files: root("/a.o\n/main.go\n")},
	{name: "middle slash anchors", files: root("src/main.o\nx/b\n")},
	{name: "directory only", files: root("build/\n")},
	{name: "file or directory", files: root("build\n")},
	{name: "anchored directory", files: root("/build/\n")},
	{name: "middle and trailing slash", files: root("docs/sub/\n")},
	{name: "dir with dot", files: root("*.d/\n")},
	{name: "hidden entries", files: root(".*\n")},
	{name: "star alone", files: map[string]string{"docs": "*\n!*.md\n"}},
	{name: "star, dirs back, then files", files: map[string]string{"docs": "*\n!*/\n!*.md\n"}},
	{name: "every dir", files: root("*/\n")},
	{name: "root entries only", files: root("/*\n!/src\n")},
	// Negation.
	{name: "negation after", files: root("*.tmp\n!keep.tmp\n")},
	{name: "negation before loses", files: root("!keep.tmp\n*.tmp\n")},
	{name: "no negation under an excluded dir", files: root("build/\n!build/keep.txt\n")},
	{name: "negation under dir contents", files: root("build/*\n!build/keep.txt\n")},
	{name: "negated dir, contents still excluded", files: root("logs/**\n!logs/keep/\n")},
	// Wildcards.
	{name: "double star prefix", files: root("**/node_modules\n")},
	{name: "double star prefix file", files: root("**/out.bin\n")},
	{name: "double star prefix dir only", files: root("**/foo/\n")},
	{name: "unanchored directory", files: root("node_modules/\n")},
	{name: "double star suffix", files: root("logs/**\n")},
	{name: "double star middle", files: root("a/**/d.txt\n")},
	{name: "double star middle zero dirs", files: root("a/**/b\n")},
	{name: "double star prefix and suffix", files: root("**/build/**\n")},
	{name: "double star in a subtree", files: root("src/**/*.log\n")},
	{name: "double star not a component", files: root("/aX**c\n/a**d.txt\n")},
	{name: "everything", files: root("**\n!**/\n")},
	{name: "question mark", files: root("q?\n")},
	{name: "question mark is one byte", files: root("?.txt\n")},
	{name: "two question marks", files: root("??.txt\n")},
	{name: "star does not cross slash", files: root("src/*.log\n")},
	{name: "range", files: root("[a-c]b\n")},
	{name: "negated range with bang", files: root("[!a-c]b\n")},
	{name: "negated range with caret", files: root("[^a]b\n")},
	{name: "bracket as first member", files: root("[]]b\n")},
	{name: "posix class", files: root("[[:upper:]]b\n")},
	{name: "posix classes", files: root("[[:digit:][:punct:]]b\n")},
	{name: "dash at end of class", files: root("[a-]b\n")},
	// Nested ignore files: relative to their directory, the nearest wins.
	{name: "nested file takes back", files: map[string]string{"": "*.log\n", "src/deep": "!keep.log\n"}},
	{name: "nested file wins", files: map[string]string{"": "!x.log\n", "src": "*.log\n"}},
	{name: "nested anchored", files: map[string]string{"src": "/main.go\n/foo\n"}},
	{name: "nested middle slash", files: map[string]string{"src": "deep/er/x.log\n"}},
	{name: "nested double star", files: map[string]string{"src": "**/a.js\n"}},
	{name: "nested pattern names the parent", files: map[string]string{"src": "src/main.go\n"}},
	{name: "file under excluded dir not read", files: map[string]string{"": "build/\n", "build": "!out.bin\n"}},
	{name: "ignored ignore file still applies", files: map[string]string{"": ".*\n", "src": "*.go\n"}},
	{name: "three levels", files: map[string]string{"": "*.txt\n", "docs": "!*.txt\n", "docs/sub": "c.txt\n"}},
	// Root patterns (a job's), which come first, as git's --exclude ones do.
	{name: "job patterns", root: []string{"node_modules", "*.o", ".cache/", "**/*.tmp", "!keep.tmp", "/build", "logs/**/*.log", "src/deep/", "*.md", "!README.md"}},
	{name: "job negation beats ignore file", files: root("build/\n*.log\n"), root: []string{"!build/", "!x.log"}},
	{name: "job pattern beats nested file", files: map[string]string{"src/deep": "!keep.log\n"}, root: []string{"*.log"}},
	{name: "ignore file still applies under job", files: map[string]string{"src": "main.go\n"}, root: []string{"*.o"}},
}

// TestMatchesGit lays each case's ignore files as .brrignore into a tree and as
// .gitignore into a copy under `git init`, and checks the Matcher's verdict on every path
// of the tree, found by a walk that does not descend into excluded directories, against
// git's: `git check-ignore` for the ignore files, `git ls-files --others --ignored -x`
// for cases with root patterns (which check-ignore does not take).
func TestMatchesGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed; it is the oracle of this test")
	}
	if len(cases) < 40 {
		t.Fatalf("%d cases, want at least 40", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src, gitDir := t.TempDir(), t.TempDir()
			layTree(t, src, c.files, excludes.DefaultIgnoreFile)
			layTree(t, gitDir, c.files, ".gitignore")
			git(t, gitDir, nil, "init", "-q", "--template=")

			m, err := excludes.New(c.root)
			if err != nil {
				t.Fatal(err)
			}
			ours := map[string]bool{}
			walk(t, src, "", m, false, ours)

			if len(c.root) == 0 {
				checkIgnore(t, gitDir, c, ours)
			}
			lsFiles(t, gitDir, src, c, ours)
		})
	}
}

// New refuses the patterns that git matches nothing with, which the case "invalid
// patterns match nothing" shows git does.
func TestNewRefusesWhatMatchesNothing(t *testing.T) {
	for _, p := range invalid {
		if _, err := excludes.New([]string{p}); !errors.Is(err, brr.ErrInvalid) {
			t.Errorf("New(%q): err = %v, want brr.ErrInvalid", p, err)
		}
	}
}

func layTree(t *testing.T, dir string, files map[string]string, ignoreName string) {
	t.Helper()
	for _, p := range tree {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			mkdir(t, full)
			continue
		}
		mkdir(t, filepath.Dir(full))
		if err := os.WriteFile(full, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for d, content := range files {
		if err := os.WriteFile(filepath.Join(dir, d, ignoreName), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// walk does what the archiver's walk does: read a directory's ignore file, ask about
// each entry, and not descend into an excluded directory, whose entries are all excluded.
func walk(t *testing.T, root, rel string, m *excludes.Matcher, under bool, out map[string]bool) {
	t.Helper()
	dir := filepath.Join(root, rel)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !under {
		if data, err := os.ReadFile(filepath.Join(dir, excludes.DefaultIgnoreFile)); err == nil {
			m = m.WithFile(rel, data)
		}
	}
	for _, e := range entries {
		p := e.Name()
		if rel != "" {
			p = rel + "/" + p
		}
		ex := under || m.Excluded(p, e.IsDir())
		out[p] = ex
		if e.IsDir() {
			walk(t, root, p, m, ex, out)
		}
	}
}

// gitPath is the path in the git copy of a path in the tree.
func gitPath(p string) string {
	if filepath.Base(p) == excludes.DefaultIgnoreFile {
		return filepath.Join(filepath.Dir(p), ".gitignore")
	}
	return p
}

func checkIgnore(t *testing.T, gitDir string, c patternCase, ours map[string]bool) {
	t.Helper()
	var in bytes.Buffer
	var paths []string
	for p := range ours {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		in.WriteString(gitPath(p) + "\x00")
	}
	out := git(t, gitDir, &in, "check-ignore", "--no-index", "--verbose", "--non-matching", "-z", "--stdin")
	// -z -v -n: source, line, pattern, path, each ended by NUL.
	fields := strings.Split(string(out), "\x00")
	theirs := map[string]string{}
	for i := 0; i+3 < len(fields); i += 4 {
		theirs[fields[i+3]] = fields[i+2]
	}
	for _, p := range paths {
		pat, ok := theirs[gitPath(p)]
		if !ok {
			t.Errorf("git said nothing about %q", p)
			continue
		}
		gitExcluded := pat != "" && !strings.HasPrefix(pat, "!")
		if ours[p] != gitExcluded {
			t.Errorf("%q: excluded = %v, git says %v (pattern %q)\nignore files: %q", p, ours[p], gitExcluded, pat, c.files)
		}
	}
}

func lsFiles(t *testing.T, gitDir, src string, c patternCase, ours map[string]bool) {
	t.Helper()
	args := []string{"ls-files", "--others", "--ignored", "--exclude-standard", "-z"}
	for _, p := range c.root {
		args = append(args, "--exclude="+p)
	}
	out := git(t, gitDir, nil, args...)
	ignored := map[string]bool{}
	for _, p := range strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		ignored[p] = true
	}
	for p, ex := range ours {
		if fi, err := os.Lstat(filepath.Join(src, p)); err != nil || fi.IsDir() {
			continue // ls-files lists files only
		}
		if ex != ignored[gitPath(p)] {
			t.Errorf("%q: excluded = %v, git ls-files says %v\nignore files: %q\nroot patterns: %q", p, ex, ignored[gitPath(p)], c.files, c.root)
		}
	}
}

func git(t *testing.T, dir string, stdin *bytes.Buffer, args ...string) []byte {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	// No system, global or user config: no core.excludesFile, no core.ignoreCase.
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME="+home, "XDG_CONFIG_HOME="+home)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 1 && args[0] == "check-ignore" {
		err = nil // nothing is ignored
	}
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// An ignore file is read from the tree, so anything may be in it: it must not make the
// matcher panic or loop, whatever the path asked about.
func FuzzMatcher(f *testing.F) {
	f.Add([]byte("*.o\n!keep.o\nbuild/\n/a/**/b\n[!a-c]x\n[[:alpha:]]\n"), "a/x/b", true)
	f.Add([]byte("a[\n\\\n**/\n/**\n!**/\n"), "a", false)
	f.Fuzz(func(t *testing.T, data []byte, rel string, isDir bool) {
		m := (*excludes.Matcher)(nil).WithFile("d", data)
		m.Excluded("d/"+rel, isDir)
		m.WithFile("d/e", data).Excluded("d/e/"+rel, isDir)
	})
}
