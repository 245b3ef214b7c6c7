// Package fsio is the low-level file layer that backups, restores and drills share: the
// few system calls they make on files and directories, retried where a signal can
// interrupt them (EINTR), so that no caller sees a spurious failure; reading a directory
// once for both its names and a descriptor to stat them by; opening a file to read it
// without following a symlink or touching its access time; reaching every entry below a
// directory relative to directory descriptors, never through a symlink, however the tree
// changes meanwhile (Root); and the conversions between
// the mode bits of stat, chmod and io/fs. It knows nothing of repositories or snapshots:
// the archiver and the restorer each build on it, and neither on the other.
package fsio

import "golang.org/x/sys/unix"

// IgnoringEINTR calls fn until it returns anything but EINTR.
func IgnoringEINTR(fn func() error) error {
	for {
		err := fn()
		if err != unix.EINTR {
			return err
		}
	}
}
