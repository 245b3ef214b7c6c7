// Package excludes decides what a backup leaves out, with the semantics of gitignore
// (https://git-scm.com/docs/gitignore) and git's own matcher (wildmatch), which the
// tests check against git itself. A Matcher holds the patterns of a job or a source,
// relative to the backup root and first in precedence, as git's command-line --exclude
// patterns are, and the patterns of the ignore files (.brrignore) met on the way down
// from the root, each relative to its directory, the deepest first. The walk asks it
// about each entry of a directory it lists and does not descend into a directory it
// excludes, so that, as in git, nothing below an excluded directory can be taken back.
package excludes

import (
	"strings"

	"github.com/brr-dev/brr"
)

// DefaultIgnoreFile is the name of the ignore files a backup reads in the tree.
const DefaultIgnoreFile = ".brrignore"

// pattern is one parsed gitignore pattern.
type pattern struct {
	glob     string // what wildmatch matches: without "!", the trailing "/" and a leading "/"
	negate   bool   // "!": a match takes the path back
	dirOnly  bool   // a trailing "/": matches only directories
	basename bool   // no "/" but a trailing one: matched against the name at any depth
	literal  bool   // glob has no wildcard and no escape: compared as a string
	suffix   string // glob is "*" and a literal: the literal, which the name ends with
	base     string // the directory of the pattern's file, "" or with a trailing "/"
}

// parse parses one line of gitignore syntax, with trailing spaces, of an ignore file in
// the directory base ("" or with a trailing "/"). ok is false for a pattern that
// matches nothing ("!", "/").
func parse(line, base string) (p pattern, ok bool) {
	line = brr.TrimExcludeSpaces(line)
	if strings.HasPrefix(line, "!") {
		p.negate = true
		line = line[1:]
	}
	if strings.HasSuffix(line, "/") {
		p.dirOnly = true
		line = line[:len(line)-1]
	}
	if strings.Contains(line, "/") {
		line = strings.TrimPrefix(line, "/")
	} else {
		p.basename = true
	}
	if line == "" {
		return p, false
	}
	p.glob, p.base = line, base
	if !strings.ContainsAny(line, "*?[\\") {
		p.literal = true
	} else if line[0] == '*' && !strings.ContainsAny(line[1:], "*?[\\") {
		p.suffix = line[1:]
	}
	return p, true
}

// match reports whether the pattern matches the path rel (relative to the root) whose
// last component is name.
func (p *pattern) match(rel, name string, isDir bool) bool {
	if p.dirOnly && !isDir {
		return false
	}
	if p.basename {
		switch {
		case p.literal:
			return name == p.glob
		case p.suffix != "":
			return strings.HasSuffix(name, p.suffix)
		}
		return wildmatch(p.glob, name, false)
	}
	if !strings.HasPrefix(rel, p.base) {
		return false
	}
	rel = rel[len(p.base):]
	if p.literal {
		return rel == p.glob
	}
	return wildmatch(p.glob, rel, true)
}

// list is the patterns of one ignore file, and the list of the nearest ignore file
// above it.
type list struct {
	patterns []pattern
	parent   *list
}

// Matcher tells which paths of a tree are excluded. It is immutable: WithFile returns
// another, so one Matcher per directory can be shared by the goroutines that list its
// subdirectories. The nil Matcher excludes nothing.
type Matcher struct {
	root  []pattern // the job's or the source's, relative to the root, first in precedence
	files *list     // the ignore files from the directory listed up to the root
}

// New returns a Matcher of root-relative patterns in gitignore syntax (those of a job or
// a source); a pattern that brr.ValidateExclude refuses is an error.
func New(patterns []string) (*Matcher, error) {
	m := &Matcher{}
	for _, s := range patterns {
		if err := brr.ValidateExclude(s); err != nil {
			return nil, err
		}
		if p, ok := parse(s, ""); ok {
			m.root = append(m.root, p)
		}
	}
	return m, nil
}

// WithFile returns the Matcher for the directory dir (relative to the root, "" for the
// root itself) whose ignore file holds data: m with the file's patterns, relative to
// dir, before the others of the files above. A line that is not a valid pattern matches
// nothing, as in git.
func (m *Matcher) WithFile(dir string, data []byte) *Matcher {
	base := ""
	if dir != "" {
		base = dir + "/"
	}
	var ps []pattern
	for _, line := range brr.ExcludeLines(data) {
		if p, ok := parse(line, base); ok {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return m
	}
	out := &Matcher{files: &list{patterns: ps}}
	if m != nil {
		out.root = m.root
		out.files.parent = m.files
	}
	return out
}

// Empty reports whether m excludes nothing whatever the path.
func (m *Matcher) Empty() bool {
	return m == nil || (len(m.root) == 0 && m.files == nil)
}

// Excluded reports whether the entry at rel (relative to the root, "/"-separated) is
// excluded, given that no directory above it is: the last pattern that matches decides,
// looking first at the root patterns, then at the ignore files from the nearest up; a
// negated pattern ("!") takes the entry back.
func (m *Matcher) Excluded(rel string, isDir bool) bool {
	if m.Empty() {
		return false
	}
	name := rel[strings.LastIndexByte(rel, '/')+1:]
	if excluded, decided := lastMatch(m.root, rel, name, isDir); decided {
		return excluded
	}
	for l := m.files; l != nil; l = l.parent {
		if excluded, decided := lastMatch(l.patterns, rel, name, isDir); decided {
			return excluded
		}
	}
	return false
}

func lastMatch(ps []pattern, rel, name string, isDir bool) (excluded, decided bool) {
	for i := len(ps) - 1; i >= 0; i-- {
		if ps[i].match(rel, name, isDir) {
			return !ps[i].negate, true
		}
	}
	return false, false
}
