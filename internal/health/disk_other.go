//go:build !(linux || darwin)

package health

import (
	"errors"
	"runtime"
)

// diskUsage is not measured on this system: heartbeats carry no disk figures and the
// disk check skips the worker.
func diskUsage(string) (free, total uint64, err error) {
	return 0, 0, errors.New("disk usage is not measured on " + runtime.GOOS)
}
