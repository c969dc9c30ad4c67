package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/cairn-kv/cairn/backend"
	"github.com/cairn-kv/cairn/internal/connmux"
	"github.com/cairn-kv/cairn/internal/idgen"
	"github.com/cairn-kv/cairn/internal/wait"
	"github.com/cairn-kv/cairn/membership"
	"github.com/cairn-kv/cairn/mvcc"
	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/server/config"
	"github.com/cairn-kv/cairn/snap"
	"github.com/cairn-kv/cairn/transport"
	"github.com/cairn-kv/cairn/wal"
)

// Errors returned to callers of the server's request methods.
var (
	ErrStopped        = errors.New("server: stopped")
	ErrTimeout        = errors.New("server: request timed out")
	ErrNoLeader       = errors.New("server: no leader")
	ErrRemoved        = errors.New("server: this member was removed from the cluster")
	ErrNotLeader      = errors.New("server: not the leader")
	ErrLeaderTransfer = errors.New("server: leadership transfer did not complete")
)

// Server is one running member. Create it with [New], then [Server.Start].
type Server struct {
	cfg config.Config
	log *slog.Logger

	id      uint64
	cluster *membership.Cluster

	lock    io.Closer
	wal     *wal.WAL
	snapDir *snap.Dir
	dbDir   string

	// storeMu guards be and kv, which are swapped when a received state
	// copy is installed. Readers take the read lock.
	storeMu sync.RWMutex
	be      *backend.Backend
	kv      *mvcc.Store

	watch watchState // the watch hub (server/watch.go)

	raftStorage *raft.MemoryStorage
	node        *raftnode.Node
	tr          *transport.Transport
	peers       []raft.Peer // bootstrap only

	waits *wait.Registry
	lease *leaseMember // set by the first openStore
	// renewals batches the keep-alives a follower forwards to the leader.
	renewals renewBatcher
	reqIDs   *idgen.Generator

	applied atomic.Uint64
	// handled is the index of the last entry the apply loop went through,
	// applying it or (at or below the store's index) replaying it.
	handled atomic.Uint64
	// applyMu is held by whoever applies a batch: the apply goroutine, or
	// raft's Ready loop applying one inline (applyInline).
	applyMu   sync.Mutex
	appliedMu sync.Mutex
	appliedCh chan struct{} // closed and replaced whenever applied advances; guarded by appliedMu

	// Owned by the apply goroutine.
	confState      *raftpb.ConfState
	confIndex      uint64 // index at which confState took effect (a conf change or a snapshot)
	snapshotIndex  uint64
	logBytes       uint64 // entry bytes applied since the last snapshot
	membersChanged bool   // in the batch being applied

	joinPeers []membership.Member // join only: the peers to reach first

	readMu       sync.Mutex
	readNotifier *notifier // the next ReadIndex round; guarded by readMu
	readWake     chan struct{}

	peerLn, clientLn   []net.Listener
	peerSrv, clientSrv *http.Server
	grpcSrv            GRPCServer
	muxes              []*connmux.Mux

	stopOnce sync.Once
	stopc    chan struct{} // closed to begin stopping
	donec    chan struct{} // closed when fully stopped
	wg       sync.WaitGroup
	fatalErr atomic.Pointer[error]

	started            atomic.Bool  // Start completed (corrupt.go)
	snapshotsInstalled atomic.Int64 // state copies installed from a leader
	removed            atomic.Bool

	alarms  alarmSet       // active alarms (alarm.go)
	quota   quotaSizer     // backend size estimate for checkQuota (quotasize.go)
	metrics *serverMetrics // nil unless RegisterMetrics was called (metrics.go)
}

// ID returns this member's ID.
func (s *Server) ID() uint64 { return s.id }

// ClusterID returns the cluster's ID.
func (s *Server) ClusterID() uint64 { return s.cluster.ID() }

// Leader returns the current leader's ID, 0 if none.
func (s *Server) Leader() uint64 { return s.node.Leader() }

// IsLearner reports whether this member is a learner in the member list it
// has applied.
func (s *Server) IsLearner() bool { return s.cluster.IsLearner(s.id) }

// IsLeader reports whether this member leads.
func (s *Server) IsLeader() bool { return s.node.Leader() == s.id }

// Term returns the current raft term.
func (s *Server) Term() uint64 { return s.node.Term() }

// Rev returns the store's current revision.
func (s *Server) Rev() int64 {
	_, kv := s.store()
	return kv.Rev()
}

// AppliedIndex returns the index of the last applied entry.
func (s *Server) AppliedIndex() uint64 { return s.applied.Load() }

// Status returns the raft node's status.
func (s *Server) Status() raftnode.Status { return s.node.Status() }

// SnapshotsInstalled counts the state copies this member installed from a
// leader since it started.
func (s *Server) SnapshotsInstalled() int64 { return s.snapshotsInstalled.Load() }

// Members returns the current member list.
func (s *Server) Members() []membership.Member { return s.cluster.Members() }

// Done is closed when the server has stopped, by Stop or by itself (a fatal
// error, or its removal from the cluster).
func (s *Server) Done() <-chan struct{} { return s.donec }

// Err returns why the server stopped by itself, nil otherwise.
func (s *Server) Err() error {
	if p := s.fatalErr.Load(); p != nil {
		return *p
	}
	return nil
}

// PeerAddrs and ClientAddrs return the addresses actually listened on
// (useful with port 0).
func (s *Server) PeerAddrs() []net.Addr   { return addrs(s.peerLn) }
func (s *Server) ClientAddrs() []net.Addr { return addrs(s.clientLn) }

func addrs(lns []net.Listener) []net.Addr {
	out := make([]net.Addr, len(lns))
	for i, l := range lns {
		out[i] = l.Addr()
	}
	return out
}

// store returns the current backend and revisioned store.
func (s *Server) store() (*backend.Backend, *mvcc.Store) {
	s.storeMu.RLock()
	defer s.storeMu.RUnlock()
	return s.be, s.kv
}

// setApplied publishes a new applied index and wakes its waiters.
func (s *Server) setApplied(index uint64) {
	s.applied.Store(index)
	s.appliedMu.Lock()
	close(s.appliedCh)
	s.appliedCh = make(chan struct{})
	s.appliedMu.Unlock()
}

// waitApplied blocks until the applied index reaches index.
func (s *Server) waitApplied(ctx context.Context, index uint64) error {
	for {
		s.appliedMu.Lock()
		ch := s.appliedCh
		s.appliedMu.Unlock()
		if s.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stopc:
			return ErrStopped
		}
	}
}

// fail stops the server because of an unrecoverable error.
func (s *Server) fail(err error) {
	s.fatalErr.CompareAndSwap(nil, &err)
	s.log.Error("member stopping after a fatal error", "err", err)
	go s.stop(false)
}

// requestTimeout bounds a proposal that the caller did not bound.
func (s *Server) requestTimeout() time.Duration {
	return 5*time.Second + 2*s.cfg.ElectionTimeout
}

func (s *Server) String() string {
	return fmt.Sprintf("member %x (%s) of cluster %x", s.id, s.cfg.Name, s.cluster.ID())
}
