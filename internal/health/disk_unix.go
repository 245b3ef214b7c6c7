//go:build linux || darwin

package health

import (
	"fmt"
	"syscall"
)

// diskUsage returns the space free for unprivileged users and the size of the file
// system that holds path.
func diskUsage(path string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	bsize := uint64(st.Bsize) // int64 on linux, uint32 on darwin
	return uint64(st.Bavail) * bsize, uint64(st.Blocks) * bsize, nil
}
