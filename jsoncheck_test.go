package brr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// checkJSONTokens is the checkJSON this package had until the single-pass one in
// jsoncheck.go replaced it (issue 14 item 6), kept as the oracle the new one is compared
// against. It walks the tokens of the JSON value in data and refuses, with an error wrapping
// ErrInvalid that names the key, what encoding/json would let through in silence:
//
//   - a key that appears twice in one object, at any depth. encoding/json keeps the last,
//     while another reader (a gateway, an audit log) may keep the first, so one message
//     would say two things. Keys that differ only in case count as the same key, since
//     encoding/json matches both to one field.
//   - a NUL byte in any string, key or value: C code and file systems end the string
//     there, so a path or tag would be read as something shorter than what was checked.
//
// A syntax error ends the walk without an error: the decode that follows reports it.
func checkJSONTokens(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // a number is not converted, so none is refused here
	// frame is an object or array being read: its path ("args.paths"), and for an
	// object the keys seen (folded as encoding/json folds them, to the key as written)
	// and the path of the value that comes next, for an array the next index.
	type frame struct {
		path    string
		object  bool
		keys    map[string]string
		wantKey bool
		next    string
		index   int
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			if stack = stack[:len(stack)-1]; len(stack) == 0 {
				return nil // the end of the value; trailing data is the decode's to report
			}
			continue
		}
		if top != nil && top.wantKey {
			key, _ := tok.(string)
			path := key
			if top.path != "" {
				path = top.path + "." + key
			}
			if strings.ContainsRune(key, 0) {
				return fmt.Errorf("%w: job message has a key with a NUL byte: %q", ErrInvalid, path)
			}
			folded := foldKey(key)
			if first, dup := top.keys[folded]; dup {
				if first == key {
					return fmt.Errorf("%w: job message has the key %q twice", ErrInvalid, path)
				}
				return fmt.Errorf("%w: job message has the key %q twice: %q and %q differ only in case, and are read as one", ErrInvalid, path, first, key)
			}
			top.keys[folded] = key
			top.next, top.wantKey = path, false
			continue
		}
		// A value: where it sits, then what it is.
		var path string
		switch {
		case top == nil:
		case top.object:
			path, top.wantKey = top.next, true
		default:
			path = fmt.Sprintf("%s[%d]", top.path, top.index)
			top.index++
		}
		switch v := tok.(type) {
		case json.Delim:
			f := &frame{path: path}
			if v == '{' {
				f.object, f.wantKey, f.keys = true, true, map[string]string{}
			}
			stack = append(stack, f)
			continue
		case string:
			if strings.ContainsRune(v, 0) {
				if path == "" {
					return fmt.Errorf("%w: job message is a string with a NUL byte", ErrInvalid)
				}
				return fmt.Errorf("%w: job message has a NUL byte in the value of %q", ErrInvalid, path)
			}
		}
		if top == nil {
			return nil // a value that is not an object or array: the decode refuses it
		}
	}
}

// sameCheck fails t unless checkJSON and the oracle agree on data: both nil, or the same
// error.
func sameCheck(t *testing.T, data []byte) {
	t.Helper()
	got, want := checkJSON(data), checkJSONTokens(data)
	if (got == nil) != (want == nil) || got != nil && got.Error() != want.Error() {
		t.Fatalf("checkJSON(%q)\n got  %v\n want %v (the token walk)", data, got, want)
	}
	if got != nil && !errors.Is(got, ErrInvalid) {
		t.Fatalf("checkJSON(%q) = %v, not ErrInvalid", data, got)
	}
}

// checkCases are inputs at the edges of what checkJSON refuses: duplicates by case, by
// escape and by Unicode folding, NULs in keys and values at every kind of path, and syntax
// errors before and after a duplicate (before: the walk stops and refuses nothing).
var checkCases = []string{
	``, ` `, `null`, `1`, `"a"`, `"\u0000"`, ` "a\u0000b" x`, `"\u0000`, `"\\u0000"`, `]`, `}`, `x`,
	`{}`, `[]`, `{} {"a":1,"a":1}`, `[] x`, `{"a":1,"a":2}`, `{"a":1,"A":2}`, `{"a":1, "b":2, "a":3}`,
	`{"a":{"b":1},"c":{"b":1}}`, `{"a":{"b":1,"b":1}}`, `[{"a":1},{"a":1}]`, `[{"a":1},{"a":1,"a":1}]`,
	`{"a":[1,{"b":[{"c":1,"C":1}]}]}`, `{"a":1,"\u0061":2}`, `{"\u0041":1,"a":2}`, `{"a\/":1,"a/":2}`,
	`{"kind":1,"\u212aind":2}`, "{\"kind\":1,\"\u212aind\":2}", "{\"s\":1,\"\u017f\":2}", "{\"\u0130d\":1,\"id\":2}",
	"{\"\xff\":1,\"\xfe\":2}", "{\"\xff\":1,\"\ufffd\":2}", `{"\ud800":1,"\ufffd":2}`, `{"\ud83d\ude00":1,"\ud83d\ude00":2}`,
	`{"":1,"":2}`, `{"":"\u0000"}`, `{"":{"":"\u0000"}}`, `{"":[{"":"\u0000"}]}`, `[["\u0000"]]`, `["a","\u0000"]`,
	`{"a":"\u0000"}`, `{"a\u0000":1}`, `{"a":{"b\u0000":1}}`, `[{"\u0000":1}]`, `{"a":"\ud800\u0000"}`, `{"a":"x\\u0000"}`,
	`{"a":1,"a"}`, `{"a":1,"a":}`, `{"a":1,"a"`, `{"a":1 "a":2}`, `{"a":1,,"a":2}`, `{"a":01,"a":2}`, `{"a":1.,"a":2}`,
	`{"a":-,"a":2}`, `{"a":1e,"a":2}`, `{"a":1e+5,"a":2}`, `{"a":-0.5E-3,"a":2}`, `{"a":tru,"a":2}`, `{"a":truex,"a":2}`,
	`{"a":true,"a":2}`, `{"a":null,"a":false}`, `{"a":nul`, `{"a":1}}`, `{"a":1]`, `[1}`, `[1,]`, `{"a":1,}`, `{,"a":1}`,
	`[1 2]`, `[1,2 "\u0000"]`, `["\u0000" 1]`, `{"a" "b"}`, `{1:2}`, `{"a":"\x"}`, `{"a":"\u00g0","a":1}`, "{\"a\":\"\t\",\"a\":1}",
	"{\"a\":\"\x7f\",\"a\":1}", "\t{ \"a\" :\r\n1 , \"a\" : 2 }", "{\"a\":1,\v\"a\":2}", `{"a":[1,2,{"b":1}],"a":[]}`, `[[[[[{"a":1,"a":1}]]]]]`,
	`{"a":"\u0000","a":1}`, `{"a":1,"a\u0000":1}`, `{"a":{},"b":[],"c":{},"b":1}`, `{"a":1,"b":{"a":1},"a":2}`,
}

func TestCheckJSONSameAsTokenWalk(t *testing.T) {
	for _, c := range checkCases {
		sameCheck(t, []byte(c))
	}
	// Many keys (past the map switch), deep nesting, and every prefix of each case.
	var b strings.Builder
	b.WriteString(`{`)
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, `"k%d":%d,`, i, i)
	}
	many := b.String()
	for _, tail := range []string{`"K57":1}`, `"k99x":1}`, `"\u006b3":1}`, `"\u212a3":1}`, `"x":"\u0000"}`, `"x":1}`} {
		sameCheck(t, []byte(many+tail))
	}
	deep := strings.Repeat(`[{"a":`, 3000) + `{"b":1,"B":2}`
	sameCheck(t, []byte(deep))
	sameCheck(t, []byte(strings.Repeat(`[`, 5000)+`"\u0000"`))
	for _, c := range checkCases {
		for n := range len(c) {
			sameCheck(t, []byte(c[:n]))
		}
	}
}

// FuzzCheckJSON compares checkJSON with the token walk it replaced on any input.
func FuzzCheckJSON(f *testing.F) {
	for _, c := range checkCases {
		f.Add([]byte(c))
	}
	f.Add([]byte(benchJob))
	f.Fuzz(func(t *testing.T, data []byte) {
		sameCheck(t, data)
	})
}

const benchJob = `{"v":1,"id":"0193a5c2e4b07d1f9a2c3b4d5e6f7a8b","kind":"ping","pool":"default","created":"2026-12-07T06:55:04.123456789Z","by":"bench@host","args":{"delay_ms":0}}`

const benchBackupJob = `{"v":1,"id":"j1","kind":"backup","pool":"default","created":"2026-11-26T12:00:00Z","by":"cron@host","args":{"path":"/srv/app","repo":"local","tags":["nightly","app","db"],"excludes":["*.tmp","cache/","node_modules/"]}}`

// BenchmarkCheckJSON measures the duplicate-key and NUL walk alone, new and old, on a
// ping job and a backup job; BenchmarkDecodeJob the whole decode a worker does per job.
// "deep" is 21,000 nested arrays, 42 KB (under MaxJobSize): the token walk built the path
// of every level, quadratic in the depth.
func BenchmarkCheckJSON(b *testing.B) {
	deep := strings.Repeat("[", 21000) + strings.Repeat("]", 21000)
	for _, m := range []struct{ name, msg string }{{"ping", benchJob}, {"backup", benchBackupJob}, {"deep", deep}} {
		for _, impl := range []struct {
			name  string
			check func([]byte) error
		}{{"single-pass", checkJSON}, {"token-walk", checkJSONTokens}} {
			b.Run(m.name+"/"+impl.name, func(b *testing.B) {
				data := []byte(m.msg)
				b.ReportAllocs()
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					if err := impl.check(data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkDecodeJob(b *testing.B) {
	for _, m := range []struct{ name, msg string }{{"ping", benchJob}, {"backup", benchBackupJob}} {
		b.Run(m.name, func(b *testing.B) {
			data := []byte(m.msg)
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := DecodeJob(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A job message nested as deep as MaxJobSize allows is refused or decoded for a bounded
// cost: the token walk built a path at every level, so 21,000 nested arrays (42 KB) cost
// a worker 718 MB of garbage and 2 s of CPU each, a message anyone allowed to publish a
// job could send over and over. Bytes allocated, not time, so the test cannot flake.
func TestDeepJobMessageIsCheap(t *testing.T) {
	depth := (MaxJobSize - 100) / 2
	msg := []byte(`{"v":1,"id":"deep","kind":"ping","args":{"x":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}}`)
	if len(msg) > MaxJobSize {
		t.Fatalf("message of %d bytes, over MaxJobSize", len(msg))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _ = DecodeJob(msg)
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
		t.Errorf("decoding a %d KB job message %d deep allocated %d MB, want under 64 MB", len(msg)>>10, depth, got>>20)
	}
}
