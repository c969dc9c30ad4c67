package mvcc

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func cachedKV(key, val string, rev int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), CreateRevision: 2, ModRevision: rev, Version: rev - 1, Lease: 7}
}

// check verifies the cache's index and accounting against its entries.
func (c *latestCache) check(t *testing.T) {
	t.Helper()
	live, meta, vals := 0, 0, 0
	for idx, e := range c.entries {
		if !e.live {
			continue
		}
		live++
		meta += metaCost(e.key)
		vals += len(e.value)
		i, ok := c.find(e.key)
		if !ok || int(c.slots[i]) != idx+1 {
			t.Fatalf("entry %d (%q) is not found through the index", idx, e.key)
		}
	}
	used := 0
	for _, s := range c.slots {
		if s != 0 {
			used++
			if !c.entries[s-1].live {
				t.Fatalf("the index points at dead entry %d", s-1)
			}
		}
	}
	if live != c.live || used != live || meta != c.metaSize || vals != c.valSize {
		t.Fatalf("entries: %d live, meta %d, values %d; accounted %d live, %d slots used, meta %d, values %d",
			live, meta, vals, c.live, used, c.metaSize, c.valSize)
	}
	if c.metaSize > c.metaBudget || c.metaSize+c.valSize > c.budget {
		t.Fatalf("meta %d (budget %d), meta+values %d (budget %d)", c.metaSize, c.metaBudget, c.metaSize+c.valSize, c.budget)
	}
}

// Values go before metadata, metadata stays within three quarters of the
// budget, and every cached key answers with what was merged last.
func TestLatestCacheEvictsValuesBeforeMetadata(t *testing.T) {
	const budget = 64 << 10
	c := newLatestCache(budget)
	val := string(bytes.Repeat([]byte("v"), 200))
	perKey := metaCost("key00000")
	fits := c.metaBudget / perKey
	want := map[string]*mvccpb.KeyValue{}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		// New keys, rewrites of recent ones, and deletes.
		key := fmt.Sprintf("key%05d", i)
		var kv *mvccpb.KeyValue
		switch x := r.IntN(10); {
		case x < 2 && i > 10:
			key = fmt.Sprintf("key%05d", i-1-r.IntN(10))
			kv = cachedKV(key, val, int64(i+3))
		case x < 3:
			kv = nil // deleted
		default:
			kv = cachedKV(key, val, int64(i+3))
		}
		c.merge(map[string]*mvccpb.KeyValue{key: kv})
		want[key] = kv
		c.check(t)
		if len(want) <= fits && c.live != len(want) {
			t.Fatalf("after %d writes %d keys' metadata is cached of %d written; metadata must not be evicted while it fits", i+1, c.live, len(want))
		}
	}
	if c.live < fits-1 {
		t.Fatalf("%d keys' metadata cached, %d fit its budget", c.live, fits)
	}
	full := 0
	for key, kv := range want {
		m, value, isFull, ok := c.get([]byte(key))
		if !ok {
			continue
		}
		if m != metaOf(kv) {
			t.Fatalf("get %q: %+v, want %+v", key, m, metaOf(kv))
		}
		if isFull && kv != nil {
			full++
			if string(value) != val {
				t.Fatalf("get %q: value %q", key, value)
			}
		}
		if kv == nil && (!isFull || value != nil) {
			t.Fatalf("deleted %q: value %q, full %v", key, value, isFull)
		}
	}
	if full == 0 {
		t.Fatal("no value is cached")
	}
	if _, _, _, ok := c.get([]byte("never")); ok {
		t.Fatal("an unknown key is known")
	}
}

// A value too large for the cache still leaves its metadata there; an empty
// value is a cached value.
func TestLatestCacheKeepsMetadataOfLargeValues(t *testing.T) {
	c := newLatestCache(16 << 10)
	big := cachedKV("big", string(bytes.Repeat([]byte("x"), 4<<10)), 3)
	empty := cachedKV("empty", "", 4)
	c.merge(map[string]*mvccpb.KeyValue{"big": big, "empty": empty})
	m, value, full, ok := c.get([]byte("big"))
	if !ok || full || value != nil || m != metaOf(big) {
		t.Fatalf("get big: %+v %q %v %v, want its metadata only", m, value, full, ok)
	}
	if m, value, full, ok := c.get([]byte("empty")); !ok || !full || value == nil || len(value) != 0 || m != metaOf(empty) {
		t.Fatalf("get empty: %+v %q %v %v, want an empty value", m, value, full, ok)
	}
	c.check(t)
}

// prevStore is a store whose cache keeps metadata but no values (a version
// must cost at most a sixteenth of the budget), with PrevValuesWanted switched by the test.
func prevStore(t *testing.T, want *atomic.Bool) *testStore {
	return openTestStore(t, t.TempDir(), Options{LatestCacheBytes: 1500, PrevValuesWanted: want.Load})
}

func putEvent(t *testing.T, ts *testStore, p *pb.PutRequest) (*pb.PutResponse, *mvccpb.Event) {
	t.Helper()
	var resp *pb.PutResponse
	evs := ts.apply(func(w *Writer) {
		var err error
		if resp, err = w.Put(p); err != nil {
			t.Fatal(err)
		}
	})
	if len(evs) != 1 {
		t.Fatalf("put produced %d events", len(evs))
	}
	return resp, evs[0]
}

// A put whose previous version the cache knows by its metadata reads the
// old value only when something needs it: its response (prev_kv), its own
// value (ignore_value), a value compare, or a watcher (PrevValuesWanted).
func TestPutReadsPreviousValueOnlyWhenNeeded(t *testing.T) {
	var want atomic.Bool
	ts := prevStore(t, &want)
	ts.put("k", "v1") // rev 2
	ts.put("k", "v2") // rev 3
	wantPrev := func(ev *mvccpb.Event, mod, version int64, val string) {
		t.Helper()
		p := ev.PrevKv
		if p == nil || string(p.Key) != "k" || p.ModRevision != mod || p.CreateRevision != 2 || p.Version != version || string(p.Value) != val {
			t.Fatalf("event at %d: prev_kv %v, want k at %d version %d value %q", ev.Kv.ModRevision, p, mod, version, val)
		}
	}

	_, ev := putEvent(t, ts, &pb.PutRequest{Key: []byte("k"), Value: []byte("v3")})
	wantPrev(ev, 3, 2, "") // metadata only: nobody wants the value
	if ev.Kv.Version != 3 || ev.Kv.CreateRevision != 2 {
		t.Fatalf("new version %v", ev.Kv)
	}

	resp, ev := putEvent(t, ts, &pb.PutRequest{Key: []byte("k"), Value: []byte("v4"), PrevKv: true})
	if resp.PrevKv == nil || string(resp.PrevKv.Value) != "v3" || resp.PrevKv.ModRevision != 4 {
		t.Fatalf("prev_kv response %v, want v3 at 4", resp.PrevKv)
	}
	wantPrev(ev, 4, 3, "v3")

	_, ev = putEvent(t, ts, &pb.PutRequest{Key: []byte("k"), IgnoreValue: true, Lease: 0})
	if string(ev.Kv.Value) != "v4" {
		t.Fatalf("ignore_value put wrote %q, want v4", ev.Kv.Value)
	}

	var tr *pb.TxnResponse
	ts.apply(func(w *Writer) {
		var err error
		tr, err = w.Txn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("k"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL,
				TargetUnion: &pb.Compare_Value{Value: []byte("v4")}}},
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	if !tr.Succeeded {
		t.Fatal("value compare against the cached metadata's key failed")
	}

	want.Store(true)
	_, ev = putEvent(t, ts, &pb.PutRequest{Key: []byte("k"), Value: []byte("v6")})
	wantPrev(ev, 6, 5, "v4") // a watcher wants values: End read it
}

// A prev_kv watcher created after End made a revision visible but before
// the hub was notified of it still gets that revision's previous values:
// it reads them from history.
func TestPrevKVWatcherBetweenEndAndNotify(t *testing.T) {
	var hub atomic.Pointer[WatchHub]
	ts := openTestStore(t, t.TempDir(), Options{LatestCacheBytes: 1500,
		PrevValuesWanted: func() bool { return hub.Load().WantsPrevValues() }})
	h := NewWatchHub(ts.s, WatchHubOptions{})
	t.Cleanup(h.Close)
	hub.Store(h)
	h.Notify(ts.apply(func(w *Writer) { // rev 2
		if _, err := w.Put(&pb.PutRequest{Key: []byte("k"), Value: []byte("v1")}); err != nil {
			t.Fatal(err)
		}
	}))
	evs := ts.apply(func(w *Writer) { // rev 3, not yet notified
		if _, err := w.Put(&pb.PutRequest{Key: []byte("k"), Value: []byte("v2")}); err != nil {
			t.Fatal(err)
		}
	})
	if evs[0].PrevKv == nil || evs[0].PrevKv.Value != nil {
		t.Fatalf("with no prev_kv watcher the event's prev_kv is %v, want metadata only", evs[0].PrevKv)
	}
	st := h.NewStream()
	defer st.Close()
	id := mustWatch(t, st, 0, "k", "", 0, WatchOptions{PrevKV: true})
	h.Notify(evs)
	got := eventsUntil(t, st, id, 3)
	if len(got) != 1 || got[0].Kv.ModRevision != 3 || got[0].PrevKv == nil || string(got[0].PrevKv.Value) != "v1" {
		t.Fatalf("events %v, want the put at 3 with prev value v1", got)
	}
	// From now on End reads the values itself.
	h.Notify(ts.apply(func(w *Writer) { // rev 4
		if _, err := w.Put(&pb.PutRequest{Key: []byte("k"), Value: []byte("v3")}); err != nil {
			t.Fatal(err)
		}
	}))
	got = eventsUntil(t, st, id, 4)
	if len(got) != 1 || got[0].PrevKv == nil || string(got[0].PrevKv.Value) != "v2" {
		t.Fatalf("events %v, want the put at 4 with prev value v2", got)
	}
	if !st.Cancel(id) || h.WantsPrevValues() {
		t.Fatal("the canceled prev_kv watcher is still counted")
	}
}

// A prev_kv watcher from now, created while a batch that compacts at its
// own newest revision is visible but not yet notified, starts after the
// compaction instead of being canceled as compacted.
func TestPrevKVWatcherFromNowSkipsInFlightCompaction(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{})
	h := NewWatchHub(ts.s, WatchHubOptions{})
	t.Cleanup(h.Close)
	h.Notify(ts.apply(func(w *Writer) { // rev 2
		if _, err := w.Put(&pb.PutRequest{Key: []byte("k"), Value: []byte("v1")}); err != nil {
			t.Fatal(err)
		}
	}))
	evs := ts.apply(func(w *Writer) { // revs 3 and 4, compacted at 4
		for _, v := range []string{"v2", "v3"} {
			if _, err := w.Put(&pb.PutRequest{Key: []byte("k"), Value: []byte(v)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Compact(4); err != nil {
			t.Fatal(err)
		}
	})
	st := h.NewStream()
	defer st.Close()
	id := mustWatch(t, st, 0, "k", "", 0, WatchOptions{PrevKV: true})
	h.Notify(evs)
	h.Notify(ts.apply(func(w *Writer) { // rev 5
		if _, err := w.Put(&pb.PutRequest{Key: []byte("k"), Value: []byte("v4")}); err != nil {
			t.Fatal(err)
		}
	}))
	got := eventsUntil(t, st, id, 5)
	if len(got) == 0 || got[len(got)-1].Kv.ModRevision != 5 || string(got[len(got)-1].PrevKv.GetValue()) != "v3" {
		t.Fatalf("events %v, want to end with the put at 5 with prev value v3", got)
	}
}
