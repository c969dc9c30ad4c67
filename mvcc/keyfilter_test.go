package mvcc

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestKeyFilterNoFalseNegativesAndFewFalsePositives(t *testing.T) {
	const n = 300000
	f := newKeyFilter(n)
	fresh := 0
	for i := range n {
		if f.add(fmt.Appendf(nil, "key-%d", i)) {
			fresh++
		}
	}
	for i := range n {
		if !f.mayContain(fmt.Appendf(nil, "key-%d", i)) {
			t.Fatalf("key-%d added but not contained", i)
		}
	}
	// Distinct keys almost always set a new bit; count tracks them.
	if fresh < n*99/100 || f.count.Load() != int64(fresh) {
		t.Fatalf("fresh adds %d, count %d, of %d distinct keys", fresh, f.count.Load(), n)
	}
	if f.add([]byte("key-7")) {
		t.Fatal("adding a key twice set a new bit")
	}
	fp := 0
	for i := range n {
		if f.mayContain(fmt.Appendf(nil, "other-%d", i)) {
			fp++
		}
	}
	// About 1-2% at 10 bits per key; 4% would mean broken hashing.
	if rate := float64(fp) / n; rate > 0.04 {
		t.Fatalf("false positive rate %.3f at capacity", rate)
	}
	t.Logf("false positive rate at capacity: %.4f", float64(fp)/n)
	if f.full() {
		t.Fatal("full at capacity")
	}
	for i := range n/50 + 10 {
		f.add(fmt.Appendf(nil, "more-%d", i))
	}
	if !f.full() {
		t.Fatal("not full past capacity")
	}
}

// Adds and lookups from several goroutines (run with -race): every key a
// goroutine added is contained afterwards.
func TestKeyFilterConcurrentAdds(t *testing.T) {
	f := newKeyFilter(1000)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20000 {
				k := fmt.Appendf(nil, "%d/%d", g, i)
				f.add(k)
				if !f.mayContain(k) {
					t.Errorf("%s missing right after add", k)
					return
				}
			}
		})
	}
	wg.Wait()
	for g := range 4 {
		for i := range 20000 {
			if !f.mayContain(fmt.Appendf(nil, "%d/%d", g, i)) {
				t.Fatalf("%d/%d missing", g, i)
			}
		}
	}
}

func (s *Store) waitFilter(t *testing.T) *keyFilter {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.building.Load() != nil || s.filter.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatal("key filter not built within 30 s")
		}
		time.Sleep(time.Millisecond)
	}
	return s.filter.Load()
}

// After a reopen the filter is rebuilt from the backend while writes go on;
// it then holds the old keys and the ones written during the build, grows
// when it fills, and puts and reads through it see every key's history.
// The cache is off so every answer about an existing key comes from Pebble
// or the filter.
func TestKeyFilterRebuiltOnOpenAndGrown(t *testing.T) {
	defer func(n int64) { minFilterKeys = n }(minFilterKeys)
	minFilterKeys = 64
	ts := openTestStore(t, t.TempDir(), Options{LatestCacheBytes: -1})
	const old = 3000
	ts.apply(func(w *Writer) {
		for i := range old {
			if _, err := w.Put(&pb.PutRequest{Key: fmt.Appendf(nil, "k%05d", i), Value: []byte("v1")}); err != nil {
				t.Fatal(err)
			}
		}
	})
	ts.reopen()
	// Writes race the build started by the reopen: overwrites of old keys
	// and new keys.
	for i := range 200 {
		ts.put(fmt.Sprintf("k%05d", i), "v2")
		ts.put(fmt.Sprintf("n%05d", i), "v1")
	}
	// A full filter grows at the next commit after it was installed: keep
	// writing (new keys) until it did.
	f := ts.s.waitFilter(t)
	for i := 0; f.capacity < old; i++ {
		if i == 20 {
			t.Fatalf("filter capacity %d after reopening with %d keys and %d more writes: not grown", f.capacity, old, i)
		}
		ts.put(fmt.Sprintf("g%05d", i), "v")
		f = ts.s.waitFilter(t)
	}
	ctx := context.Background()
	for i := range old {
		for _, k := range []string{fmt.Sprintf("k%05d", i), fmt.Sprintf("n%05d", i)} {
			if i >= 200 && k[0] == 'n' {
				continue
			}
			resp, err := ts.s.Range(ctx, &pb.RangeRequest{Key: []byte(k)})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Kvs) != 1 {
				t.Fatalf("%s: %d kvs, want 1", k, len(resp.Kvs))
			}
			if want := int64(1 + btoi(k[0] == 'k' && i < 200)); resp.Kvs[0].Version != want {
				t.Fatalf("%s: version %d, want %d", k, resp.Kvs[0].Version, want)
			}
		}
	}
	// A put to an old key after the build: still its second or third
	// version, not a new key.
	ts.put("k02999", "v2")
	resp, err := ts.s.Range(ctx, &pb.RangeRequest{Key: []byte("k02999")})
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Version != 2 || resp.Kvs[0].CreateRevision != 2+2999 {
		t.Fatalf("k02999 after overwrite: %v %v", resp, err)
	}
	// Missing keys are answered without Pebble and empty.
	resp, err = ts.s.Range(ctx, &pb.RangeRequest{Key: []byte("missing")})
	if err != nil || len(resp.Kvs) != 0 || resp.Count != 0 || resp.Header.Revision != ts.s.Rev() {
		t.Fatalf("missing key: %v %v", resp, err)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Closing the store while a build scans stops the build; the backend then
// closes cleanly (the build's iterator was closed).
func TestCloseStopsFilterBuild(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{})
	ts.apply(func(w *Writer) {
		for i := range 20000 {
			if _, err := w.Put(&pb.PutRequest{Key: fmt.Appendf(nil, "k%05d", i)}); err != nil {
				t.Fatal(err)
			}
		}
	})
	ts.reopen()
	if err := ts.s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ts.be.Close(); err != nil {
		t.Fatalf("backend close after store close: %v", err)
	}
	ts.s, ts.be = nil, nil
}
