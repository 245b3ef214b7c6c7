package fsio

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// ModeOf converts a stat mode to io/fs mode bits, the way package os does: a snapshot
// records these, as os.Lstat gives them.
func ModeOf(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// Perm keeps the permission and setuid/setgid/sticky bits of the io/fs mode m: what
// chmod sets.
func Perm(m uint32) fs.FileMode {
	return fs.FileMode(m) & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// UnixPerm is Perm(m) in the bits of chmod(2).
func UnixPerm(m uint32) uint32 {
	mode := fs.FileMode(m)
	b := uint32(mode & fs.ModePerm)
	if mode&fs.ModeSetuid != 0 {
		b |= unix.S_ISUID
	}
	if mode&fs.ModeSetgid != 0 {
		b |= unix.S_ISGID
	}
	if mode&fs.ModeSticky != 0 {
		b |= unix.S_ISVTX
	}
	return b
}

// Kind names the type of an entry with mode m in a message: "file", "directory",
// "symlink", "fifo", "socket"…
func Kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file (" + m.String() + ")"
}
