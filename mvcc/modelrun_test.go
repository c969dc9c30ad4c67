package mvcc

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

var (
	modelSeed     = flag.Uint64("model.seed", 0, "seed for TestModel (0: time based)")
	modelDuration = flag.Duration("model.duration", 3*time.Second, "how long TestModel runs")
)

var modelKeys = []string{"a", "a\x00", "a\x00b", "ab", "b", "b\xff", "b\xff\xff", "c", "\xff", "\xff\xff"}

type gen struct {
	r *rand.Rand
	m *model
	// prevWanted is the store's PrevValuesWanted in the runs that set it,
	// drawn anew for every step.
	prevWanted bool
}

func (g *gen) key() []byte { return []byte(modelKeys[g.r.IntN(len(modelKeys))]) }

func (g *gen) end(key []byte) []byte {
	switch g.r.IntN(5) {
	case 0, 1:
		return nil
	case 2:
		return []byte{0}
	case 3:
		return prefixEnd(key)
	}
	return g.key()
}

// prefixEnd is the range_end clients use for a prefix: the key with its last
// non-0xff byte incremented, or "\x00" if it is all 0xff.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}

func (g *gen) rev() int64 {
	if g.r.IntN(3) == 0 {
		return 0
	}
	lo := max(g.m.compactRev-2, 1)
	return lo + g.r.Int64N(g.m.rev-lo+4)
}

func (g *gen) rangeReq() *pb.RangeRequest {
	k := g.key()
	r := &pb.RangeRequest{Key: k, RangeEnd: g.end(k), Revision: g.rev()}
	if g.r.IntN(2) == 0 {
		r.Limit = g.r.Int64N(4)
	}
	if g.r.IntN(3) == 0 {
		r.SortOrder = pb.RangeRequest_SortOrder(g.r.IntN(3))
		r.SortTarget = pb.RangeRequest_SortTarget(g.r.IntN(5))
	}
	r.CountOnly = g.r.IntN(8) == 0
	r.KeysOnly = g.r.IntN(6) == 0
	if g.r.IntN(6) == 0 {
		r.MinModRevision = g.r.Int64N(g.m.rev + 2)
		r.MaxCreateRevision = g.r.Int64N(g.m.rev + 2)
	}
	if g.r.IntN(6) == 0 {
		r.MaxModRevision = g.r.Int64N(g.m.rev + 2)
		r.MinCreateRevision = g.r.Int64N(g.m.rev + 2)
	}
	return r
}

func (g *gen) putReq() *pb.PutRequest {
	p := &pb.PutRequest{Key: g.key(), Value: []byte{byte('a' + g.r.IntN(4))}, PrevKv: g.r.IntN(2) == 0}
	p.Lease = []int64{0, 0, 1, 2, 3}[g.r.IntN(5)]
	p.IgnoreValue = g.r.IntN(8) == 0
	if g.r.IntN(8) == 0 {
		p.IgnoreLease, p.Lease = true, 0
	}
	return p
}

func (g *gen) delReq() *pb.DeleteRangeRequest {
	k := g.key()
	return &pb.DeleteRangeRequest{Key: k, RangeEnd: g.end(k), PrevKv: g.r.IntN(2) == 0}
}

func (g *gen) compare() *pb.Compare {
	k := g.key()
	c := &pb.Compare{Key: k, Result: pb.Compare_CompareResult(g.r.IntN(4)), Target: pb.Compare_CompareTarget(g.r.IntN(5))}
	if g.r.IntN(4) == 0 {
		c.RangeEnd = g.end(k)
	}
	n := g.r.Int64N(g.m.rev + 2)
	switch c.Target {
	case pb.Compare_VERSION:
		c.TargetUnion = &pb.Compare_Version{Version: g.r.Int64N(4)}
	case pb.Compare_CREATE:
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: n}
	case pb.Compare_MOD:
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: n}
	case pb.Compare_VALUE:
		c.TargetUnion = &pb.Compare_Value{Value: []byte{byte('a' + g.r.IntN(4))}}
	case pb.Compare_LEASE:
		c.TargetUnion = &pb.Compare_Lease{Lease: g.r.Int64N(3)}
	}
	return c
}

func (g *gen) ops(depth int) []*pb.RequestOp {
	var ops []*pb.RequestOp
	for n := g.r.IntN(4); n > 0; n-- {
		switch x := g.r.IntN(10); {
		case x < 3:
			ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: g.rangeReq()}})
		case x < 6:
			ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: g.putReq()}})
		case x < 8:
			ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: g.delReq()}})
		case depth < 2:
			ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: g.txnReq(depth + 1)}})
		}
	}
	return ops
}

func (g *gen) txnReq(depth int) *pb.TxnRequest {
	t := &pb.TxnRequest{Success: g.ops(depth), Failure: g.ops(depth)}
	for n := g.r.IntN(3); n > 0; n-- {
		t.Compare = append(t.Compare, g.compare())
	}
	return t
}

// check compares a store result with the model's.
func check(t *testing.T, what string, req, got proto.Message, gotErr error, want proto.Message, wantErr error) {
	t.Helper()
	if wantErr != nil || gotErr != nil {
		if !errors.Is(gotErr, wantErr) || wantErr == nil {
			t.Fatalf("%s %v: err = %v, want %v", what, req, gotErr, wantErr)
		}
		return
	}
	if !proto.Equal(got, want) {
		t.Fatalf("%s %v:\n got  %v\n want %v", what, req, got, want)
	}
}

// TestModel runs random operations against the store and the model and
// compares every result. Rerun a failure with -model.seed.
func TestModel(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -model.seed=%d)", seed, seed)
	dur := *modelDuration
	if testing.Short() {
		dur /= 3
	}
	// The latest-version cache: default size, so small that writes evict
	// (seven keys' metadata fit, no values), and off. The key filter: its
	// real minimum (rarely a false positive with the model's few keys) and 8
	// keys, so it fills up, answers "maybe" often and is rebuilt while
	// writes go on. The last run has the small cache with previous values
	// wanted by watchers only at random (see prevWanted).
	defer func(n int64) { minFilterKeys = n }(minFilterKeys)
	for i, cache := range []int{0, 1000, -1, 0, 1000} {
		filterMin := minFilterKeys
		if i == 3 {
			filterMin = 8
		}
		name := fmt.Sprintf("latest-cache=%d,filter-min=%d", cache, filterMin)
		if i == 4 {
			name += ",prev-values=random"
		}
		t.Run(name, func(t *testing.T) {
			minFilterKeys = filterMin
			m := newModel()
			g := &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), m: m}
			opts := Options{
				CompactionChunk:  1 + g.r.IntN(4),
				LeaseExists:      func(id int64) bool { return m.leases[id] },
				LatestCacheBytes: cache,
			}
			if i == 4 {
				opts.PrevValuesWanted = func() bool { return g.prevWanted }
			}
			ts := openTestStore(t, t.TempDir(), opts)
			deadline := time.Now().Add(dur / 4)
			steps := 0
			for ; time.Now().Before(deadline) || steps < 500; steps++ {
				runStep(t, g, ts, m)
			}
			t.Logf("%d steps, rev %d, compact rev %d", steps, m.rev, m.compactRev)
		})
	}
}

func runStep(t *testing.T, g *gen, ts *testStore, m *model) {
	ctx := context.Background()
	g.prevWanted = g.r.IntN(2) == 0
	switch x := g.r.IntN(100); {
	case x < 55:
		writeBatch(t, g, ts, m)
	case x < 80:
		r := g.rangeReq()
		got, err := ts.s.Range(ctx, r)
		want, werr := m.Range(r)
		check(t, "range", r, got, err, want, werr)
	case x < 88:
		checkEvents(t, g, ts, m)
	case x < 90:
		if g.r.IntN(2) == 0 {
			ts.waitCompaction()
		}
		ts.reopen()
		if ts.s.Rev() != m.rev || ts.s.CompactRev() != m.compactRev {
			t.Fatalf("after reopen rev %d compact %d, want %d %d", ts.s.Rev(), ts.s.CompactRev(), m.rev, m.compactRev)
		}
	case x < 93:
		checkHashStable(t, ts, m)
	default:
		rev := max(m.compactRev-1, 0) + g.r.Int64N(m.rev-m.compactRev+3)
		var got *pb.CompactionResponse
		var err error
		ts.apply(func(w *Writer) { got, err = w.Compact(rev) })
		want, werr := m.Compact(rev)
		check(t, "compact", &pb.CompactionRequest{Revision: rev}, got, err, want, werr)
	}
}

// writeBatch applies 1-4 write requests in one batch and checks responses and
// events.
func writeBatch(t *testing.T, g *gen, ts *testStore, m *model) {
	start := len(m.events)
	evs := ts.apply(func(w *Writer) {
		for n := 1 + g.r.IntN(4); n > 0; n-- {
			switch x := g.r.IntN(10); {
			case x < 5:
				p := g.putReq()
				got, err := w.Put(p)
				want, werr := m.Put(p)
				check(t, "put", p, got, err, want, werr)
			case x < 7:
				d := g.delReq()
				got, err := w.DeleteRange(d)
				want, werr := m.DeleteRange(d)
				check(t, "delete", d, got, err, want, werr)
			default:
				tx := g.txnReq(0)
				got, err := w.Txn(tx)
				want, werr := m.Txn(tx)
				check(t, "txn", tx, got, err, want, werr)
			}
		}
	})
	want := m.events[start:]
	if len(evs) != len(want) {
		t.Fatalf("batch produced %d events, model %d", len(evs), len(want))
	}
	lazy := ts.opts.PrevValuesWanted != nil && !ts.opts.PrevValuesWanted()
	for i := range evs {
		w := want[i]
		if p := evs[i].PrevKv; lazy && p != nil && w.PrevKv != nil && p.Value == nil {
			// No watcher wanted previous values: the metadata must be exact.
			wp := proto.Clone(w.PrevKv).(*mvccpb.KeyValue)
			wp.Value = nil
			w = &mvccpb.Event{Type: w.Type, Kv: w.Kv, PrevKv: wp}
		}
		if !proto.Equal(evs[i], w) {
			t.Fatalf("event %d:\n got  %v\n want %v", i, evs[i], w)
		}
	}
	if ts.s.Rev() != m.rev {
		t.Fatalf("rev %d, model %d", ts.s.Rev(), m.rev)
	}
}

// checkEvents compares a random history replay with the model's.
func checkEvents(t *testing.T, g *gen, ts *testStore, m *model) {
	from := max(m.compactRev-1, 0) + g.r.Int64N(m.rev-m.compactRev+3)
	key := g.key()
	end := g.end(key)
	limit := g.r.IntN(5)
	got, next, err := ts.s.Events(context.Background(), from, key, end, limit)
	if from <= m.compactRev {
		if !errors.Is(err, ErrCompacted) {
			t.Fatalf("events from %d (compact %d): err = %v", from, m.compactRev, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("events from %d: %v", from, err)
	}
	want := m.eventsFrom(from, key, end)
	wantNext := max(m.rev+1, from)
	if limit > 0 && len(want) >= limit {
		cut := limit
		for cut < len(want) && want[cut].Kv.ModRevision == want[limit-1].Kv.ModRevision {
			cut++
		}
		// The store may stop at any revision after the cut (the first one
		// with an event, matching or not), but not past the next match.
		lastRev := want[cut-1].Kv.ModRevision
		hi := m.rev + 1
		if cut < len(want) {
			hi = want[cut].Kv.ModRevision
		}
		if next <= lastRev || next > hi {
			t.Fatalf("events from %d limit %d: next = %d, want in (%d, %d]", from, limit, next, lastRev, hi)
		}
		want, wantNext = want[:cut], next
	}
	if next != wantNext || len(got) != len(want) {
		t.Fatalf("events from %d [%q,%q) limit %d: %d events next %d, want %d next %d", from, key, end, limit, len(got), next, len(want), wantNext)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("event %d from %d:\n got  %v\n want %v", i, from, got[i], want[i])
		}
	}
}

// checkHashStable checks that HashKV does not change when background
// compaction finishes.
func checkHashStable(t *testing.T, ts *testStore, m *model) {
	h1, c1, r1, err := ts.s.HashKV(0)
	if err != nil {
		t.Fatal(err)
	}
	ts.waitCompaction()
	h2, c2, r2, err := ts.s.HashKV(r1)
	if err != nil || h1 != h2 || c1 != c2 || r1 != r2 || r1 != m.rev || c1 != m.compactRev {
		t.Fatalf("hashkv before/after compaction: %x %d %d / %x %d %d (%v), model rev %d compact %d", h1, c1, r1, h2, c2, r2, err, m.rev, m.compactRev)
	}
}
