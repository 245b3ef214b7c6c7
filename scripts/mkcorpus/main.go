// Command mkcorpus writes a benchmark corpus of many small files with distinct content,
// for benchmarks that need a repository of a million blobs (make bench-prune): a small
// file is stored whole, so each file is one blob.
//
//	go run ./scripts/mkcorpus -dir /tmp/corpus -files 1000000
//	go run ./scripts/mkcorpus -dir /tmp/corpus -files 1000000 -rewrite 2 -gen 1
//
// Files are dir-NNNN/file-NNNNNN, -per-dir to a directory. -rewrite K rewrites every K-th
// file (and only those) with the content of generation -gen, so a second backup shares
// the rest with the first.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

func main() {
	dir := flag.String("dir", "", "directory to write into (created)")
	files := flag.Int("files", 1_000_000, "number of files")
	perDir := flag.Int("per-dir", 1000, "files per directory")
	minSize := flag.Int("min", 64, "smallest file, bytes")
	maxSize := flag.Int("max", 256, "largest file, bytes")
	rewrite := flag.Int("rewrite", 1, "write only every K-th file (1: all)")
	gen := flag.Uint64("gen", 0, "generation: changes the content of the files written")
	flag.Parse()
	if *dir == "" || *files < 1 || *perDir < 1 || *minSize < 16 || *maxSize < *minSize || *rewrite < 1 {
		fmt.Fprintln(os.Stderr, "usage: mkcorpus -dir DIR [-files N] [-per-dir N] [-min B] [-max B] [-rewrite K] [-gen G]")
		os.Exit(2)
	}
	if err := write(*dir, *files, *perDir, *minSize, *maxSize, *rewrite, *gen); err != nil {
		fmt.Fprintln(os.Stderr, "mkcorpus:", err)
		os.Exit(1)
	}
}

func write(dir string, files, perDir, minSize, maxSize, rewrite int, gen uint64) error {
	dirs := (files + perDir - 1) / perDir
	work := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for w := 0; w < 2*runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, maxSize)
			for d := range work {
				if err := writeDir(dir, d, perDir, files, minSize, maxSize, rewrite, gen, buf); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for d := 0; d < dirs; d++ {
		work <- d
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func writeDir(root string, d, perDir, files, minSize, maxSize, rewrite int, gen uint64, buf []byte) error {
	dir := filepath.Join(root, fmt.Sprintf("dir-%04d", d))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := d * perDir; i < (d+1)*perDir && i < files; i++ {
		if i%rewrite != 0 {
			continue
		}
		// The content is a function of the file number and the generation: distinct for
		// every file, the same on every run.
		rng := rand.New(rand.NewPCG(uint64(i), gen))
		n := minSize + rng.IntN(maxSize-minSize+1)
		b := buf[:n]
		binary.LittleEndian.PutUint64(b, uint64(i))
		binary.LittleEndian.PutUint64(b[8:], gen)
		for j := 16; j < n; j++ {
			b[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%07d", i)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
