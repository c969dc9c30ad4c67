package v3rpc

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitKey polls until key exists (or fails the test at the deadline).
func waitKey(ctx context.Context, t *testing.T, kv pb.KVClient, key string) {
	t.Helper()
	for {
		resp, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte(key)})
		if err != nil {
			t.Fatalf("waiting for %q: %v", key, err)
		}
		if len(resp.Kvs) == 1 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%q never appeared", key)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

type lockResult struct {
	resp *v3lockpb.LockResponse
	err  error
}

func lockAsync(ctx context.Context, lc v3lockpb.LockClient, name string, lease int64) <-chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		resp, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte(name), Lease: lease})
		ch <- lockResult{resp, err}
	}()
	return ch
}

func TestLockWaitsForEarlierHolders(t *testing.T) {
	ta := startTestAPI(t)
	ctx := testContext(t)
	lc, kv := v3lockpb.NewLockClient(ta.conn), pb.NewKVClient(ta.conn)

	first, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: 0x1a})
	if err != nil {
		t.Fatal(err)
	}
	if string(first.Key) != "lk/1a" {
		t.Fatalf("key = %q, want lk/1a", first.Key)
	}
	if h := first.Header; h.ClusterId != 7 || h.MemberId != 9 || h.RaftTerm != 2 || h.Revision == 0 {
		t.Fatalf("header = %+v", h)
	}
	// The same lease locks again at once: it already holds the lock.
	again, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("lk"), Lease: 0x1a})
	if err != nil || string(again.Key) != "lk/1a" {
		t.Fatalf("relock = %v, %v", again, err)
	}

	second := lockAsync(ctx, lc, "lk", 0x2b)
	waitKey(ctx, t, kv, "lk/2b") // so that the third waiter queues behind it
	third := lockAsync(ctx, lc, "lk", 0x3c)
	waitKey(ctx, t, kv, "lk/3c")
	unlock1, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: first.Key})
	if err != nil {
		t.Fatal(err)
	}
	r2 := <-second
	if r2.err != nil || string(r2.resp.Key) != "lk/2b" {
		t.Fatalf("second lock = %+v %v", r2, r2.err)
	}
	if r2.resp.Header.Revision < unlock1.Header.Revision {
		t.Fatalf("second lock returned at revision %d, before the unlock at %d", r2.resp.Header.Revision, unlock1.Header.Revision)
	}
	select {
	case r3 := <-third:
		t.Fatalf("third lock acquired while the second holds it: %+v", r3)
	default:
	}
	unlock2, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: r2.resp.Key})
	if err != nil {
		t.Fatal(err)
	}
	r3 := <-third
	if r3.err != nil || r3.resp.Header.Revision < unlock2.Header.Revision {
		t.Fatalf("third lock = %+v (unlock at %d)", r3, unlock2.Header.Revision)
	}
}

func TestLockCanceledWaiterRemovesItsKey(t *testing.T) {
	ta := startTestAPI(t)
	ctx := testContext(t)
	lc, kv := v3lockpb.NewLockClient(ta.conn), pb.NewKVClient(ta.conn)
	if _, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("c"), Lease: 1}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	waiter := lockAsync(wctx, lc, "c", 2)
	waitKey(ctx, t, kv, "c/2")
	cancel()
	if r := <-waiter; status.Code(r.err) != codes.Canceled {
		t.Fatalf("canceled lock = %+v, want Canceled", r)
	}
	for {
		resp, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("c/2")})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the canceled waiter's key c/2 was never deleted")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestLockSessionExpiredWhileWaiting(t *testing.T) {
	ta := startTestAPI(t)
	ctx := testContext(t)
	lc, kv := v3lockpb.NewLockClient(ta.conn), pb.NewKVClient(ta.conn)
	held, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("s"), Lease: 1})
	if err != nil {
		t.Fatal(err)
	}
	waiter := lockAsync(ctx, lc, "s", 2)
	waitKey(ctx, t, kv, "s/2")
	// The waiter's lease ends: its key goes (as a lease revoke would).
	if _, err := kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("s/2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: held.Key}); err != nil {
		t.Fatal(err)
	}
	r := <-waiter
	if st := status.Convert(r.err); st.Code() != codes.Unknown || st.Message() != "mutex: session is expired" {
		t.Fatalf("lock after the session expired = %+v", r)
	}
}

func TestLockErrors(t *testing.T) {
	ta := startTestAPI(t)
	ctx := testContext(t)
	lc := v3lockpb.NewLockClient(ta.conn)
	_, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{})
	if st := status.Convert(err); st.Code() != codes.Unknown || st.Message() != "etcdserver: key is not provided" {
		t.Fatalf("unlock of no key = %v", err)
	}
	// Lease 0: the service grants a lease, as etcd's does.
	resp, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("z")})
	if err != nil {
		t.Fatal(err)
	}
	ta.m.mu.Lock()
	want := fmt.Sprintf("z/%x", ta.m.nextLease)
	ta.m.mu.Unlock()
	if string(resp.Key) != want {
		t.Fatalf("key = %q, want %q", resp.Key, want)
	}
}
