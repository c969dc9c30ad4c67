package idgen

import (
	"testing"
	"time"
)

func TestIDsUniqueAcrossMembersAndRestarts(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	seen := map[uint64]bool{}
	gens := []*Generator{New(1, now), New(2, now), New(1, now.Add(time.Second))}
	for _, g := range gens {
		for i := 0; i < 10000; i++ {
			id := g.Next()
			if seen[id] {
				t.Fatalf("duplicate id %x", id)
			}
			seen[id] = true
		}
	}
	if a, b := New(3, now).Next(), New(4, now).Next(); a>>suffixBits == b>>suffixBits {
		t.Fatal("members 3 and 4 share a prefix")
	}
}

func TestIDsIncrease(t *testing.T) {
	g := New(9, time.Unix(1_700_000_000, 0))
	prev := g.Next()
	for i := 0; i < 1000; i++ {
		id := g.Next()
		if id <= prev {
			t.Fatalf("id %x after %x", id, prev)
		}
		prev = id
	}
}
