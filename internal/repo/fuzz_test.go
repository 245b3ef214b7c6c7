package repo

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fuzzRepo is a repository object with keys but no backend, enough to decrypt.
func fuzzRepo(t testing.TB) *Repository {
	t.Helper()
	mk := &masterKey{EncKey: [32]byte{1, 2, 3}, IDKey: [32]byte{4, 5, 6}}
	r, err := newRepository(nil, mk, &configObject{V: formatVersion, ID: "fuzz", ChunkerSeed: make([]byte, 32)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.stopWriter() }) // it has no backend to close
	return r
}

func seedTree() []byte {
	b, _ := EncodeTree(&Tree{Nodes: []*Node{
		{Name: "a\n\xff", Type: NodeFile, Mode: 0o644, ModTime: time.Unix(1, 2), Size: 3, Content: []ID{{1}}},
		{Name: "d", Type: NodeDir, Subtree: ID{2}},
		{Name: "l", Type: NodeSymlink, LinkTarget: "x"},
	}})
	return b
}

func seedIndex() []byte {
	return encodeIndex([]indexPack{{ID: ID{9}, Size: 1000, Entries: []packEntry{
		{Type: DataBlob, ID: ID{1}, Offset: 0, Length: 100, RawLength: 80},
		{Type: TreeBlob, ID: ID{2}, Offset: 100, Length: 200, RawLength: 300},
	}}})
}

func seedPackHeader() []byte {
	return encodePackHeader([]packEntry{{Type: DataBlob, ID: ID{1}, Offset: 0, Length: 100, RawLength: 80}, {Type: DataBlob, ID: ID{3}, Offset: 100, Length: 50, RawLength: 22}})
}

func seedSnapshot() []byte {
	return []byte(`{"v":1,"time":"2025-01-01T00:00:00Z","host":"h","source":"/srv","tags":["x"],"parent":"` + ID{7}.String() + `","tree":"` + ID{8}.String() + `","job_id":"j","files":1}`)
}

func seedKey(t testing.TB) []byte {
	b, err := sealKey(&masterKey{}, []byte("pw"), KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}, KeyMeta{}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzDecodeTree(f *testing.F) {
	f.Add(seedTree())
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := DecodeTree(data)
		if err != nil {
			return
		}
		// What decodes must encode back to the same bytes: the encoding is canonical.
		again, err := EncodeTree(tr)
		if err != nil {
			t.Fatalf("decoded tree does not encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func FuzzDecodePackHeader(f *testing.F) {
	f.Add(seedPackHeader())
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := decodePackHeader(data)
		if err != nil {
			return
		}
		if !bytes.Equal(encodePackHeader(entries), data) {
			t.Fatal("re-encoding differs")
		}
	})
}

func FuzzDecodeIndex(f *testing.F) {
	f.Add(seedIndex())
	f.Fuzz(func(t *testing.T, data []byte) {
		packs, err := decodeIndex(data)
		if err != nil {
			return
		}
		again, err := decodeIndex(encodeIndex(packs))
		if err != nil || len(again) != len(packs) {
			t.Fatalf("re-decoding: %v", err)
		}
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	f.Add(seedSnapshot())
	f.Fuzz(func(t *testing.T, data []byte) {
		sn, err := decodeSnapshot(data)
		if err == nil && sn.Tree.IsZero() {
			t.Fatal("snapshot without tree accepted")
		}
	})
}

func FuzzDecodeKey(f *testing.F) {
	f.Add(seedKey(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := decodeKey(data)
		if err != nil {
			return
		}
		if err := k.Params.validate(); err != nil {
			t.Fatalf("invalid params accepted: %v", err)
		}
	})
}

// fuzzHandle is the name the fuzzed objects are sealed under and opened as.
var fuzzHandle = Handle{Type: SnapshotFile, Name: ID{7}.String()}

func FuzzDecrypt(f *testing.F) {
	r := fuzzRepo(f)
	f.Add(r.sealObject(fuzzHandle, seedSnapshot()))
	f.Add(r.sealObject(fuzzHandle, bytes.Repeat([]byte("compress me "), 100)))
	f.Fuzz(func(t *testing.T, data []byte) {
		plain, _, err := r.openObject(fuzzHandle, bytes.Clone(data))
		if err != nil {
			return
		}
		// Only what this key sealed opens; it must round-trip.
		if _, _, err := r.openObject(fuzzHandle, r.sealObject(fuzzHandle, plain)); err != nil {
			t.Fatalf("re-sealed object does not open: %v", err)
		}
	})
}

// TestWriteFuzzSeeds writes the seed corpora under testdata/fuzz when BRR_WRITE_FUZZ_SEEDS
// is set; run it after changing an encoding.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("BRR_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set BRR_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	r := fuzzRepo(t)
	seeds := map[string][]byte{
		"FuzzDecodeTree":       seedTree(),
		"FuzzDecodePackHeader": seedPackHeader(),
		"FuzzDecodeIndex":      seedIndex(),
		"FuzzDecodeSnapshot":   seedSnapshot(),
		"FuzzDecodeKey":        seedKey(t),
		"FuzzDecrypt":          r.sealObject(fuzzHandle, bytes.Repeat([]byte("compress me "), 100)),
	}
	for name, data := range seeds {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		content := "go test fuzz v1\n[]byte(" + quoteBytes(data) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, "seed"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func quoteBytes(b []byte) string {
	var s bytes.Buffer
	s.WriteByte('"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			s.WriteByte('\\')
			s.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			s.WriteByte(c)
		default:
			s.WriteString(`\x`)
			s.WriteByte("0123456789abcdef"[c>>4])
			s.WriteByte("0123456789abcdef"[c&15])
		}
	}
	s.WriteByte('"')
	return s.String()
}
