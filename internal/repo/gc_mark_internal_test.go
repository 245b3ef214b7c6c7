package repo

import (
	"math/rand/v2"
	"testing"
)

// TestUsedSet adds data blobs, many of them several times (as trees naming the same blobs
// do), past several compactions, and checks has against a Go map, and that duplicates do
// not pile up.
func TestUsedSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	u := &usedSet{trees: make(map[ID]struct{})}
	want := make(map[ID]bool)
	var ids []ID
	for i := 0; i < 5*minCompact; i++ {
		var id ID
		if len(ids) > 0 && rng.IntN(2) == 0 {
			id = ids[rng.IntN(len(ids))]
		} else {
			for j := range id {
				id[j] = byte(rng.Uint32())
			}
			ids = append(ids, id)
		}
		u.addData(id)
		want[id] = true
		if len(u.data) > 2*len(want)+minCompact {
			t.Fatalf("%d keys kept for %d blobs: duplicates pile up", len(u.data), len(want))
		}
	}
	tree := ID{1, 2, 3}
	u.trees[tree] = struct{}{}
	u.seal()
	if len(u.data) != len(want) {
		t.Fatalf("%d keys after seal, want %d", len(u.data), len(want))
	}
	for id := range want {
		if !u.has(blobKey{id, DataBlob}) {
			t.Fatalf("blob %s used, has says no", id.Short())
		}
	}
	for range 1000 {
		var id ID
		for j := range id {
			id[j] = byte(rng.Uint32())
		}
		if u.has(blobKey{id, DataBlob}) != want[id] {
			t.Fatalf("blob %s: has says %v", id.Short(), !want[id])
		}
	}
	if !u.has(blobKey{tree, TreeBlob}) || u.has(blobKey{ids[0], TreeBlob}) {
		t.Fatal("trees: has is wrong")
	}
}
