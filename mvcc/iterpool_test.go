package mvcc

import (
	"context"
	"fmt"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func (s *Store) pooledIters() int {
	s.iters.mu.Lock()
	defer s.iters.mu.Unlock()
	return len(s.iters.free)
}

// Reads between writes reuse iterators; a read after a write never sees the
// state before it, even through a pooled iterator.
// With the latest-version cache off a point read goes to Pebble (the pooled
// iterators); with it on, to the cache: both must be fresh.
func TestPooledIteratorsNeverServeStaleReads(t *testing.T) {
	for _, cache := range []int{-1, 0} {
		t.Run(fmt.Sprintf("cache=%d", cache), func(t *testing.T) { testNoStaleReads(t, cache) })
	}
}

func testNoStaleReads(t *testing.T, cache int) {
	ts := openTestStore(t, t.TempDir(), Options{LatestCacheBytes: cache})
	ctx := context.Background()
	pooling := cache < 0
	get := func() string {
		resp, err := ts.s.Range(ctx, &pb.RangeRequest{Key: []byte("k")})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 {
			t.Fatalf("range k: %v", resp.Kvs)
		}
		if resp.Header.Revision != resp.Kvs[0].ModRevision {
			t.Fatalf("header revision %d, but k was last written at %d", resp.Header.Revision, resp.Kvs[0].ModRevision)
		}
		return string(resp.Kvs[0].Value)
	}
	ts.put("k", "v0")
	get()
	if n := ts.s.pooledIters(); pooling && n != 1 {
		t.Fatalf("pooled after a read: %d, want 1", n)
	}
	for i := 1; i <= 200; i++ {
		want := fmt.Sprintf("v%d", i)
		ts.put("k", want)
		if n := ts.s.pooledIters(); n != 0 {
			t.Fatalf("pooled after a write: %d, want 0 (stale ones closed)", n)
		}
		for range 3 {
			if got := get(); got != want {
				t.Fatalf("after put %d: read %q", i, got)
			}
		}
	}
}

// Concurrent readers and a writer: every read sees at least the value of the
// last put that finished before the read began.
func TestPooledIteratorsUnderConcurrentWrites(t *testing.T) {
	for _, cache := range []int{-1, 0} {
		t.Run(fmt.Sprintf("cache=%d", cache), func(t *testing.T) { testConcurrentReads(t, cache) })
	}
}

func testConcurrentReads(t *testing.T, cache int) {
	ts := openTestStore(t, t.TempDir(), Options{LatestCacheBytes: cache})
	ctx := context.Background()
	ts.put("k", "0")
	var mu sync.Mutex
	done := 0 // guarded by mu: the last value whose put returned
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				floor := done
				mu.Unlock()
				resp, err := ts.s.Range(ctx, &pb.RangeRequest{Key: []byte("k")})
				if err != nil {
					errs <- err
					return
				}
				var got int
				fmt.Sscan(string(resp.Kvs[0].Value), &got)
				if got < floor {
					errs <- fmt.Errorf("read %d after put %d had returned", got, floor)
					return
				}
			}
		}()
	}
	for i := 1; i <= 500; i++ {
		ts.put("k", fmt.Sprint(i))
		mu.Lock()
		done = i
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// Closing the store closes its pooled iterators, so the backend closes
// cleanly (Pebble refuses to close with iterators open).
func TestCloseReleasesPooledIterators(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{LatestCacheBytes: -1})
	ts.put("k", "v")
	for range 3 {
		if _, err := ts.s.Range(context.Background(), &pb.RangeRequest{Key: []byte("k")}); err != nil {
			t.Fatal(err)
		}
	}
	if ts.s.pooledIters() == 0 {
		t.Fatal("no iterator pooled")
	}
	if err := ts.s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := ts.s.pooledIters(); n != 0 {
		t.Fatalf("%d iterators still pooled after Close", n)
	}
	if err := ts.be.Close(); err != nil {
		t.Fatalf("backend close: %v", err)
	}
	ts.s, ts.be = nil, nil
}
