package backend

import "testing"

// TestCloseAfterCommitLeavesLaterBatchesAlone closes a batch after
// committing it (as deferred Closes do) while a newer batch is open: the
// newer batch must keep its writes. Releasing the committed pebble batch a
// second time would reset whichever batch pebble's pool handed it to next.
func TestCloseAfterCommitLeavesLaterBatchesAlone(t *testing.T) {
	b := mustOpen(t, t.TempDir(), nil)
	for i := 0; i < 50; i++ {
		bt := b.NewBatch()
		if err := bt.Set([]byte("mk"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := bt.CommitNoIndex(); err != nil {
			t.Fatal(err)
		}
		x := b.NewBatch() // likely the pooled pebble batch bt just released
		if err := x.Set([]byte("mx"), []byte("1")); err != nil {
			t.Fatal(err)
		}
		bt.Close()
		if x.Empty() {
			t.Fatalf("round %d: closing a committed batch reset a newer one", i)
		}
		x.Close()
	}
}
