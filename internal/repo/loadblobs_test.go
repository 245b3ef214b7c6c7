package repo_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/faulty"
	"github.com/brr-dev/brr/internal/repo/file"
)

// packOfBlobs saves blobs of a few KiB, some compressible, into a repository on a faulty
// backend, and returns the blobs of the pack that holds most of them, ordered by offset.
func packOfBlobs(t *testing.T) (*repo.Repository, *faulty.Backend, []repo.ID, map[repo.ID][]byte) {
	t.Helper()
	ctx := context.Background()
	be, err := file.Open(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	fb := faulty.New(be)
	r, err := repo.Init(ctx, fb, password, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	content := map[repo.ID][]byte{}
	for i := range 100 { // about 400 KiB: more than one pack of testOpts
		data := randomBytes(uint64(i), 1000+i*97)
		if i%3 == 0 {
			data = compressible(uint64(i), 5000+i*31)
		}
		content[saveBlob(t, r, data)] = data
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	packs := map[repo.ID][]repo.ID{}
	var biggest repo.ID
	for id := range content {
		pb, _ := r.LookupBlob(repo.DataBlob, id)
		packs[pb.Pack] = append(packs[pb.Pack], id)
		if len(packs[pb.Pack]) > len(packs[biggest]) {
			biggest = pb.Pack
		}
	}
	ids := packs[biggest]
	slices.SortFunc(ids, func(a, b repo.ID) int {
		pa, _ := r.LookupBlob(repo.DataBlob, a)
		pb, _ := r.LookupBlob(repo.DataBlob, b)
		return cmp.Compare(pa.Offset, pb.Offset)
	})
	if len(ids) < 10 {
		t.Fatalf("the fullest pack has %d blobs, want at least 10", len(ids))
	}
	return r, fb, ids, content
}

// LoadBlobs reads the blobs it is given, every other blob of a pack, with one Load, and
// hands each one over as LoadBlob would: in the buffer given for it when it fits.
func TestLoadBlobsReadsOneRange(t *testing.T) {
	ctx := context.Background()
	r, fb, all, content := packOfBlobs(t)
	var ids []repo.ID
	for i := 0; i < len(all); i += 2 {
		ids = append(ids, all[i])
	}
	bufs := make([][]byte, len(ids)) // with room for the odd blobs, one byte short for the even
	for i, id := range ids {
		bufs[i] = make([]byte, 10, len(content[id])-1+i%2)
	}
	before := fb.Loads(repo.PackFile)
	got := make([][]byte, len(ids))
	err := r.LoadBlobs(ctx, repo.DataBlob, ids, func(i int) []byte { return bufs[i] }, func(i int, data []byte, err error) {
		if err != nil {
			t.Errorf("blob %d: %v", i, err)
		}
		if got[i] != nil {
			t.Errorf("blob %d handed over twice", i)
		}
		if inBuf := cap(data) > 0 && &data[:1][0] == &bufs[i][:1][0]; inBuf != (i%2 == 1) {
			t.Errorf("blob %d decoded in the buffer given = %v, want %v: it has room for it = %v", i, inBuf, i%2 == 1, i%2 == 1)
		}
		got[i] = data
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := fb.Loads(repo.PackFile) - before; n != 1 {
		t.Errorf("LoadBlobs of %d blobs made %d loads, want 1", len(ids), n)
	}
	for i, id := range ids {
		if !bytes.Equal(got[i], content[id]) {
			t.Errorf("blob %d: %d bytes, want its %d", i, len(got[i]), len(content[id]))
		}
	}
}

// A byte damaged in the middle of the range damages the one blob it falls in: that blob
// fails as LoadBlob fails for it (ErrDamaged, naming the pack and the blob), the others
// of the range are handed over intact.
func TestLoadBlobsDamagedBlobFailsAlone(t *testing.T) {
	ctx := context.Background()
	r, fb, ids, content := packOfBlobs(t)
	first, _ := r.LookupBlob(repo.DataBlob, ids[0])
	last, _ := r.LookupBlob(repo.DataBlob, ids[len(ids)-1])
	middle := first.Offset + (last.Offset+last.Length-first.Offset)/2 // CorruptLoad flips it
	damaged := -1
	for i, id := range ids {
		pb, _ := r.LookupBlob(repo.DataBlob, id)
		if pb.Offset <= middle && middle < pb.Offset+pb.Length {
			damaged = i
		}
	}
	if damaged <= 0 || damaged == len(ids)-1 {
		t.Fatalf("the middle byte is in blob %d of %d, want one inside the range", damaged, len(ids))
	}

	fb.CorruptLoad(repo.PackFile, 0)
	var failed []int
	err := r.LoadBlobs(ctx, repo.DataBlob, ids, nil, func(i int, data []byte, err error) {
		if err != nil {
			failed = append(failed, i)
			if !errors.Is(err, repo.ErrDamaged) || !strings.Contains(err.Error(), ids[i].String()) || !strings.Contains(err.Error(), first.Pack.String()) {
				t.Errorf("blob %d: error %q, want ErrDamaged naming the blob and pack %s", i, err, first.Pack)
			}
			return
		}
		if !bytes.Equal(data, content[ids[i]]) {
			t.Errorf("blob %d: wrong content", i)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if fb.Fired() != 1 {
		t.Fatalf("%d faults fired, want the corrupted load", fb.Fired())
	}
	if !slices.Equal(failed, []int{damaged}) {
		t.Errorf("failed blobs %v, want only %d, the one with the flipped byte", failed, damaged)
	}
}

// LoadBlobs refuses blobs it cannot read with one range, before it loads anything; a
// range that cannot be loaded is an error and nothing is handed over.
func TestLoadBlobsRefuses(t *testing.T) {
	ctx := context.Background()
	r, fb, ids, content := packOfBlobs(t)
	var other repo.ID // a blob of another pack
	first, _ := r.LookupBlob(repo.DataBlob, ids[0])
	for id := range content {
		if pb, _ := r.LookupBlob(repo.DataBlob, id); pb.Pack != first.Pack {
			other = id
		}
	}
	if other.IsZero() {
		t.Fatal("every blob is in one pack")
	}
	var unknown repo.ID
	unknown[0] = 1
	for _, c := range []struct {
		name string
		ids  []repo.ID
		want string
	}{
		{"out of order", []repo.ID{ids[1], ids[0]}, "does not come after"},
		{"the same twice", []repo.ID{ids[0], ids[0]}, "does not come after"},
		{"two packs", []repo.ID{ids[0], other}, "load each pack's blobs apart"},
		{"not in the index", []repo.ID{ids[0], unknown}, "not in index"},
	} {
		before := fb.Loads(repo.PackFile)
		err := r.LoadBlobs(ctx, repo.DataBlob, c.ids, nil, func(i int, _ []byte, _ error) {
			t.Errorf("%s: blob %d handed over", c.name, i)
		})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: LoadBlobs = %v, want an error saying %q", c.name, err, c.want)
		}
		if n := fb.Loads(repo.PackFile) - before; n != 0 {
			t.Errorf("%s: %d loads, want none", c.name, n)
		}
	}

	fb.FailLoad(repo.PackFile, 0, nil)
	err := r.LoadBlobs(ctx, repo.DataBlob, ids, nil, func(i int, _ []byte, _ error) {
		t.Errorf("failed load: blob %d handed over", i)
	})
	if !errors.Is(err, faulty.ErrInjected) || !strings.Contains(err.Error(), first.Pack.String()) {
		t.Errorf("LoadBlobs of a range that fails to load = %v, want the load's error naming pack %s", err, first.Pack)
	}
}
