package archiver

import (
	"math/bits"
	"runtime"
	"sync"

	"github.com/brr-dev/brr/internal/repo"
)

// Bounds of the backup pipeline. Directories are listed by dirListers goroutines and files
// read by at least fileWorkers, because on a cold cache every stat and every small file
// waits for the disk, and the disk serves many at once. Files up to repo.MinChunkSize are
// one chunk: they are read whole into a buffer of their size, so the Chunker's window
// (2×MaxChunkSize) is needed only for larger files, and at most bigFiles of those are
// chunked at once. Their chunks travel to the savers in at most bigChunkBufs buffers of
// MaxChunkSize, and at most GOMAXPROCS blobs are compressed and encrypted at once (each
// SaveBlob holds two more buffers of up to MaxChunkSize). These bounds hold for all the
// archivers that share one Limits: that, not the number of jobs or workers, bounds what
// backups hold in memory, about 40 MiB here.
const (
	fileWorkers  = 8
	dirListers   = 8
	bigFiles     = 2
	bigChunkBufs = 4
)

// Limits are the bounds that the archivers given the same Limits share: an Engine makes
// one for all its backups.
type Limits struct {
	bigFiles chan struct{} // a token per file being chunked
	bigBufs  chan struct{} // a token per chunk buffer in use
	saves    chan struct{} // a token per SaveBlob running
}

// NewLimits returns the bounds of backups that may use workers goroutines for the work
// bound by the CPU (chunking files, compressing blobs).
func NewLimits(workers int) *Limits {
	return &Limits{
		bigFiles: make(chan struct{}, max(1, min(workers, bigFiles))),
		bigBufs:  make(chan struct{}, bigChunkBufs),
		saves:    make(chan struct{}, max(1, min(workers, runtime.GOMAXPROCS(0)))),
	}
}

// chunkBufs are the buffers of MaxChunkSize that chunks of large files are copied to;
// Limits.bigBufs bounds how many are in use, and idle ones go at the next GCs.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, repo.MaxChunkSize); return &b }}

func (a *Archiver) putChunkBuf(bp *[]byte) {
	chunkBufs.Put(bp)
	<-a.limits.bigBufs
}

// Buffers for whole small files, by power-of-two size class from 1 KiB up to the first
// class above MinChunkSize, so that a file of exactly MinChunkSize bytes can be told from
// a larger one in one buffer.
const minSmallShift = 10

var smallPools [20]sync.Pool

func smallClass(n int) int {
	if n <= 1<<minSmallShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minSmallShift
}

func getSmall(n int) *[]byte {
	c := smallClass(n)
	if bp, ok := smallPools[c].Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 1<<(c+minSmallShift))
	return &b
}

func putSmall(bp *[]byte) {
	smallPools[smallClass(cap(*bp))].Put(bp)
}
