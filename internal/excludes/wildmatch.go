package excludes

import "strings"

// The outcomes of dowild: a match, no match, or a failure that no other way of matching
// the rest of the text can turn into a match, which ends the search early.
const (
	wmMatch = iota
	wmNoMatch
	wmAbortAll
	wmAbortToStarStar
)

// wildmatch matches text against the glob pattern as git's wildmatch.c does, with
// WM_PATHNAME when pathname is set: "*" and "?" do not match "/", and "**" as a whole
// path component matches any number of directories. "[...]" is a class ("!" or "^"
// negates, "[:alpha:]" and the other POSIX classes), "\" escapes the next byte. It works
// on bytes, as git does: "?" matches one byte, not one UTF-8 character.
func wildmatch(pattern, text string, pathname bool) bool {
	return dowild(pattern, 0, text, pathname) == wmMatch
}

// dowild matches text against pattern[p:]; pattern is whole so that a "**" can see
// what is before it.
func dowild(pattern string, p int, text string, pathname bool) int {
	t := 0
	for ; p < len(pattern); p, t = p+1, t+1 {
		pc := pattern[p]
		if t == len(text) && pc != '*' {
			return wmAbortAll
		}
		var tc byte
		if t < len(text) {
			tc = text[t]
		}
		switch pc {
		case '\\':
			// A literal match with the next byte; a "\" at the end matches nothing.
			p++
			if p == len(pattern) || tc != pattern[p] {
				return wmNoMatch
			}
			continue
		case '?':
			if pathname && tc == '/' {
				return wmNoMatch
			}
			continue
		case '[':
			end, ok, abort := matchClass(pattern, p, tc)
			if abort {
				return wmAbortAll
			}
			if !ok || (pathname && tc == '/') {
				return wmNoMatch
			}
			p = end
			continue
		case '*': // below
		default:
			if tc != pc {
				return wmNoMatch
			}
			continue
		}

		// A star. Without pathname, "*" is "**": both match slashes.
		matchSlash := !pathname
		if p+1 < len(pattern) && pattern[p+1] == '*' {
			prev := p - 1
			p++
			for p+1 < len(pattern) && pattern[p+1] == '*' {
				p++
			}
			next := p + 1 // what follows the stars
			if (prev < 0 || pattern[prev] == '/') &&
				(next == len(pattern) || pattern[next] == '/' || (pattern[next] == '\\' && next+1 < len(pattern) && pattern[next+1] == '/')) {
				// "**" is a whole component. Try first the rest of the pattern past its
				// "/" on the text as it is, so that "a/**/b" matches "a/b".
				if next < len(pattern) && pattern[next] == '/' && dowild(pattern, next+1, text[t:], pathname) == wmMatch {
					return wmMatch
				}
				matchSlash = true
			} else if pathname {
				// Any other "**" is a "*".
				matchSlash = false
			}
		}
		p++
		if p == len(pattern) {
			// A trailing "**" matches everything, a trailing "*" the rest of this
			// component.
			if !matchSlash && strings.IndexByte(text[t:], '/') >= 0 {
				return wmNoMatch
			}
			return wmMatch
		}
		if !matchSlash && pattern[p] == '/' {
			// One star and a slash: the star matches the rest of this component, and the
			// loop matches the slash.
			slash := strings.IndexByte(text[t:], '/')
			if slash < 0 {
				return wmNoMatch
			}
			t += slash
			continue
		}
		for t < len(text) {
			// When a literal follows the star, what comes before the literal's next
			// occurrence belongs to the star (within this component, unless it may
			// match slashes).
			if lit := pattern[p]; !isGlobSpecial(lit) {
				for t < len(text) && (matchSlash || text[t] != '/') && text[t] != lit {
					t++
				}
				if t == len(text) || text[t] != lit {
					return wmNoMatch
				}
			}
			m := dowild(pattern, p, text[t:], pathname)
			if m != wmNoMatch {
				if !matchSlash || m != wmAbortToStarStar {
					return m
				}
			} else if !matchSlash && text[t] == '/' {
				return wmAbortToStarStar
			}
			t++
		}
		return wmAbortAll
	}
	if t < len(text) {
		return wmNoMatch
	}
	return wmMatch
}

// matchClass matches the byte c against the class that opens at pattern[open] ("["),
// and returns the index of the "]" that closes it. abort is set when the class is not
// closed or names an unknown [:class:]: then the pattern matches nothing.
func matchClass(pattern string, open int, c byte) (end int, ok, abort bool) {
	p := open + 1
	if p == len(pattern) {
		return 0, false, true
	}
	negated := pattern[p] == '!' || pattern[p] == '^'
	if negated {
		p++
	}
	matched := false
	var prev byte // the member before, which a "-" makes a range from; 0 after a range
	for {
		if p >= len(pattern) {
			return 0, false, true
		}
		pc := pattern[p]
		switch {
		case pc == '\\':
			p++
			if p == len(pattern) {
				return 0, false, true
			}
			pc = pattern[p]
			if c == pc {
				matched = true
			}
		case pc == '-' && prev != 0 && p+1 < len(pattern) && pattern[p+1] != ']':
			p++
			hi := pattern[p]
			if hi == '\\' {
				p++
				if p == len(pattern) {
					return 0, false, true
				}
				hi = pattern[p]
			}
			if c <= hi && c >= prev {
				matched = true
			}
			pc = 0
		case pc == '[' && p+1 < len(pattern) && pattern[p+1] == ':':
			s := p + 2
			close := strings.IndexByte(pattern[s:], ']')
			if close < 0 {
				return 0, false, true
			}
			close += s
			if close == s || pattern[close-1] != ':' {
				// Not "[:name:]": the "[" is a member, and the class goes on after it.
				if c == '[' {
					matched = true
				}
				break
			}
			in, known := posixClass(pattern[s:close-1], c)
			if !known {
				return 0, false, true
			}
			if in {
				matched = true
			}
			p = close
			pc = 0
		default:
			if c == pc {
				matched = true
			}
		}
		prev = pc
		p++
		if p < len(pattern) && pattern[p] == ']' {
			return p, matched != negated, false
		}
	}
}

// posixClass reports whether c is in the POSIX class name (in the C locale, as git
// has it), and whether there is such a class.
func posixClass(name string, c byte) (in, known bool) {
	switch name {
	case "alnum":
		return isAlpha(c) || isDigit(c), true
	case "alpha":
		return isAlpha(c), true
	case "blank":
		return c == ' ' || c == '\t', true
	case "cntrl":
		return c < 0x20 || c == 0x7f, true
	case "digit":
		return isDigit(c), true
	case "graph":
		return c > 0x20 && c < 0x7f, true
	case "lower":
		return c >= 'a' && c <= 'z', true
	case "print":
		return c >= 0x20 && c < 0x7f, true
	case "punct":
		return c > 0x20 && c < 0x7f && !isAlpha(c) && !isDigit(c), true
	case "space":
		// git's own isspace: not \v or \f.
		return c == ' ' || c == '\t' || c == '\n' || c == '\r', true
	case "upper":
		return c >= 'A' && c <= 'Z', true
	case "xdigit":
		return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'), true
	}
	return false, false
}

func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isGlobSpecial(c byte) bool { return c == '*' || c == '?' || c == '[' || c == '\\' }
