package restorer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/faulty"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/restorer"
	"github.com/brr-dev/brr/internal/testkit"
)

// smallFiles is a backup of many small files in a repository on a faulty backend.
type smallFiles struct {
	r       *repo.Repository
	fb      *faulty.Backend
	repoDir string
	src     string
	sn      *repo.Snapshot
	files   map[string][]byte // rel → content
	packs   int               // pack files saved, trees' included
	ranges  *rangeRecorder    // under fb
}

// rangeRecorder is a backend that records the longest Load of a pack file.
type rangeRecorder struct {
	repo.Backend
	mu      sync.Mutex
	longest int64
}

func (b *rangeRecorder) Load(ctx context.Context, h repo.Handle, offset, length int64) ([]byte, error) {
	if h.Type == repo.PackFile {
		b.mu.Lock()
		b.longest = max(b.longest, length)
		b.mu.Unlock()
	}
	return b.Backend.Load(ctx, h, offset, length)
}

// reset forgets the Loads so far and returns the longest of them.
func (b *rangeRecorder) reset() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.longest
	b.longest = 0
	return n
}

// backupSmallFiles backs up n files of 1 to 8 KiB of random bytes, spread over dirs
// directories, ten in each of their parents: each file is one blob, and they fill a
// few 4 MiB packs.
func backupSmallFiles(t *testing.T, n, dirs int) *smallFiles {
	t.Helper()
	s := &smallFiles{repoDir: filepath.Join(t.TempDir(), "repo"), src: t.TempDir(), files: map[string][]byte{}}
	be, err := file.Open(s.repoDir)
	if err != nil {
		t.Fatal(err)
	}
	s.ranges = &rangeRecorder{Backend: be}
	s.fb = faulty.New(s.ranges)
	s.r, err = repo.Init(context.Background(), s.fb, []byte(testkit.Password), testkit.RepoOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.r.Close() })
	for i := range n {
		rel := filepath.Join(fmt.Sprintf("d%02d", i%dirs/10), fmt.Sprintf("e%d", i%dirs%10), fmt.Sprintf("f%04d", i))
		data := randomBytes(uint64(7000+i), 1<<10+(i*7919)%(7<<10))
		testkit.WriteFile(t, filepath.Join(s.src, rel), data, 0o644)
		s.files[rel] = data
	}
	s.sn = snapshotOf(t, s.r, s.src)
	s.packs = s.fb.Saves(repo.PackFile)
	return s
}

// run restores s into a fresh target, from a plan made before arm is called, with a
// restorer that setup may change; it returns the restorer, the target and the pack loads
// of the restore alone.
func (s *smallFiles) run(t *testing.T, arm func(), setup func(rs *restorer.Restorer, target string)) (rs *restorer.Restorer, target string, loads int) {
	t.Helper()
	ctx := context.Background()
	target = filepath.Join(t.TempDir(), "out")
	if err := restorer.PrepareTarget(target); err != nil {
		t.Fatal(err)
	}
	pl, err := restorer.NewPlan(ctx, s.r, s.sn, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs = restorer.New(s.r, target, restorer.Options{Workers: 2})
	if setup != nil {
		setup(rs, target)
	}
	if arm != nil {
		arm()
	}
	before := s.fb.Loads(repo.PackFile)
	s.ranges.reset()
	if err := rs.Run(ctx, pl); err != nil {
		t.Fatal(err)
	}
	return rs, target, s.fb.Loads(repo.PackFile) - before
}

// The blobs of many small files are read a range of a pack at a time, not one load per
// file, and every file is restored as it was.
func TestRestoreReadsPacksInRanges(t *testing.T) {
	const n = 2000
	s := backupSmallFiles(t, n, 20)
	rs, target, loads := s.run(t, nil, nil)
	if failures := rs.Failures(); len(failures) > 0 {
		t.Fatalf("restore failed for %q", failures)
	}
	sameAsSource(t, s.src, target)
	t.Logf("%d files from %d packs: %d pack loads", n, s.packs, loads)
	// A 4 MiB pack takes two ranges of maxRangeRead (2 MiB) at least, and a few more
	// where the writers ask before the reads ahead reach them.
	if loads > 8*s.packs || loads > n/50 {
		t.Errorf("the restore of %d files from %d packs made %d pack loads, want at most %d", n, s.packs, loads, min(8*s.packs, n/50))
	}
	if peak, _, held, blobs := restorer.CacheStats(rs); peak == 0 || peak > 8<<20 || held != 0 || blobs != 0 {
		t.Errorf("loader cache: peak %d bytes (want some, at most 8 MiB), %d bytes in %d blobs left after the restore (want none)", peak, held, blobs)
	}
	// Each writer and each read ahead holds the range it reads: with the loader's
	// bound, they are what a restore adds to the worker's peak RSS.
	if longest := s.ranges.reset(); longest > 2<<20 || longest < 1<<20 {
		t.Errorf("the longest pack range read was %d bytes, want 1 to 2 MiB (ranges coalesced, within their bound)", longest)
	}
}

// The loader never holds more blobs than its bound, whatever the bound, and holds none
// after the restore, also of files that failed before their blobs were asked for.
func TestLoaderCacheBound(t *testing.T) {
	s := backupSmallFiles(t, 1000, 20)
	for _, limit := range []int64{0, 20 << 10, 256 << 10, 64 << 20} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			// Every tenth file is in the way in the target: it fails, and its blob is
			// never asked for.
			inTheWay := map[string]bool{}
			rs, target, loads := s.run(t, nil, func(rs *restorer.Restorer, target string) {
				restorer.SetCacheLimit(rs, limit)
				for rel := range s.files {
					if rel[len(rel)-1] == '0' {
						inTheWay[rel] = true
						testkit.WriteFile(t, filepath.Join(target, rel), []byte("local"), 0o644)
					}
				}
			})
			peak, peakAll, held, blobs := restorer.CacheStats(rs)
			t.Logf("limit %d: peak %d bytes, %d with free buffers, %d pack loads", limit, peak, peakAll, loads)
			if peak > limit {
				t.Errorf("the loader held %d bytes at its peak, over its bound of %d", peak, limit)
			}
			// Beyond the bound: the blobs it dropped that writers are still writing, a
			// few small ones each here.
			if slack := int64(64 << 10); peakAll > limit+slack {
				t.Errorf("the loader had %d bytes of buffers at its peak, free ones included, over its bound of %d (and %d)", peakAll, limit, slack)
			}
			if limit >= 256<<10 && peak < 20<<10 {
				t.Errorf("the loader held at most %d bytes under a bound of %d: it does not read ahead", peak, limit)
			}
			if held != 0 || blobs != 0 {
				t.Errorf("%d bytes in %d blobs left in the loader after the restore, want none", held, blobs)
			}
			if want := len(s.files) - len(inTheWay); limit == 0 && loads < want {
				t.Errorf("with no room for blobs, %d pack loads for %d files: want one each", loads, want)
			}
			if got, want := len(rs.Failures()), len(inTheWay); got != want {
				t.Errorf("%d failures, want %d: the files in the way", got, want)
			}
			for rel, data := range s.files {
				if inTheWay[rel] {
					data = []byte("local")
				}
				if got, err := os.ReadFile(filepath.Join(target, rel)); !bytes.Equal(got, data) {
					t.Errorf("%s: %d bytes (%v), want %d", rel, len(got), err, len(data))
				}
			}
		})
	}
}

// blobInRange returns a file whose blob is in the middle of the pack holding most of the
// files' blobs, and where that blob is.
func (s *smallFiles) blobInRange(t *testing.T) (string, repo.PackedBlob) {
	t.Helper()
	type placed struct {
		rel string
		pb  repo.PackedBlob
	}
	byPack := map[repo.ID][]placed{}
	var fullest repo.ID
	for rel, data := range s.files {
		pb, ok := s.r.LookupBlob(repo.DataBlob, s.r.BlobID(data))
		if !ok {
			t.Fatalf("%s: its blob is not in the index", rel)
		}
		byPack[pb.Pack] = append(byPack[pb.Pack], placed{rel, pb})
		if len(byPack[pb.Pack]) > len(byPack[fullest]) {
			fullest = pb.Pack
		}
	}
	in := byPack[fullest]
	slices.SortFunc(in, func(a, b placed) int { return int(a.pb.Offset) - int(b.pb.Offset) })
	m := in[len(in)/2]
	return m.rel, m.pb
}

// A blob damaged in storage, in the middle of the range of a pack the restore reads in
// one go, fails the file that needs it, with an error that says the data is damaged and
// where; the blobs around it in the range restore their files.
func TestRestoreDamagedBlobInRange(t *testing.T) {
	s := backupSmallFiles(t, 600, 20)
	victim, pb := s.blobInRange(t)
	rel, err := repo.Handle{Type: repo.PackFile, Name: pb.Pack.String()}.Path()
	if err != nil {
		t.Fatal(err)
	}
	testkit.FlipByte(t, filepath.Join(s.repoDir, filepath.FromSlash(rel)), int64(pb.Offset+pb.Length/2))

	rs, target, loads := s.run(t, nil, nil)
	failures := rs.Failures()
	if len(failures) != 1 || !strings.HasPrefix(failures[0], "/"+filepath.ToSlash(victim)+": ") {
		t.Fatalf("failures %q, want only /%s, whose blob is damaged", failures, victim)
	}
	if msg := failures[0]; !strings.Contains(msg, repo.ErrDamaged.Error()) || !strings.Contains(msg, pb.Pack.String()) {
		t.Errorf("failure %q does not say the data is damaged in pack %s", msg, pb.Pack)
	}
	if !rs.LoadFailed() {
		t.Error("LoadFailed is false after a damaged blob: a replica would not be tried")
	}
	if n, msgs := rs.Rereads(); n != 0 {
		t.Errorf("Rereads = %d, %q; a blob damaged in storage is never read right", n, msgs)
	}
	if loads > len(s.files)/10 {
		t.Errorf("%d pack loads for %d files: the damaged blob's range was not read in one", loads, len(s.files))
	}
	for rel, data := range s.files {
		got, err := os.ReadFile(filepath.Join(target, rel))
		switch {
		case rel == victim && !errors.Is(err, os.ErrNotExist):
			t.Errorf("%s, whose blob is damaged, is in the target (%v)", rel, err)
		case rel != victim && !bytes.Equal(got, data):
			t.Errorf("%s: %d bytes (%v), want its %d", rel, len(got), err, len(data))
		}
	}
	noTempFiles(t, target)
}

// A load that returns damaged bytes once (one bit flipped in the middle of what it
// read, on its way: a coalesced read, or a blob read alone) costs the one blob it hits
// a second read, alone, which is right: every file is restored, and nothing counts as a
// failed load.
func TestRestoreRereadsBlobDamagedOnItsWay(t *testing.T) {
	s := backupSmallFiles(t, 600, 20)
	// With no room for blobs, every blob is read alone.
	for _, limit := range []int64{64 << 20, 0} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			fired := s.fb.Fired()
			rs, target, loads := s.run(t, func() { s.fb.CorruptLoad(repo.PackFile, 0) }, func(rs *restorer.Restorer, _ string) {
				restorer.SetCacheLimit(rs, limit)
			})
			if got := s.fb.Fired() - fired; got != 1 {
				t.Fatalf("%d faults fired, want the corrupted load", got)
			}
			if failures := rs.Failures(); len(failures) > 0 {
				t.Fatalf("restore failed for %q", failures)
			}
			if rs.LoadFailed() {
				t.Error("LoadFailed is true, yet every blob was read")
			}
			if n, msgs := rs.Rereads(); n != 1 || len(msgs) != 1 || !strings.Contains(msgs[0], repo.ErrDamaged.Error()) {
				t.Errorf("Rereads = %d, %q; want the one blob, damaged on its first read", n, msgs)
			}
			t.Logf("%d pack loads", loads)
			sameAsSource(t, s.src, target)
		})
	}
}

// The plan reads the trees of many directories a range of a pack at a time, not one
// load per directory.
func TestPlanReadsTreesInRanges(t *testing.T) {
	const dirs = 400
	s := backupSmallFiles(t, dirs, dirs)
	before := s.fb.Loads(repo.PackFile)
	pl, err := restorer.NewPlan(context.Background(), s.r, s.sn, nil)
	if err != nil {
		t.Fatal(err)
	}
	loads := s.fb.Loads(repo.PackFile) - before
	trees := 1 + dirs/10 + dirs
	t.Logf("%d trees: %d pack loads", trees, loads)
	if got, want := pl.Files(), dirs; got != want {
		t.Errorf("plan of %d files, want %d", got, want)
	}
	if loads > trees/10 {
		t.Errorf("the plan of %d trees made %d pack loads, want at most %d", trees, loads, trees/10)
	}
}

// A tree damaged in storage, read with its neighbours, fails the plan with the error
// that says so: it is read again alone, and its damage is not taken for an empty tree.
func TestPlanDamagedTreeInRange(t *testing.T) {
	const dirs = 400
	s := backupSmallFiles(t, dirs, dirs)
	root, err := s.r.LoadTree(context.Background(), s.sn.Tree)
	if err != nil {
		t.Fatal(err)
	}
	d := root.Find("d20")
	if d == nil {
		t.Fatal("no directory d20 in the snapshot")
	}
	pb, ok := s.r.LookupBlob(repo.TreeBlob, d.Subtree)
	if !ok {
		t.Fatal("the tree of d20 is not in the index")
	}
	rel, err := repo.Handle{Type: repo.PackFile, Name: pb.Pack.String()}.Path()
	if err != nil {
		t.Fatal(err)
	}
	testkit.FlipByte(t, filepath.Join(s.repoDir, filepath.FromSlash(rel)), int64(pb.Offset+pb.Length/2))

	before := s.fb.Loads(repo.PackFile)
	_, err = restorer.NewPlan(context.Background(), s.r, s.sn, nil)
	if !errors.Is(err, repo.ErrDamaged) || !strings.Contains(err.Error(), `"/d20"`) || !strings.Contains(err.Error(), d.Subtree.String()) {
		t.Fatalf("plan with the tree of /d20 damaged: %v, want ErrDamaged naming /d20 and its tree %s", err, d.Subtree.Short())
	}
	if loads := s.fb.Loads(repo.PackFile) - before; loads > dirs/10 {
		t.Errorf("%d pack loads: the damaged tree was not read with its neighbours", loads)
	}
}

// Blobs that many writers need at once, in one file and across files, are each read
// once and shared: a buffer goes back to the pool only when its last writer is done, so
// no file gets the bytes of another blob.
func TestRestoreSharedBlobs(t *testing.T) {
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	src := t.TempDir()
	// 50 copies of each of 20 small files: more than maxCopies, so several writes
	// share each blob.
	for i := range 20 {
		data := randomBytes(uint64(300+i), 2000+100*i)
		for c := range 50 {
			testkit.WriteFile(t, filepath.Join(src, fmt.Sprintf("c%02d", c), fmt.Sprintf("f%02d", i)), data, 0o644)
		}
	}
	// Files that repeat one block: their chunks repeat too, asked for by the tasks of
	// one file at once.
	for i := range 3 {
		block := randomBytes(uint64(400+i), 3<<20)
		testkit.WriteFile(t, filepath.Join(src, fmt.Sprintf("repeated%d", i)), bytes.Repeat(block, 6), 0o644)
	}
	sn := snapshotOf(t, r, src)
	target := filepath.Join(t.TempDir(), "out")
	rs, err := restore(context.Background(), t, r, sn, target)
	if err != nil {
		t.Fatal(err)
	}
	if failures := rs.Failures(); len(failures) > 0 {
		t.Fatalf("restore failed for %q", failures)
	}
	sameAsSource(t, src, target)
	if _, _, held, blobs := restorer.CacheStats(rs); held != 0 || blobs != 0 {
		t.Errorf("%d bytes in %d blobs left in the loader after the restore, want none", held, blobs)
	}
}

// hinting is a backend that records the packs named to it as coming next (Prefetch) and
// the first Load of each, and hands both to the backend below.
type hinting struct {
	repo.Backend
	mu       sync.Mutex
	on       bool
	hinted   map[string]int // pack → times named
	unhinted []string       // packs loaded before they were named
	loaded   map[string]bool
}

func (h *hinting) Prefetch(ctx context.Context, hd repo.Handle) {
	h.mu.Lock()
	if h.on {
		h.hinted[hd.Name]++
	}
	h.mu.Unlock()
	if p, ok := h.Backend.(repo.Prefetcher); ok {
		p.Prefetch(ctx, hd)
	}
}

func (h *hinting) Load(ctx context.Context, hd repo.Handle, offset, length int64) ([]byte, error) {
	h.mu.Lock()
	if h.on && hd.Type == repo.PackFile && !h.loaded[hd.Name] {
		h.loaded[hd.Name] = true
		if h.hinted[hd.Name] == 0 {
			h.unhinted = append(h.unhinted, hd.Name)
		}
	}
	h.mu.Unlock()
	return h.Backend.Load(ctx, hd, offset, length)
}

// A restore names each pack it reads to the backend (repo.Prefetcher) once, before its
// first load of it: the next packs are on their way while the writers write this one's
// blobs.
func TestRestorePrefetchesPacksInOrder(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	for i := range 600 {
		testkit.WriteFile(t, filepath.Join(src, fmt.Sprintf("d%d", i%7), fmt.Sprintf("f%03d", i)), randomBytes(uint64(300+i), 4<<10+i*97), 0o644)
	}
	testkit.WriteFile(t, filepath.Join(src, "big"), randomBytes(99, 9<<20), 0o644)
	be, err := file.Open(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	h := &hinting{Backend: be, hinted: map[string]int{}, loaded: map[string]bool{}}
	r, err := repo.Init(ctx, h, []byte(testkit.Password), testkit.RepoOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sn := snapshotOf(t, r, src)
	pl, err := restorer.NewPlan(ctx, r, sn, nil)
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "out")
	if err := restorer.PrepareTarget(target); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.on = true
	h.mu.Unlock()
	rs := restorer.New(r, target, restorer.Options{Workers: 2})
	if err := rs.Run(ctx, pl); err != nil {
		t.Fatal(err)
	}
	if f := rs.Failures(); len(f) > 0 {
		t.Fatalf("restore failed for %q", f)
	}
	sameAsSource(t, src, target)
	h.mu.Lock()
	defer h.mu.Unlock()
	t.Logf("%d packs loaded, %d named", len(h.loaded), len(h.hinted))
	if len(h.loaded) < 3 {
		t.Fatalf("the restore loaded %d packs; the test wants several", len(h.loaded))
	}
	if len(h.unhinted) > 0 {
		t.Errorf("packs loaded before the restore named them to the backend: %q", h.unhinted)
	}
	for p, n := range h.hinted {
		if n != 1 {
			t.Errorf("pack %s named %d times, want once", p[:8], n)
		}
		if !h.loaded[p] {
			t.Errorf("pack %s named but never loaded", p[:8])
		}
	}
}
