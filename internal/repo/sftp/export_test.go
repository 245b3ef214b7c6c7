package sftp

import (
	"testing"
	"time"
)

// Dials returns how many connections b has made, the first included.
func (b *Backend) Dials() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dials
}

// SetKeepalive makes connections dialled from now until the test ends check the server
// every d.
func SetKeepalive(t testing.TB, d time.Duration) {
	old := keepaliveEvery
	keepaliveEvery = d
	t.Cleanup(func() { keepaliveEvery = old })
}
