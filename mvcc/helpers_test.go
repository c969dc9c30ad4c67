package mvcc

import (
	"context"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/backend"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// testStore is a store with its backend and the applied index it has
// reached.
type testStore struct {
	t     testing.TB
	dir   string
	be    *backend.Backend
	s     *Store
	opts  Options
	index uint64
}

func openTestStore(t testing.TB, dir string, opts Options) *testStore {
	t.Helper()
	ts := &testStore{t: t, dir: dir, opts: opts}
	ts.open()
	t.Cleanup(ts.close)
	return ts
}

func (ts *testStore) open() {
	ts.t.Helper()
	be, err := backend.Open(ts.dir, backend.Options{})
	if err != nil {
		ts.t.Fatalf("open backend: %v", err)
	}
	s, err := New(be, ts.opts)
	if err != nil {
		ts.t.Fatalf("new store: %v", err)
	}
	ts.be, ts.s, ts.index = be, s, be.AppliedIndex()
}

func (ts *testStore) close() {
	if ts.s == nil {
		return
	}
	_ = ts.s.Close()
	_ = ts.be.Close()
	ts.s, ts.be = nil, nil
}

func (ts *testStore) reopen() {
	ts.close()
	ts.open()
}

// apply runs fn in one writer over one batch, commits and ends it.
func (ts *testStore) apply(fn func(w *Writer)) []*mvccpb.Event {
	ts.t.Helper()
	bt := ts.be.NewBatch()
	w := ts.s.Write(bt)
	fn(w)
	ts.index++
	if err := bt.Commit(ts.index); err != nil {
		ts.t.Fatalf("commit: %v", err)
	}
	evs, err := w.End()
	if err != nil {
		ts.t.Fatalf("end: %v", err)
	}
	return evs
}

func (ts *testStore) put(key, val string) *pb.PutResponse {
	ts.t.Helper()
	var resp *pb.PutResponse
	ts.apply(func(w *Writer) {
		var err error
		if resp, err = w.Put(&pb.PutRequest{Key: []byte(key), Value: []byte(val)}); err != nil {
			ts.t.Fatalf("put %q: %v", key, err)
		}
	})
	return resp
}

func (ts *testStore) del(key, end string) *pb.DeleteRangeResponse {
	ts.t.Helper()
	var resp *pb.DeleteRangeResponse
	ts.apply(func(w *Writer) {
		var err error
		if resp, err = w.DeleteRange(&pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: []byte(end)}); err != nil {
			ts.t.Fatalf("delete %q: %v", key, err)
		}
	})
	return resp
}

func (ts *testStore) compact(rev int64) error {
	var err error
	ts.apply(func(w *Writer) { _, err = w.Compact(rev) })
	return err
}

func (ts *testStore) rangeKeys(r *pb.RangeRequest) []string {
	ts.t.Helper()
	resp, err := ts.s.Range(context.Background(), r)
	if err != nil {
		ts.t.Fatalf("range: %v", err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

func (ts *testStore) waitCompaction() {
	ts.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ts.s.WaitCompaction(ctx); err != nil {
		ts.t.Fatalf("wait compaction: %v", err)
	}
}
