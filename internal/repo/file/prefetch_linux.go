package file

import (
	"context"

	"golang.org/x/sys/unix"

	"github.com/brr-dev/brr/internal/repo"
)

// Prefetch asks the kernel to read pack h into the page cache in the background
// (POSIX_FADV_WILLNEED), so that the ranges a restore loads next are read from memory
// rather than waited for on disk (repo.Prefetcher). It returns at once; an error is left
// for the Load that follows.
func (b *Backend) Prefetch(_ context.Context, h repo.Handle) {
	if h.Type != repo.PackFile {
		return
	}
	p, err := b.path(h)
	if err != nil {
		return
	}
	go func() {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			return
		}
		_ = unix.Fadvise(fd, 0, 0, unix.FADV_WILLNEED)
		unix.Close(fd)
	}()
}
