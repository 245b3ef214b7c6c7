package brr

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestValidateExclude(t *testing.T) {
	for _, p := range []string{
		"*.o", "node_modules/", "/build", "a/**/b", "**/x", "x/**", "!keep.tmp", `\#notes`, `\!bang`,
		`trail\ `, "name  ", "[a-c]b", "[!a]b", "[^a]b", "[]]b", "[[:upper:]]b", "[a-]b", "[[:x]", `a\[b`,
		"é?.txt", "[[]", "[a-[]",
	} {
		if err := ValidateExclude(p); err != nil {
			t.Errorf("ValidateExclude(%q) = %v, want nil", p, err)
		}
	}
	for _, c := range []struct{ pattern, mention string }{
		{"", "matches nothing"},
		{"   ", "matches nothing"},
		{"!", "matches nothing"},
		{"/", "matches nothing"},
		{"!/", "matches nothing"},
		{"#notes", `write \#`},
		{"a\nb", "one pattern per entry"},
		{"a\x00", "NUL"},
		{"[abc", "not closed"},
		{"a[", "not closed"},
		{"[!", "not closed"},
		{"[]", "not closed"},
		{`[a\`, "not closed"},
		{"[[:nope:]]x", "[:nope:] is not a character class"},
		{`foo\`, `ends with \`},
		{"a//b", "empty"},
		{"./a", `"."`},
		{"a/../b", `".."`},
		{strings.Repeat("x", 4097), "limit is 4096"},
	} {
		err := ValidateExclude(c.pattern)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("ValidateExclude(%q) = %v, want ErrInvalid mentioning %q", c.pattern, err, c.mention)
		}
	}
}

func TestBackupJobValidateExcludes(t *testing.T) {
	ok := BackupJob{Path: "/srv/app", Excludes: []string{"node_modules/", "!keep.tmp"}, ExcludeLargerThan: 100 << 20}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid job: %v", err)
	}
	for _, c := range []struct {
		job     BackupJob
		mention string
	}{
		{BackupJob{Path: "/srv/app", Excludes: []string{"*.o", "[x"}}, `"[x"`},
		{BackupJob{Path: "/srv/app", Excludes: []string{"/srv/app/node_modules"}}, `write "/node_modules"`},
		{BackupJob{Path: "/srv/app", Excludes: []string{"!/srv/app/keep"}}, `write "!/keep"`},
		{BackupJob{Path: "/srv/app", Excludes: make([]string, MaxExcludes+1)}, ".brrignore"},
		{BackupJob{Path: "/srv/app", ExcludeLargerThan: -1}, "exclude_larger_than"},
	} {
		err := c.job.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalid mentioning %q", c.job.Excludes, err, c.mention)
		}
	}
}

func TestTrimExcludeSpaces(t *testing.T) {
	for in, want := range map[string]string{
		"a":       "a",
		"a   ":    "a",
		`a\ `:     `a\ `,
		`a\   `:   `a\ `,
		`a\ b  `:  `a\ b`,
		" a":      " a",
		`a\`:      `a\`,
		"a \t ":   "a \t",
		`a\\  `:   `a\\`,
		"   ":     "",
		`\ \ \  `: `\ \ \ `,
	} {
		if got := TrimExcludeSpaces(in); got != want {
			t.Errorf("TrimExcludeSpaces(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExcludeLines(t *testing.T) {
	data := "\xef\xbb\xbf# comment\r\n*.o\r\n\n   \n!keep.o  \n\\#x\nlast\r"
	if got, want := ExcludeLines([]byte(data)), []string{"*.o", "!keep.o  ", `\#x`, "last"}; !slices.Equal(got, want) {
		t.Errorf("ExcludeLines = %q, want %q", got, want)
	}
}

func TestBackupJobJSON(t *testing.T) {
	job := BackupJob{Path: "/srv", Excludes: []string{"*.o"}, ExcludeCaches: true, OneFileSystem: true, ExcludeLargerThan: 1024, DryRun: true}
	data, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"path":"/srv","excludes":["*.o"],"exclude_caches":true,"one_file_system":true,"exclude_larger_than":1024,"dry_run":true}`
	if string(data) != want {
		t.Errorf("JSON %s, want %s", data, want)
	}
	if data, _ := json.Marshal(BackupJob{Path: "/srv"}); string(data) != `{"path":"/srv"}` {
		t.Errorf("JSON of a job without excludes: %s, want only the path", data)
	}
}
