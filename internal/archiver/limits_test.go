package archiver

import "testing"

func TestSmallBufferClasses(t *testing.T) {
	for _, n := range []int{0, 1, 1024, 1025, 4096, 100 << 10, 256 << 10, 256<<10 + 1} {
		bp := getSmall(n)
		if c := cap(*bp); c < n || (n > 1024 && c >= 2*n) {
			t.Errorf("getSmall(%d): cap %d", n, c)
		}
		putSmall(bp)
	}
}
