package natstest

import "testing"

// TestFreePortNeverTheSameTwice: two addresses a test asks for at once (a worker's NATS
// and HTTP listeners) must differ; the kernel may hand back a port it just freed, and a
// CI run failed on it ("--listen 127.0.0.1:44867 --http 127.0.0.1:44867").
func TestFreePortNeverTheSameTwice(t *testing.T) {
	seen := make(map[int]bool)
	for range 3000 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("FreePort returned port %d twice in %d calls", p, len(seen)+1)
		}
		seen[p] = true
	}
}
