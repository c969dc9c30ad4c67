package v3rpc

import (
	"bytes"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestPrefixEnd(t *testing.T) {
	for _, c := range []struct{ in, want []byte }{
		{[]byte("a/"), []byte("a0")},
		{[]byte{'a', 0xff}, []byte("b")},
		{[]byte{0xff, 0xff}, []byte{0}},
		{[]byte("/"), []byte("0")},
	} {
		if got := prefixEnd(c.in); !bytes.Equal(got, c.want) {
			t.Errorf("prefixEnd(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestWaitDeletedAcrossCompaction: when the history a waiter needs was
// compacted away, it checks the key itself and keeps waiting from there.
func TestWaitDeletedAcrossCompaction(t *testing.T) {
	f := newFakeMember(t)
	ctx := testContext(t)
	put := func(k string) int64 {
		t.Helper()
		resp, err := f.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte("v")})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	held := put("p/1")
	put("other")
	last := put("other")
	if _, err := f.Compact(ctx, &pb.CompactionRequest{Revision: last}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- waitDeleted(ctx, f, historyWaiter{f}, []byte("p/1"), held) }()
	// Writes of other keys do not end the wait.
	put("other")
	select {
	case err := <-done:
		t.Fatalf("wait ended while the key exists: %v", err)
	default:
	}
	del, err := f.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("p/1")})
	if err != nil || del.Deleted != 1 {
		t.Fatalf("delete = %v, %v", del, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("wait = %v, want nil after the delete", err)
	}
	// A key deleted before the wait began is found gone at once.
	if err := waitDeleted(ctx, f, historyWaiter{f}, []byte("p/1"), held); err != nil {
		t.Fatal(err)
	}
}
