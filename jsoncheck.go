package brr

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// checkJSON reads the JSON value in data once, byte by byte, and refuses, with an error
// wrapping ErrInvalid that names the key, what encoding/json would let through in silence:
//
//   - a key that appears twice in one object, at any depth. encoding/json keeps the last,
//     while another reader (a gateway, an audit log) may keep the first, so one message
//     would say two things. Keys that differ only in case count as the same key, since
//     encoding/json matches both to one field (see foldKey).
//   - a NUL byte in any string, key or value (only a \u0000 escape can put one there: a raw
//     control byte is a syntax error): C code and file systems end the string there, so a
//     path or tag would be read as something shorter than what was checked.
//
// A syntax error ends the walk without an error: the decode that follows reports it. What
// is refused, and the error, are those of the encoding/json token walk this replaced (kept
// in jsoncheck_test.go as the oracle its tests compare against); it costs a few per cent of
// that walk, since a key is compared as the bytes it is written as unless it holds an
// escape or a non-ASCII byte, and a path is only put together for an error.
func checkJSON(data []byte) error {
	c := jsonCheckers.Get().(*jsonChecker)
	err := c.check(data)
	if cap(c.frames) > 64 || cap(c.keys) > 256 {
		return err // a deep or wide message: let its room go
	}
	clear(c.frames[:cap(c.frames)]) // no hold on data or the maps once done
	clear(c.keys[:cap(c.keys)])
	c.frames, c.keys = c.frames[:0], c.keys[:0]
	jsonCheckers.Put(c)
	return err
}

// Where the walk is: what may come next.
const (
	wantValue        = iota // a value (after ':' or an array's ',')
	wantValueOrClose        // a value or ']' (after '[')
	wantKey                 // a key (after an object's ',')
	wantKeyOrClose          // a key or '}' (after '{')
	wantCommaOrClose        // ',' or the container's end (after a value)
)

// mapKeys is the number of keys of one object past which they are looked up in a map
// rather than compared one by one.
const mapKeys = 16

type jsonFrame struct {
	object bool
	first  int            // object: index in keys of its first key
	folded map[string]int // object past mapKeys keys: folded key → index in keys
	n      int            // array: values begun so far (the current one is n-1)
}

type jsonKey struct {
	key   []byte // the key as read: raw bytes of data, or unescaped when it had to be
	ascii bool   // key is ASCII only: two such keys fold alike when equal but for case
	fold  string // foldKey(key), once computed
}

func (k *jsonKey) folded() string {
	if k.fold == "" && len(k.key) > 0 {
		k.fold = foldKey(string(k.key))
	}
	return k.fold
}

// jsonCheckers keeps checkers for reuse, so that checking a job allocates nothing.
var jsonCheckers = sync.Pool{New: func() any { return new(jsonChecker) }}

type jsonChecker struct {
	frames []jsonFrame
	keys   []jsonKey // the keys of every open object, outermost first
}

func (c *jsonChecker) check(data []byte) error {
	i := skipJSONSpace(data, 0)
	if i == len(data) {
		return nil
	}
	var want int
	switch data[i] {
	case '{':
		c.frames = append(c.frames, jsonFrame{object: true})
		want = wantKeyOrClose
	case '[':
		c.frames = append(c.frames, jsonFrame{})
		want = wantValueOrClose
	case '"':
		if _, _, nul, ok := scanJSONString(data, i); ok && nul {
			return fmt.Errorf("%w: job message is a string with a NUL byte", ErrInvalid)
		}
		return nil
	default:
		return nil // a value that is not an object or array: the decode refuses it
	}
	i++
	for {
		if i = skipJSONSpace(data, i); i == len(data) {
			return nil
		}
		ch := data[i]
		switch want {
		case wantKey, wantKeyOrClose:
			if ch == '}' && want == wantKeyOrClose {
				i++
				if want = c.pop(); len(c.frames) == 0 {
					return nil
				}
				continue
			}
			if ch != '"' {
				return nil
			}
			end, plain, nul, ok := scanJSONString(data, i)
			if !ok {
				return nil
			}
			if err := c.addKey(data[i:end], plain, nul); err != nil {
				return err
			}
			if i = skipJSONSpace(data, end); i == len(data) || data[i] != ':' {
				return nil
			}
			i++
			want = wantValue
		case wantCommaOrClose:
			top := &c.frames[len(c.frames)-1]
			switch {
			case ch == ',' && top.object:
				i++
				want = wantKey
			case ch == ',':
				i++
				want = wantValue
			case ch == '}' && top.object, ch == ']' && !top.object:
				i++
				if want = c.pop(); len(c.frames) == 0 {
					return nil
				}
			default:
				return nil
			}
		default: // wantValue, wantValueOrClose
			if ch == ']' && want == wantValueOrClose {
				i++
				if want = c.pop(); len(c.frames) == 0 {
					return nil
				}
				continue
			}
			if top := &c.frames[len(c.frames)-1]; !top.object {
				top.n++
			}
			switch ch {
			case '{':
				c.frames = append(c.frames, jsonFrame{object: true, first: len(c.keys)})
				i++
				want = wantKeyOrClose
			case '[':
				c.frames = append(c.frames, jsonFrame{first: len(c.keys)})
				i++
				want = wantValueOrClose
			case '"':
				end, _, nul, ok := scanJSONString(data, i)
				if !ok {
					return nil
				}
				if nul {
					path := c.path(len(c.frames))
					if path == "" {
						return fmt.Errorf("%w: job message is a string with a NUL byte", ErrInvalid)
					}
					return fmt.Errorf("%w: job message has a NUL byte in the value of %q", ErrInvalid, path)
				}
				i = end
				want = wantCommaOrClose
			default:
				end, ok := scanJSONLiteral(data, i)
				if !ok {
					return nil
				}
				i = end
				want = wantCommaOrClose
			}
		}
	}
}

// pop ends the innermost container and says what comes next.
func (c *jsonChecker) pop() int {
	f := c.frames[len(c.frames)-1]
	if f.object {
		c.keys = c.keys[:f.first]
	}
	c.frames = c.frames[:len(c.frames)-1]
	return wantCommaOrClose
}

// addKey records the key quoted (with its quotes, as written in data) in the innermost
// object, and refuses it when it holds a NUL or folds like a key the object already has.
// plain says quoted holds neither an escape nor a non-ASCII byte.
func (c *jsonChecker) addKey(quoted []byte, plain, nul bool) error {
	k := jsonKey{key: quoted[1 : len(quoted)-1], ascii: plain}
	if !plain {
		var s string
		if err := json.Unmarshal(quoted, &s); err != nil {
			return nil // scanJSONString checked it; were it wrong, the decode would say so
		}
		k.key = []byte(s)
		k.ascii = isASCII(k.key)
	}
	top := &c.frames[len(c.frames)-1]
	if nul {
		return fmt.Errorf("%w: job message has a key with a NUL byte: %q", ErrInvalid, c.keyPath(k.key))
	}
	open := c.keys[top.first:]
	dup := -1
	if top.folded != nil {
		if j, ok := top.folded[k.folded()]; ok {
			dup = j
		}
	} else {
		for j := range open {
			if sameKey(&open[j], &k) {
				dup = top.first + j
				break
			}
		}
	}
	if dup >= 0 {
		first := string(c.keys[dup].key)
		if first == string(k.key) {
			return fmt.Errorf("%w: job message has the key %q twice", ErrInvalid, c.keyPath(k.key))
		}
		return fmt.Errorf("%w: job message has the key %q twice: %q and %q differ only in case, and are read as one", ErrInvalid, c.keyPath(k.key), first, k.key)
	}
	c.keys = append(c.keys, k)
	switch n := len(c.keys) - top.first; {
	case n == mapKeys+1:
		top.folded = make(map[string]int, 2*mapKeys)
		for j := top.first; j < len(c.keys); j++ {
			top.folded[c.keys[j].folded()] = j
		}
	case n > mapKeys+1:
		top.folded[c.keys[len(c.keys)-1].folded()] = len(c.keys) - 1
	}
	return nil
}

// sameKey says whether a and b are read as one field: equal but for ASCII case when both
// are ASCII, equal once folded otherwise.
func sameKey(a, b *jsonKey) bool {
	if a.ascii && b.ascii {
		if len(a.key) != len(b.key) {
			return false
		}
		for i, x := range a.key {
			y := b.key[i]
			if x != y && upperASCII(x) != upperASCII(y) {
				return false
			}
		}
		return true
	}
	return a.folded() == b.folded()
}

func upperASCII(b byte) byte {
	if 'a' <= b && b <= 'z' {
		return b - ('a' - 'A')
	}
	return b
}

func isASCII(b []byte) bool {
	for _, x := range b {
		if x >= 0x80 {
			return false
		}
	}
	return true
}

// path is the path ("args.tags[1]") of the value begun in frame depth-1: its key in an
// object, its index in an array, after its container's path. The root's path is "".
func (c *jsonChecker) path(depth int) string {
	var b strings.Builder
	for d := 0; d < depth; d++ {
		f := &c.frames[d]
		if f.object {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.Write(c.currentKey(d))
		} else {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(f.n - 1))
			b.WriteByte(']')
		}
	}
	return b.String()
}

// currentKey is the last key read in the object of frame d.
func (c *jsonChecker) currentKey(d int) []byte {
	if d+1 < len(c.frames) {
		return c.keys[c.frames[d+1].first-1].key // the keys of frame d end where d+1's begin
	}
	return c.keys[len(c.keys)-1].key
}

// keyPath is the path of key, about to be added to the innermost object.
func (c *jsonChecker) keyPath(key []byte) string {
	p := c.path(len(c.frames) - 1)
	if p == "" {
		return string(key)
	}
	return p + "." + string(key)
}

func skipJSONSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// scanJSONString reads the string that starts with the quote at data[i] as encoding/json's
// scanner does, and returns the index after its closing quote; plain when it holds no
// escape and no byte past ASCII; nul when it holds a \u0000; ok false on a syntax error.
func scanJSONString(data []byte, i int) (end int, plain, nul, ok bool) {
	plain = true
	for j := i + 1; j < len(data); j++ {
		switch b := data[j]; {
		case b == '"':
			return j + 1, plain, nul, true
		case b == '\\':
			plain = false
			if j+1 == len(data) {
				return 0, false, false, false
			}
			switch data[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+6 > len(data) {
					return 0, false, false, false
				}
				zero := true
				for _, h := range data[j+2 : j+6] {
					if !isHex(h) {
						return 0, false, false, false
					}
					zero = zero && h == '0'
				}
				nul = nul || zero
				j += 5
			default:
				return 0, false, false, false
			}
		case b < 0x20:
			return 0, false, false, false
		case b >= 0x80:
			plain = false
		}
	}
	return 0, false, false, false
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

// scanJSONLiteral reads the number, true, false or null at data[i] and returns the index
// after it; ok false when it is none of them. What follows is the caller's to check.
func scanJSONLiteral(data []byte, i int) (end int, ok bool) {
	for _, lit := range [...]string{"true", "false", "null"} {
		if data[i] == lit[0] {
			if len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit {
				return i + len(lit), true
			}
			return 0, false
		}
	}
	j := i
	if data[j] == '-' {
		j++
	}
	digits := func() bool {
		k := j
		for j < len(data) && '0' <= data[j] && data[j] <= '9' {
			j++
		}
		return j > k
	}
	switch {
	case j < len(data) && data[j] == '0':
		j++
	case !digits():
		return 0, false
	}
	if j < len(data) && data[j] == '.' {
		j++
		if !digits() {
			return 0, false
		}
	}
	if j < len(data) && (data[j] == 'e' || data[j] == 'E') {
		j++
		if j < len(data) && (data[j] == '+' || data[j] == '-') {
			j++
		}
		if !digits() {
			return 0, false
		}
	}
	return j, true
}
