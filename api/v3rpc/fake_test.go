package v3rpc

import (
	"context"
	"net"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairn-kv/cairn/backend"
	"github.com/cairn-kv/cairn/mvcc"
)

// fakeMember is a one-process member without raft: requests are applied
// directly to a real mvcc store, one at a time. Leases are only numbers
// (every lease "exists"); LeaseGrant hands out increasing IDs.
type fakeMember struct {
	// Cluster, Maintenance and probes are not faked: calling them panics.
	Backend

	be  *backend.Backend
	kv  *mvcc.Store
	hub *mvcc.WatchHub // gets every write's events

	mu        sync.Mutex    // serializes writes; guards the fields below
	index     uint64        // guarded by mu: applied index of the last batch
	applied   chan struct{} // guarded by mu: closed and replaced after each write
	nextLease int64         // guarded by mu
	addrs     []net.Addr    // guarded by mu
	leader    atomic.Uint64 // what Leader reports; the member itself at first
	learner   atomic.Bool   // what IsLearner reports
}

func newFakeMember(t *testing.T) *fakeMember {
	t.Helper()
	be, err := backend.Open(t.TempDir(), backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := mvcc.New(be, mvcc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hub := mvcc.NewWatchHub(kv, mvcc.WatchHubOptions{})
	t.Cleanup(func() {
		hub.Close()
		_ = kv.Close()
		_ = be.Close()
	})
	f := &fakeMember{be: be, kv: kv, hub: hub, applied: make(chan struct{}), nextLease: 0x100}
	f.leader.Store(9)
	return f
}

func (f *fakeMember) ClusterID() uint64 { return 7 }
func (f *fakeMember) ID() uint64        { return 9 }
func (f *fakeMember) Term() uint64      { return 2 }
func (f *fakeMember) Leader() uint64    { return f.leader.Load() }
func (f *fakeMember) IsLearner() bool   { return f.learner.Load() }

func (f *fakeMember) NewWatchStream() *mvcc.WatchStream { return f.hub.NewStream() }

func (f *fakeMember) Rev() int64 { return f.kv.Rev() }

// LeaseRenew renews any lease for ten seconds.
func (f *fakeMember) LeaseRenew(context.Context, int64) (int64, error) { return 10, nil }

func (f *fakeMember) Health(context.Context, bool) string { return "" }

func (f *fakeMember) ClientAddrs() []net.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addrs
}

func (f *fakeMember) History(ctx context.Context, fromRev int64, key, end []byte, limit int) ([]*mvccpb.Event, int64, error) {
	return f.kv.Events(ctx, fromRev, key, end, limit)
}

func (f *fakeMember) AppliedNotify() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

func (f *fakeMember) LeaseGrant(_ context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextLease++
	return &pb.LeaseGrantResponse{ID: f.nextLease, TTL: r.TTL}, nil
}

// write applies one request as one batch and wakes the waiters.
func write[T any](f *fakeMember, do func(w *mvcc.Writer) (T, error)) (T, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	bt := f.be.NewBatch()
	w := f.kv.Write(bt)
	resp, err := do(w)
	if err != nil {
		var zero T
		return zero, err
	}
	f.index++
	if err := bt.Commit(f.index); err != nil {
		var zero T
		return zero, err
	}
	evs, err := w.End()
	if err != nil {
		var zero T
		return zero, err
	}
	f.hub.Notify(evs)
	close(f.applied)
	f.applied = make(chan struct{})
	return resp, nil
}

func (f *fakeMember) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	return f.kv.Range(ctx, r)
}

func (f *fakeMember) Put(_ context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	return write(f, func(w *mvcc.Writer) (*pb.PutResponse, error) { return w.Put(r) })
}

func (f *fakeMember) DeleteRange(_ context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return write(f, func(w *mvcc.Writer) (*pb.DeleteRangeResponse, error) { return w.DeleteRange(r) })
}

func (f *fakeMember) Txn(_ context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	return write(f, func(w *mvcc.Writer) (*pb.TxnResponse, error) { return w.Txn(r) })
}

func (f *fakeMember) Compact(_ context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return write(f, func(w *mvcc.Writer) (*pb.CompactionResponse, error) { return w.Compact(r.Revision) })
}

// testAPI is an API over a fakeMember, serving gRPC on one loopback
// listener and HTTP (the gateway) on another.
type testAPI struct {
	m    *fakeMember
	api  *API
	conn *grpc.ClientConn // a gRPC client of the API
	http *httptest.Server
}

func startTestAPI(t *testing.T) *testAPI {
	t.Helper()
	return startTestAPIWith(t, Config{MaxRequestBytes: 1 << 20})
}

func startTestAPIWith(t *testing.T, cfg Config) *testAPI {
	t.Helper()
	// The same tests against grpc-go's server: make test runs this package
	// again with the variable set.
	cfg.GRPCGo = os.Getenv("CAIRNTEST_GRPC_SERVER") == "grpc-go"
	m := newFakeMember(t)
	api := New(cfg, m)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.addrs = []net.Addr{ln.Addr()}
	m.mu.Unlock()
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = api.GRPC().Serve(ln)
	}()
	hs := httptest.NewServer(api.HTTP())
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		hs.Close()
		api.GRPC().Stop()
		<-served
		if err := api.Close(); err != nil {
			t.Errorf("close API: %v", err)
		}
	})
	return &testAPI{m: m, api: api, conn: conn, http: hs}
}
