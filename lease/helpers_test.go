package lease

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/backend"
	"github.com/cairn-kv/cairn/mvcc"
)

// fakeClock is a Clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// member is a lessor wired to a revisioned store on a backend, like the
// server wires them.
type member struct {
	t     testing.TB
	dir   string
	clock *fakeClock
	l     *Lessor
	be    *backend.Backend
	kv    *mvcc.Store
	index uint64
}

func newMember(t *testing.T) *member {
	t.Helper()
	m := &member{t: t, dir: t.TempDir(), clock: newFakeClock()}
	m.open()
	t.Cleanup(m.close)
	return m
}

func (m *member) open() {
	m.t.Helper()
	be, err := backend.Open(m.dir, backend.Options{})
	if err != nil {
		m.t.Fatal(err)
	}
	m.l = New(Config{Clock: m.clock})
	kv, err := mvcc.New(be, mvcc.Options{LeaseExists: m.l.Exists})
	if err != nil {
		m.t.Fatal(err)
	}
	if err := m.l.Load(be); err != nil {
		m.t.Fatal(err)
	}
	m.be, m.kv, m.index = be, kv, be.AppliedIndex()
}

func (m *member) close() {
	if m.kv == nil {
		return
	}
	_ = m.kv.Close()
	_ = m.be.Close()
	m.kv, m.be = nil, nil
}

// restart reopens the storage and builds a new lessor from it.
func (m *member) restart() {
	m.close()
	m.open()
}

// apply runs fn over one batch like the apply goroutine: Begin, requests,
// Flush, commit, End.
func (m *member) apply(fn func(tx *Tx, w *mvcc.Writer)) {
	m.t.Helper()
	bt := m.be.NewBatch()
	w := m.kv.Write(bt)
	tx := m.l.Begin(bt, w)
	fn(tx, w)
	if err := tx.Flush(); err != nil {
		m.t.Fatal(err)
	}
	m.index++
	if err := bt.Commit(m.index); err != nil {
		m.t.Fatal(err)
	}
	if _, err := w.End(); err != nil {
		m.t.Fatal(err)
	}
	tx.End()
}

func (m *member) grant(id, ttl int64) {
	m.t.Helper()
	m.apply(func(tx *Tx, _ *mvcc.Writer) {
		if _, err := tx.Grant(&pb.LeaseGrantRequest{ID: id, TTL: ttl}); err != nil {
			m.t.Fatalf("grant %x: %v", id, err)
		}
	})
}

func (m *member) put(key string, lease int64) {
	m.t.Helper()
	m.apply(func(_ *Tx, w *mvcc.Writer) {
		if _, err := w.Put(&pb.PutRequest{Key: []byte(key), Value: []byte("v"), Lease: lease}); err != nil {
			m.t.Fatalf("put %s: %v", key, err)
		}
	})
}

func (m *member) revoke(id int64) error {
	m.t.Helper()
	var err error
	m.apply(func(tx *Tx, _ *mvcc.Writer) { _, err = tx.Revoke(&pb.LeaseRevokeRequest{ID: id}) })
	return err
}

func (m *member) checkpoint(cps []*pb.LeaseCheckpoint) {
	m.t.Helper()
	m.apply(func(tx *Tx, _ *mvcc.Writer) {
		if _, err := tx.Checkpoint(&pb.LeaseCheckpointRequest{Checkpoints: cps}); err != nil {
			m.t.Fatal(err)
		}
	})
}

// keys returns the keys attached to id as strings.
func (m *member) keys(id int64) []string {
	m.t.Helper()
	ks, err := Keys(m.be, id)
	if err != nil {
		m.t.Fatal(err)
	}
	var out []string
	for _, k := range ks {
		out = append(out, string(k))
	}
	return out
}

// live returns the live keys of the store with their leases.
func (m *member) live() map[string]int64 {
	m.t.Helper()
	resp, err := m.kv.Range(context.Background(), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		m.t.Fatal(err)
	}
	out := map[string]int64{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = kv.Lease
	}
	return out
}

func wantKeys(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}
