//go:build unix

package jobs

import "syscall"

// noFollow makes opening a password file fail when it is a symlink.
const noFollow = syscall.O_NOFOLLOW
