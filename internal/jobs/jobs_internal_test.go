package jobs

import (
	"testing"

	"github.com/brr-dev/brr"
)

// A kind added to the root package runs only once it has its line in kinds.
func TestEveryKindRuns(t *testing.T) {
	for _, k := range brr.Kinds {
		if kinds[k] == nil {
			t.Errorf("kind %s has no run function in the kinds table", k)
		}
	}
	if len(kinds) != len(brr.Kinds) {
		t.Errorf("the kinds table has %d kinds, brr.Kinds %d", len(kinds), len(brr.Kinds))
	}
}
