package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// fakeRaft records what the transport hands to raft.
type fakeRaft struct {
	mu          sync.Mutex
	msgs        []*raftpb.Message           // guarded by mu
	removed     map[uint64]bool             // guarded by mu
	unreachable map[uint64]int              // guarded by mu
	snapReports map[raft.SnapshotStatus]int // guarded by mu
	onProcess   func(m *raftpb.Message) error
	processed   atomic.Int64
}

func newFakeRaft() *fakeRaft {
	return &fakeRaft{removed: map[uint64]bool{}, unreachable: map[uint64]int{}, snapReports: map[raft.SnapshotStatus]int{}}
}

func (f *fakeRaft) Process(_ context.Context, m *raftpb.Message) error {
	var err error
	if f.onProcess != nil {
		err = f.onProcess(m)
	}
	f.mu.Lock()
	f.msgs = append(f.msgs, m)
	f.mu.Unlock()
	f.processed.Add(1)
	return err
}

func (f *fakeRaft) IsIDRemoved(id uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.removed[id]
}

func (f *fakeRaft) ReportUnreachable(id uint64) {
	f.mu.Lock()
	f.unreachable[id]++
	f.mu.Unlock()
}

func (f *fakeRaft) ReportSnapshot(_ uint64, s raft.SnapshotStatus) {
	f.mu.Lock()
	f.snapReports[s]++
	f.mu.Unlock()
}

func (f *fakeRaft) unreachableCount(id uint64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unreachable[id]
}

func (f *fakeRaft) snapCount(s raft.SnapshotStatus) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snapReports[s]
}

// from returns the messages received from id, in order.
func (f *fakeRaft) from(id uint64) []*raftpb.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*raftpb.Message
	for _, m := range f.msgs {
		if m.GetFrom() == id {
			out = append(out, m)
		}
	}
	return out
}

// memSink stores snapshots in memory.
type memSink struct {
	mu     sync.Mutex
	stored map[uint64][]byte // guarded by mu; by snapshot index
	errs   []error           // guarded by mu
}

func (s *memSink) ReceiveSnapshot(_ context.Context, m *raftpb.Message, r io.Reader) error {
	b, err := io.ReadAll(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs = append(s.errs, err)
		return err // discard b
	}
	s.stored[m.GetSnapshot().GetMetadata().GetIndex()] = b
	return nil
}

func (s *memSink) get(index uint64) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.stored[index]
	return b, ok
}

func (s *memSink) errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

// logBuf collects log output for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// node is one member: a transport served on a real socket.
type node struct {
	id   uint64
	tr   *Transport
	raft *fakeRaft
	sink *memSink
	logs *logBuf
	srv  *http.Server
	url  string
	done chan struct{} // closed when Serve returns
}

// startNode starts a member listening on addr ("127.0.0.1:0" for any port).
func startNode(t testing.TB, id, cluster uint64, addr string, opts ...func(*Config)) *node {
	t.Helper()
	n := &node{id: id, raft: newFakeRaft(), sink: &memSink{stored: map[uint64][]byte{}}, logs: &logBuf{}}
	cfg := Config{
		LocalID: id, ClusterID: cluster, Raft: n.raft, Snapshots: n.sink,
		Logger:     slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		DialTimeout: 500 * time.Millisecond, WriteTimeout: time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.tr = tr
	n.serve(t, addr)
	t.Cleanup(n.stop)
	return n
}

func (n *node) serve(t testing.TB, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	n.url = "http://" + ln.Addr().String()
	n.srv = &http.Server{Handler: n.tr.Handler()}
	ConfigureServer(n.srv)
	n.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln)
	}(n.srv, n.done)
}

// stop stops the transport and the server. Idempotent.
func (n *node) stop() {
	n.tr.Stop()
	n.srv.Close()
	<-n.done
}

func msg(from, to, index uint64) *raftpb.Message {
	return &raftpb.Message{
		Type: raftpb.MessageType_MsgApp.Enum(), From: proto.Uint64(from), To: proto.Uint64(to),
		Term: proto.Uint64(1), Index: proto.Uint64(index),
		Entries: []*raftpb.Entry{{Index: proto.Uint64(index + 1), Term: proto.Uint64(1), Data: []byte("payload-" + strconv.FormatUint(index, 10))}},
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for a condition
	}
}

// checkGoroutines registers a cleanup (run after every later cleanup) that
// waits for the goroutine count to settle back to what it was.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// checkInOrder asserts that msgs carry indexes 0..n-1 in order.
func checkInOrder(t *testing.T, msgs []*raftpb.Message, n int) {
	t.Helper()
	if len(msgs) != n {
		t.Fatalf("got %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if m.GetIndex() != uint64(i) {
			t.Fatalf("message %d has index %d: out of order", i, m.GetIndex())
		}
		if want := "payload-" + strconv.FormatUint(uint64(i), 10); string(m.GetEntries()[0].GetData()) != want {
			t.Fatalf("message %d payload %q", i, m.GetEntries()[0].GetData())
		}
	}
}

func isRejected(err error, reason error) bool {
	var rej *RejectedError
	return errors.As(err, &rej) && errors.Is(err, reason)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
