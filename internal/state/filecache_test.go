package state

import (
	"crypto/rand"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func randomFiles(t testing.TB, n int) map[string]CachedFile {
	files := make(map[string]CachedFile, n)
	for i := 0; i < n; i++ {
		f := CachedFile{
			Size: int64(i) * 4097, ModTimeNS: time.Now().UnixNano() - int64(i), ChangeTimeNS: -int64(i),
			Inode: uint64(1<<40 + i), Content: make([][32]byte, i%4),
		}
		for j := range f.Content {
			rand.Read(f.Content[j][:])
		}
		if i%4 == 0 {
			f.Content = nil
		}
		files[fmt.Sprintf("dir%03d/file-%06d.txt", i%100, i)] = f
	}
	return files
}

func TestFileCacheRoundTrip(t *testing.T) {
	db := open(t)
	const scope = "3f2a9c:/srv/app"
	if got, err := db.LoadFileCache(scope); err != nil || len(got) != 0 {
		t.Fatalf("LoadFileCache of an unknown scope = %v, %v; want empty", got, err)
	}
	files := randomFiles(t, 500)
	if err := db.UpdateFileCache(scope, files, nil); err != nil {
		t.Fatal(err)
	}
	got, err := db.LoadFileCache(scope)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, files) {
		t.Fatalf("LoadFileCache returned %d entries that differ from the %d stored", len(got), len(files))
	}

	// Update one, delete two, add one; another scope is untouched.
	other := map[string]CachedFile{"x": {Size: 7, Inode: 1}}
	if err := db.UpdateFileCache("3f2a9c:/srv/other", other, nil); err != nil {
		t.Fatal(err)
	}
	changed := files["dir001/file-000001.txt"]
	changed.Size = 12345
	changed.Content = [][32]byte{{1, 2, 3}}
	put := map[string]CachedFile{"dir001/file-000001.txt": changed, "new/file": {Size: 1, Content: [][32]byte{{9}}}}
	del := []string{"dir002/file-000002.txt", "dir003/file-000003.txt", "never/there"}
	if err := db.UpdateFileCache(scope, put, del); err != nil {
		t.Fatal(err)
	}
	for p, f := range put {
		files[p] = f
	}
	delete(files, del[0])
	delete(files, del[1])
	db = reopen(t, db)
	got, err = db.LoadFileCache(scope)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, files) {
		t.Fatalf("LoadFileCache after update = %d entries, want %d, or contents differ", len(got), len(files))
	}
	if got, _ := db.LoadFileCache("3f2a9c:/srv/other"); !reflect.DeepEqual(got, other) {
		t.Fatalf("other scope = %v, want %v", got, other)
	}
	if err := db.DropFileCache(scope); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.LoadFileCache(scope); len(got) != 0 {
		t.Fatalf("LoadFileCache after Drop = %d entries", len(got))
	}
}

func TestDecodeCachedFileErrors(t *testing.T) {
	good := encodeCachedFile(nil, CachedFile{Size: 10, Inode: 5, Content: [][32]byte{{1}, {2}}})
	for n := 0; n < len(good); n++ {
		if _, err := decodeCachedFile(good[:n]); err == nil {
			t.Fatalf("decode of %d of %d bytes succeeded", n, len(good))
		}
	}
	if _, err := decodeCachedFile(append(good, 0)); err == nil {
		t.Fatal("decode with a trailing byte succeeded")
	}
}

func FuzzDecodeCachedFile(f *testing.F) {
	f.Add(encodeCachedFile(nil, CachedFile{Size: 10, ModTimeNS: -3, Inode: 5, Content: [][32]byte{{1}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		cf, err := decodeCachedFile(b)
		if err != nil {
			return
		}
		if cf.Size < 0 {
			return // sizes past int64 do not come from encodeCachedFile
		}
		cf2, err := decodeCachedFile(encodeCachedFile(nil, cf))
		if err != nil || !reflect.DeepEqual(cf, cf2) {
			t.Fatalf("round trip of %+v = %+v, %v", cf, cf2, err)
		}
	})
}

// BenchmarkLoadFileCache loads the cache of a 20k-file source.
func BenchmarkLoadFileCache(b *testing.B) {
	db := open(b)
	files := randomFiles(b, 20000)
	if err := db.UpdateFileCache("s", files, nil); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got, err := db.LoadFileCache("s")
		if err != nil || len(got) != len(files) {
			b.Fatalf("LoadFileCache = %d, %v", len(got), err)
		}
	}
}

// TestFileCacheManyEntries updates more entries than one transaction takes, with
// deletions on both sides of a batch boundary: every put lands, every delete goes.
func TestFileCacheManyEntries(t *testing.T) {
	db := open(t)
	const scope = "3f2a9c:/srv/many"
	files := randomFiles(t, 2*fileCacheBatch+7)
	if err := db.UpdateFileCache(scope, files, nil); err != nil {
		t.Fatal(err)
	}
	var del []string
	put := map[string]CachedFile{}
	i := 0
	for p, f := range files {
		switch {
		case i%3 == 0:
			del = append(del, p)
		case i%3 == 1:
			f.Size++
			put[p] = f
		}
		i++
	}
	put["zz/new"] = CachedFile{Size: 1}
	if err := db.UpdateFileCache(scope, put, del); err != nil {
		t.Fatal(err)
	}
	for _, p := range del {
		delete(files, p)
	}
	for p, f := range put {
		files[p] = f
	}
	got, err := db.LoadFileCache(scope)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, files) {
		t.Fatalf("LoadFileCache = %d entries, want %d, or contents differ", len(got), len(files))
	}
}
