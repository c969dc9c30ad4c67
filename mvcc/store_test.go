package mvcc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func TestPutVersionsAndRevisions(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{})
	ts.put("a", "1")
	ts.put("b", "1")
	ts.put("a", "2")
	ts.del("a", "")
	ts.put("a", "3")
	resp, err := ts.s.Range(context.Background(), &pb.RangeRequest{Key: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	kv := resp.Kvs[0]
	if kv.CreateRevision != 6 || kv.ModRevision != 6 || kv.Version != 1 || string(kv.Value) != "3" {
		t.Fatalf("after delete and put: %v", kv)
	}
	old, _ := ts.s.Range(context.Background(), &pb.RangeRequest{Key: []byte("a"), Revision: 4})
	if kv := old.Kvs[0]; kv.CreateRevision != 2 || kv.ModRevision != 4 || kv.Version != 2 || old.Header.Revision != 6 {
		t.Fatalf("at rev 4: %v header %v", kv, old.Header)
	}
	if gone, _ := ts.s.Range(context.Background(), &pb.RangeRequest{Key: []byte("a"), Revision: 5}); len(gone.Kvs) != 0 {
		t.Fatalf("at rev 5 (deleted): %v", gone.Kvs)
	}
}

func TestPutOptionsAndErrors(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{LeaseExists: func(id int64) bool { return id == 7 }})
	ts.apply(func(w *Writer) {
		if _, err := w.Put(&pb.PutRequest{Key: []byte("k"), Value: []byte("v"), Lease: 7}); err != nil {
			t.Fatal(err)
		}
		r, err := w.Put(&pb.PutRequest{Key: []byte("k"), Value: []byte("ignored"), IgnoreValue: true, PrevKv: true})
		if err != nil || string(r.PrevKv.Value) != "v" || r.PrevKv.Lease != 7 {
			t.Fatalf("ignore_value put: %v %v", r, err)
		}
		r, err = w.Put(&pb.PutRequest{Key: []byte("k"), Value: []byte("w"), IgnoreLease: true})
		if err != nil || r.PrevKv != nil {
			t.Fatalf("ignore_lease put: %v %v (prev_kv not asked)", r, err)
		}
		for _, p := range []*pb.PutRequest{
			{Key: []byte("absent"), IgnoreValue: true},
			{Key: []byte("absent"), IgnoreLease: true},
		} {
			if _, err := w.Put(p); !errors.Is(err, ErrKeyNotFound) {
				t.Fatalf("%v: err = %v", p, err)
			}
		}
		if _, err := w.Put(&pb.PutRequest{Key: []byte("k"), Lease: 8}); !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("unknown lease: err = %v", err)
		}
	})
	resp, _ := ts.s.Range(context.Background(), &pb.RangeRequest{Key: []byte("k")})
	if kv := resp.Kvs[0]; string(kv.Value) != "w" || kv.Lease != 0 || kv.Version != 3 || ts.s.Rev() != 4 {
		t.Fatalf("final kv %v rev %d (failed puts must change nothing)", kv, ts.s.Rev())
	}
	if _, err := ts.s.Range(context.Background(), &pb.RangeRequest{Key: []byte("absent")}); err != nil {
		t.Fatal(err)
	}
}

func TestNoOpWritesDoNotBumpRevision(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{})
	ts.put("a", "1")
	if d := ts.del("zzz", ""); d.Deleted != 0 || d.Header.Revision != 2 {
		t.Fatalf("delete of nothing: %v", d)
	}
	var tr *pb.TxnResponse
	evs := ts.apply(func(w *Writer) {
		tr, _ = w.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a")}}},
			{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("nope")}}},
		}})
	})
	if ts.s.Rev() != 2 || tr.Header.Revision != 2 || len(evs) != 0 {
		t.Fatalf("read-only txn: rev %d header %v events %d", ts.s.Rev(), tr.Header, len(evs))
	}
}

func TestRangeEnds(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{})
	for _, k := range []string{"\x00", "a", "a\x00", "a\xff", "a\xff\xff", "b", "\xff", "\xff\xff"} {
		ts.put(k, "v")
	}
	cases := []struct {
		key, end string
		want     []string
	}{
		{"a", "", []string{"a"}},
		{"a", "\x00", []string{"a", "a\x00", "a\xff", "a\xff\xff", "b", "\xff", "\xff\xff"}},
		{"\x00", "\x00", []string{"\x00", "a", "a\x00", "a\xff", "a\xff\xff", "b", "\xff", "\xff\xff"}},
		{"a", "b", []string{"a", "a\x00", "a\xff", "a\xff\xff"}},
		{"a\xff", string(prefixEnd([]byte("a\xff"))), []string{"a\xff", "a\xff\xff", "b"}[:2]},
		{"\xff", string(prefixEnd([]byte("\xff"))), []string{"\xff", "\xff\xff"}},
		{"b", "a", nil},
		{"b", "b", nil},
		{"a\x00", "a\x00\x00", []string{"a\x00"}},
	}
	for _, c := range cases {
		got := ts.rangeKeys(&pb.RangeRequest{Key: []byte(c.key), RangeEnd: []byte(c.end)})
		if !slices.Equal(got, c.want) {
			t.Errorf("range [%q, %q) = %q, want %q", c.key, c.end, got, c.want)
		}
	}
}

func TestRangeOptions(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{})
	ts.put("a", "3")
	ts.put("b", "1")
	ts.put("c", "2")
	ts.put("b", "4") // b: version 2, mod 5
	ctx := context.Background()
	all := func(r *pb.RangeRequest) *pb.RangeResponse {
		r.Key, r.RangeEnd = []byte("a"), []byte("z")
		resp, err := ts.s.Range(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	keys := func(resp *pb.RangeResponse) (out []string) {
		for _, kv := range resp.Kvs {
			out = append(out, string(kv.Key))
		}
		return out
	}
	if r := all(&pb.RangeRequest{Limit: 2}); !slices.Equal(keys(r), []string{"a", "b"}) || !r.More || r.Count != 3 {
		t.Errorf("limit 2: %q more %v count %d", keys(r), r.More, r.Count)
	}
	if r := all(&pb.RangeRequest{Limit: 3}); r.More {
		t.Errorf("limit 3 of 3: more")
	}
	if r := all(&pb.RangeRequest{CountOnly: true}); len(r.Kvs) != 0 || r.Count != 3 {
		t.Errorf("count_only: %v", r)
	}
	if r := all(&pb.RangeRequest{KeysOnly: true}); r.Kvs[0].Value != nil || r.Kvs[0].Version != 1 {
		t.Errorf("keys_only: %v", r.Kvs[0])
	}
	sorts := []struct {
		order  pb.RangeRequest_SortOrder
		target pb.RangeRequest_SortTarget
		want   []string
	}{
		{pb.RangeRequest_DESCEND, pb.RangeRequest_KEY, []string{"c", "b", "a"}},
		{pb.RangeRequest_ASCEND, pb.RangeRequest_VALUE, []string{"c", "a", "b"}},
		{pb.RangeRequest_NONE, pb.RangeRequest_MOD, []string{"a", "c", "b"}},
		{pb.RangeRequest_DESCEND, pb.RangeRequest_CREATE, []string{"c", "b", "a"}},
		{pb.RangeRequest_DESCEND, pb.RangeRequest_VERSION, []string{"b", "a", "c"}},
	}
	for _, s := range sorts {
		if r := all(&pb.RangeRequest{SortOrder: s.order, SortTarget: s.target}); !slices.Equal(keys(r), s.want) {
			t.Errorf("sort %v %v: %q, want %q", s.order, s.target, keys(r), s.want)
		}
	}
	if r := all(&pb.RangeRequest{MinModRevision: 4}); !slices.Equal(keys(r), []string{"b", "c"}) || r.Count != 3 {
		t.Errorf("min mod 4: %q count %d", keys(r), r.Count)
	}
	if r := all(&pb.RangeRequest{MaxModRevision: 4, MinCreateRevision: 3}); !slices.Equal(keys(r), []string{"c"}) {
		t.Errorf("max mod 4 min create 3: %q", keys(r))
	}
	if r := all(&pb.RangeRequest{MaxCreateRevision: 2}); !slices.Equal(keys(r), []string{"a"}) {
		t.Errorf("max create 2: %q", keys(r))
	}
}

func TestRevisionErrors(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{})
	for i := 0; i < 5; i++ {
		ts.put("k", fmt.Sprint(i))
	}
	ctx := context.Background()
	if _, err := ts.s.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Revision: 7}); !errors.Is(err, ErrFutureRev) {
		t.Errorf("future: %v", err)
	}
	if err := ts.compact(7); !errors.Is(err, ErrFutureRev) {
		t.Errorf("compact future: %v", err)
	}
	if err := ts.compact(4); err != nil {
		t.Fatal(err)
	}
	// Right after Compact, before the background work.
	if _, err := ts.s.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Revision: 3}); !errors.Is(err, ErrCompacted) {
		t.Errorf("below compaction: %v", err)
	}
	if err := ts.compact(4); !errors.Is(err, ErrCompacted) {
		t.Errorf("compact again: %v", err)
	}
	ts.waitCompaction()
	r, err := ts.s.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Revision: 4})
	if err != nil || string(r.Kvs[0].Value) != "2" || r.Kvs[0].Version != 3 {
		t.Errorf("at compaction revision: %v %v", r, err)
	}
	if _, _, err := ts.s.Events(ctx, 4, []byte("k"), nil, 0); !errors.Is(err, ErrCompacted) {
		t.Errorf("events at compaction revision: %v", err)
	}
	if _, _, _, err := ts.s.HashKV(3); !errors.Is(err, ErrCompacted) {
		t.Errorf("hashkv below compaction: %v", err)
	}
	if _, _, _, err := ts.s.HashKV(9); !errors.Is(err, ErrFutureRev) {
		t.Errorf("hashkv future: %v", err)
	}
}

func TestTxnFailingBranchChangesNothing(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{LeaseExists: func(id int64) bool { return false }})
	ts.put("a", "1")
	put := func(k string, lease int64) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Lease: lease}}}
	}
	var err error
	evs := ts.apply(func(w *Writer) {
		_, err = w.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{
			put("b", 0),
			{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{put("c", 5)}}}},
		}})
	})
	if !errors.Is(err, ErrLeaseNotFound) || len(evs) != 0 || ts.s.Rev() != 2 {
		t.Fatalf("txn with a bad lease in a nested branch: err %v events %d rev %d", err, len(evs), ts.s.Rev())
	}
	if got := ts.rangeKeys(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("keys after failed txn: %q", got)
	}
	// The lease check only covers the branch taken.
	ts.apply(func(w *Writer) {
		_, err = w.Txn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("1")}}},
			Success: []*pb.RequestOp{put("b", 0)},
			Failure: []*pb.RequestOp{put("c", 5)},
		})
	})
	if err != nil || ts.s.Rev() != 3 {
		t.Fatalf("txn whose bad branch is not taken: %v rev %d", err, ts.s.Rev())
	}
}

func TestTxnNestedComparesSeePreTxnState(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{})
	var resp *pb.TxnResponse
	ts.apply(func(w *Writer) {
		var err error
		resp, err = w.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("x"), Value: []byte("1")}}},
			{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
				Compare: []*pb.Compare{{Key: []byte("x"), Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Version{Version: 0}}},
				Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("x")}}}},
			}}},
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("y"), Value: []byte("2")}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	})
	nested := resp.Responses[1].GetResponseTxn()
	if !nested.Succeeded {
		t.Fatal("nested compare version(x)==0 saw the txn's own put")
	}
	if kvs := nested.Responses[0].GetResponseRange().Kvs; len(kvs) != 1 || string(kvs[0].Value) != "1" {
		t.Fatalf("range inside txn did not see the earlier put: %v", kvs)
	}
	ev := ts.s.Rev()
	r, _ := ts.s.Range(context.Background(), &pb.RangeRequest{Key: []byte("y")})
	if ev != 2 || r.Kvs[0].ModRevision != 2 || resp.Header.Revision != 2 {
		t.Fatalf("txn ops must share one revision: rev %d y %v header %v", ev, r.Kvs[0], resp.Header)
	}
}

func TestCompareOverRange(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{})
	ts.put("p/1", "a")
	ts.put("p/2", "a")
	ts.put("q", "b")
	cmp := func(key, end string, val string) bool {
		var resp *pb.TxnResponse
		ts.apply(func(w *Writer) {
			resp, _ = w.Txn(&pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte(key), RangeEnd: []byte(end),
				Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte(val)}}}})
		})
		return resp.Succeeded
	}
	if !cmp("p/", "p0", "a") || cmp("p/", "\x00", "a") || cmp("zz", "\x00", "") {
		t.Fatal("compare over range: want every key to match, none present fails for VALUE")
	}
}

func TestEventsReplayWithPrevKV(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{})
	ts.put("a", "1")
	ts.put("b", "1")
	ts.put("a", "2")
	ts.del("a", "")
	evs, next, err := ts.s.Events(context.Background(), 3, []byte("a"), nil, 0)
	if err != nil || next != 6 || len(evs) != 2 {
		t.Fatalf("events: %v next %d err %v", evs, next, err)
	}
	if evs[0].Type != mvccpb.PUT || string(evs[0].PrevKv.Value) != "1" || evs[0].Kv.Version != 2 {
		t.Errorf("put event %v", evs[0])
	}
	if evs[1].Type != mvccpb.DELETE || evs[1].Kv.ModRevision != 5 || string(evs[1].PrevKv.Value) != "2" {
		t.Errorf("delete event %v", evs[1])
	}
	evs, next, _ = ts.s.Events(context.Background(), 1, []byte("a"), []byte{0}, 1)
	if len(evs) != 1 || next != 3 {
		t.Errorf("limit 1: %d events next %d", len(evs), next)
	}
}

func countRaw(t *testing.T, ts *testStore, prefix byte) int {
	it, err := ts.be.NewIter([]byte{prefix}, []byte{prefix + 1})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n
}

// TestCompactionResumesAfterReopen stops a compaction after its first chunk
// and checks that reopening finishes it.
func TestCompactionResumesAfterReopen(t *testing.T) {
	dir := t.TempDir()
	ts := openTestStore(t, dir, Options{CompactionChunk: 2})
	for round := 0; round < 3; round++ {
		for i := 0; i < 10; i++ {
			ts.put(fmt.Sprintf("k%02d", i), fmt.Sprint(round))
		}
	}
	ts.del("k00", "k02") // tombstones for k00, k01
	rev := ts.s.Rev()
	// Record the compaction but do not End (no background pass), then run
	// one chunk by hand.
	bt := ts.be.NewBatch()
	w := ts.s.Write(bt)
	if _, err := w.Compact(rev); err != nil {
		t.Fatal(err)
	}
	ts.index++
	if err := bt.Commit(ts.index); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.s.compactChunk(rev, []byte{prefixKV}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.be.Get(metaCompactNext); err != nil {
		t.Fatalf("no progress recorded after one chunk: %v", err)
	}
	ts.reopen()
	if ts.s.CompactRev() != rev {
		t.Fatalf("compact rev after reopen %d, want %d", ts.s.CompactRev(), rev)
	}
	ts.waitCompaction()
	if n := countRaw(t, ts, prefixKV); n != 8 {
		t.Errorf("%d versions left, want 8 (one live per remaining key)", n)
	}
	if n := countRaw(t, ts, prefixRev); n != 0 {
		t.Errorf("%d event entries left at or below the compaction revision", n)
	}
	got := ts.rangeKeys(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	if len(got) != 8 || got[0] != "k02" {
		t.Errorf("keys after compaction %q", got)
	}
	if ts.s.Rev() != rev {
		t.Errorf("rev after full compaction and reopen %d, want %d", ts.s.Rev(), rev)
	}
}

func TestHashKVComparesHistories(t *testing.T) {
	feed := func(ts *testStore, last string) {
		ts.put("a", "1")
		ts.put("b", "2")
		ts.del("a", "")
		ts.put("c", last)
	}
	x := openTestStore(t, t.TempDir(), Options{})
	y := openTestStore(t, t.TempDir(), Options{})
	z := openTestStore(t, t.TempDir(), Options{})
	feed(x, "3")
	feed(y, "3")
	feed(z, "4")
	hx, _, rx, _ := x.s.HashKV(0)
	hy, _, ry, _ := y.s.HashKV(0)
	hz, _, _, _ := z.s.HashKV(0)
	if hx != hy || rx != ry || rx != 5 {
		t.Fatalf("same history: %x@%d vs %x@%d", hx, rx, hy, ry)
	}
	if hx == hz {
		t.Fatal("different last value, same hash")
	}
	h3x, _, _, _ := x.s.HashKV(3)
	h3z, _, _, _ := z.s.HashKV(3)
	if h3x != h3z {
		t.Fatal("hash at revision 3 differs though histories agree up to 3")
	}
	// Compaction on one member only after it is fully done: still equal.
	if err := x.compact(3); err != nil {
		t.Fatal(err)
	}
	_ = y.compact(3)
	x.waitCompaction()
	hx, cx, _, _ := x.s.HashKV(0)
	hy, cy, _, _ := y.s.HashKV(0)
	if hx != hy || cx != 3 || cy != 3 {
		t.Fatalf("after compaction: %x/%d vs %x/%d", hx, cx, hy, cy)
	}
	wx, _, _ := x.s.Hash()
	wy, _, _ := y.s.Hash()
	if wx != wy {
		t.Fatal("Hash differs on equal stores")
	}
}

// TestConcurrentReadsSeeConsistentRevisions reads while the writer adds one
// new key per revision: a read at revision R must see exactly R-1 keys (the
// empty store is at revision 1).
func TestConcurrentReadsSeeConsistentRevisions(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{})
	const n = 300
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			resp, err := ts.s.Range(context.Background(), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true})
			if err == nil && resp.Count != resp.Header.Revision-1 {
				err = fmt.Errorf("count %d at revision %d", resp.Count, resp.Header.Revision)
			}
			if err != nil {
				select {
				case errc <- err:
				default:
				}
				return
			}
		}
	}()
	for i := 0; i < n; i++ {
		ts.put(fmt.Sprintf("key%04d", i), "v")
	}
	close(done)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}

// TestEmptyStoreIsAtRevisionOne checks etcd's numbering: an empty store is at
// revision 1, the first write makes 2, and compaction at 1 on the empty store
// succeeds once, like etcd's, and survives a reopen.
func TestEmptyStoreIsAtRevisionOne(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), Options{})
	ctx := context.Background()
	if ts.s.Rev() != 1 {
		t.Fatalf("empty store at revision %d, want 1", ts.s.Rev())
	}
	r, err := ts.s.Range(ctx, &pb.RangeRequest{Key: []byte("a"), Revision: 1})
	if err != nil || len(r.Kvs) != 0 || r.Header.Revision != 1 {
		t.Fatalf("range at revision 1 of the empty store: %v %v", r, err)
	}
	if err := ts.compact(2); !errors.Is(err, ErrFutureRev) {
		t.Fatalf("compact 2 of the empty store: %v", err)
	}
	if err := ts.compact(1); err != nil {
		t.Fatalf("compact 1 of the empty store: %v", err)
	}
	if err := ts.compact(1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("compact 1 again: %v", err)
	}
	ts.waitCompaction()
	if _, _, err := ts.s.Events(ctx, 1, []byte("a"), nil, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("events from the compaction revision: %v", err)
	}
	ts.reopen()
	if ts.s.Rev() != 1 || ts.s.CompactRev() != 1 {
		t.Fatalf("after reopen: rev %d compact rev %d, want 1 and 1", ts.s.Rev(), ts.s.CompactRev())
	}
	if p := ts.put("a", "1"); p.Header.Revision != 2 {
		t.Fatalf("first put at revision %d, want 2", p.Header.Revision)
	}
	evs, next, err := ts.s.Events(ctx, 2, []byte("a"), nil, 0)
	if err != nil || len(evs) != 1 || evs[0].Kv.CreateRevision != 2 || next != 3 {
		t.Fatalf("events from 2: %v next %d err %v", evs, next, err)
	}
}
