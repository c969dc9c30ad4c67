package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/backend"
	"github.com/cairn-kv/cairn/internal/idgen"
	"github.com/cairn-kv/cairn/internal/wait"
	"github.com/cairn-kv/cairn/membership"
	"github.com/cairn-kv/cairn/mvcc"
	"github.com/cairn-kv/cairn/server/config"
	"github.com/cairn-kv/cairn/snap"
	"github.com/cairn-kv/cairn/vfs"
	"github.com/cairn-kv/cairn/wal"
)

// Backend keys of the server, under the membership prefix 'C'.
var (
	clusterKey = []byte("C/cluster") // the member list
	tokenKey   = []byte("C/token")   // the --initial-cluster-token the member started with
)

// ErrMisconfigured marks a start refused because the configuration does not
// fit the data directory or the cluster.
var ErrMisconfigured = errors.New("server: misconfigured member")

// New opens (or creates) the member's data and prepares it to start; it
// refuses a configuration that does not fit the data directory. Call Start
// to begin serving, or Close to release what New opened.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       log,
		waits:     wait.New(),
		appliedCh: make(chan struct{}),
		readWake:  make(chan struct{}, 1),
		stopc:     make(chan struct{}),
		donec:     make(chan struct{}),
		dbDir:     filepath.Join(cfg.DataDir, "member", "db"),
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "member"), 0o700); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	lock, err := vfs.Default().Lock(filepath.Join(cfg.DataDir, "cairn.lock"))
	if err != nil {
		return nil, fmt.Errorf("server: data dir %s is in use by another member: %w", cfg.DataDir, err)
	}
	s.lock = lock
	if err := s.open(ctx); err != nil {
		s.closeStorage()
		return nil, err
	}
	s.reqIDs = idgen.New(s.id, time.Now())
	return s, nil
}

// open opens the storage and decides how the member starts.
func (s *Server) open(ctx context.Context) (err error) {
	cfg := s.cfg
	if note, err := os.ReadFile(s.removedMarker()); err == nil {
		return fmt.Errorf("%w: %s: remove the data dir %s and add the member again (member add) to rejoin",
			ErrRemoved, strings.TrimSpace(string(note)), cfg.DataDir)
	}
	if s.snapDir, err = snap.OpenDir(filepath.Join(cfg.DataDir, "member", "snap")); err != nil {
		return err
	}
	if err := snap.Recover(s.dbDir); err != nil {
		return err
	}
	if err := s.openStore(); err != nil {
		return err
	}
	switch {
	case wal.Exist(vfs.Default(), cfg.WALDir):
		return s.restart()
	case cfg.InitialClusterState == config.ClusterStateExisting:
		return s.join(ctx)
	default:
		return s.bootstrapNew()
	}
}

// openStore opens the backend and the revisioned store on it.
func (s *Server) openStore() error {
	be, err := backend.Open(s.dbDir, backend.Options{Logger: s.log.With("component", "backend"), OnCorruption: s.onCorruption})
	if err != nil {
		return err
	}
	kv, err := mvcc.New(be, mvcc.Options{
		LeaseExists:      s.leaseExists,
		LatestCacheBytes: latestCacheBytes(s.cfg.LatestCacheBytes),
		PrevValuesWanted: s.prevValuesWanted,
	})
	if err != nil {
		be.Close()
		return err
	}
	if err := s.loadLeases(be); err != nil {
		kv.Close()
		be.Close()
		return err
	}
	s.storeMu.Lock()
	s.be, s.kv = be, kv
	s.storeMu.Unlock()
	s.storeOpened(kv)
	return s.loadAlarmState(be)
}

func (s *Server) closeStore() {
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	if s.kv != nil {
		s.kv.Close()
		s.kv = nil
	}
	if s.be != nil {
		if err := s.be.Close(); err != nil {
			s.log.Warn("closing backend", "err", err)
		}
		s.be = nil
	}
}

func (s *Server) closeStorage() {
	s.closeWatch()
	s.closeStore()
	if s.wal != nil {
		if err := s.wal.Close(); err != nil {
			s.log.Warn("closing WAL", "err", err)
		}
		s.wal = nil
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

func (s *Server) initialCluster() ([]membership.NamedURLs, error) {
	var out []membership.NamedURLs
	for _, m := range s.cfg.InitialCluster {
		n := membership.NamedURLs{Name: m.Name}
		for _, u := range m.PeerURLs {
			n.URLs = append(n.URLs, u.String())
		}
		out = append(out, n)
	}
	return out, nil
}

// bootstrapNew starts the first member set of a new cluster.
func (s *Server) bootstrapNew() error {
	if s.be.AppliedIndex() != 0 {
		return fmt.Errorf("%w: %s holds a store but no WAL at %s: point --data-dir/--wal-dir at the right place, or remove the data dir to start fresh",
			ErrMisconfigured, s.cfg.DataDir, s.cfg.WALDir)
	}
	initial, err := s.initialCluster()
	if err != nil {
		return err
	}
	full, err := membership.NewInitial(s.cfg.InitialClusterToken, initial)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMisconfigured, err)
	}
	self, ok := full.MemberByName(s.cfg.Name)
	if !ok {
		return fmt.Errorf("%w: member %q is not in --initial-cluster", ErrMisconfigured, s.cfg.Name)
	}
	s.id = self.ID
	for _, m := range full.Members() {
		ctxb, err := (&membership.ConfChangeContext{Member: m}).Marshal()
		if err != nil {
			return err
		}
		s.peers = append(s.peers, raft.Peer{ID: m.ID, Context: ctxb})
	}
	// The member list starts empty: the bootstrap configuration changes
	// fill it, as on every member.
	s.cluster, err = membership.NewFromMembers(full.ID(), nil, nil)
	if err != nil {
		return err
	}
	if err := s.saveCluster(); err != nil {
		return err
	}
	s.wal, err = wal.Create(vfs.Default(), s.cfg.WALDir, wal.Metadata{ClusterID: full.ID(), MemberID: s.id}, s.walOptions())
	if err != nil {
		return err
	}
	s.raftStorage = raft.NewMemoryStorage()
	s.confState = &raftpb.ConfState{}
	s.log.Info("bootstrapping a new cluster", "member", fmt.Sprintf("%x", s.id),
		"cluster", fmt.Sprintf("%x", full.ID()), "members", len(s.peers))
	return nil
}

// saveCluster durably writes the member list and the cluster token to the
// backend at the current applied index (used before raft starts).
func (s *Server) saveCluster() error {
	bt := s.be.NewBatch()
	if err := bt.Set(clusterKey, s.cluster.Encode()); err != nil {
		return err
	}
	if err := bt.Set(tokenKey, []byte(s.cfg.InitialClusterToken)); err != nil {
		return err
	}
	if err := bt.Commit(s.be.AppliedIndex()); err != nil {
		return err
	}
	// Not in the raft log, so no replay would restore it: make it durable
	// now (backend commits are not fsynced; a kill can lose them).
	_, err := s.be.Sync()
	return err
}

func (s *Server) walOptions() wal.Options {
	return wal.Options{Logger: s.log.With("component", "wal")}
}

// restart reopens an existing member.
func (s *Server) restart() error {
	fs := vfs.Default()
	markers, err := wal.ValidSnapshots(fs, s.cfg.WALDir)
	if err != nil {
		return err
	}
	if len(markers) == 0 {
		return fmt.Errorf("server: WAL at %s has no snapshot marker", s.cfg.WALDir)
	}
	marker := markers[len(markers)-1]
	if err := s.ensureStateAtLeast(marker.Index); err != nil {
		return err
	}
	s.wal, err = wal.Open(fs, s.cfg.WALDir, marker, s.walOptions())
	if err != nil {
		return err
	}
	md, hs, ents, err := s.wal.ReadAll()
	if err != nil {
		return err
	}
	s.id = md.MemberID
	if s.cluster, err = s.loadCluster(); err != nil {
		return err
	}
	if err := s.checkRestartConfig(md); err != nil {
		return err
	}
	s.raftStorage = raft.NewMemoryStorage()
	cs := marker.ConfState
	if cs == nil {
		cs = &raftpb.ConfState{}
	}
	if marker.Index > 0 {
		if err := s.raftStorage.ApplySnapshot(&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
			Index: proto.Uint64(marker.Index), Term: proto.Uint64(marker.Term), ConfState: cs,
		}}); err != nil {
			return err
		}
	}
	if hs != nil {
		if err := s.raftStorage.SetHardState(hs); err != nil {
			return err
		}
	}
	if err := s.raftStorage.Append(ents); err != nil {
		return err
	}
	s.confState = proto.Clone(cs).(*raftpb.ConfState)
	s.confIndex, s.snapshotIndex = marker.Index, marker.Index
	s.log.Info("restarting member", "member", fmt.Sprintf("%x", s.id), "cluster", fmt.Sprintf("%x", md.ClusterID),
		"snapshot-index", marker.Index, "applied-index", s.be.AppliedIndex(), "log-entries", len(ents), "commit", hs.GetCommit())
	return nil
}

// ensureStateAtLeast makes sure the store holds state at or after index,
// installing a state copy received from a leader if a crash interrupted its
// installation.
func (s *Server) ensureStateAtLeast(index uint64) error {
	if s.be.AppliedIndex() >= index {
		return nil
	}
	staged, at, err := s.snapDir.StagedAtLeast(index)
	if err != nil {
		return fmt.Errorf("server: the store's applied index %d is behind the WAL's snapshot at %d and no received state is staged in %s: the data dir is damaged (%w)",
			s.be.AppliedIndex(), index, s.snapDir.Path(), err)
	}
	s.log.Info("installing the received state left by an interrupted install", "index", at)
	s.closeStore()
	if err := snap.Install(staged, s.dbDir); err != nil {
		return err
	}
	return s.openStore()
}

func (s *Server) loadCluster() (*membership.Cluster, error) {
	b, err := s.be.Get(clusterKey)
	if errors.Is(err, backend.ErrNotFound) {
		return nil, fmt.Errorf("server: the store in %s has no member list", s.dbDir)
	}
	if err != nil {
		return nil, err
	}
	return membership.Decode(b)
}

// checkRestartConfig refuses a data dir that belongs to another cluster or
// member than the flags describe.
func (s *Server) checkRestartConfig(md wal.Metadata) error {
	if md.ClusterID != s.cluster.ID() {
		return fmt.Errorf("server: WAL (cluster %x) and store (cluster %x) in %s belong to different clusters: the data dir is damaged or mixed",
			md.ClusterID, s.cluster.ID(), s.cfg.DataDir)
	}
	if s.cluster.IsRemoved(s.id) {
		return fmt.Errorf("%w: member %x was removed from cluster %x; remove %s and add the member again to rejoin",
			ErrRemoved, s.id, md.ClusterID, s.cfg.DataDir)
	}
	if m, ok := s.cluster.Member(s.id); ok && m.Name != "" && m.Name != s.cfg.Name {
		return fmt.Errorf("%w: data dir %s belongs to member %q, not --name %q", ErrMisconfigured, s.cfg.DataDir, m.Name, s.cfg.Name)
	}
	// --initial-cluster is only read at bootstrap (peer URLs may have been
	// updated since), but the token names the cluster the data belongs to.
	token, err := s.be.Get(tokenKey)
	if err != nil {
		return fmt.Errorf("server: the store in %s has no cluster token: %w", s.dbDir, err)
	}
	if string(token) != s.cfg.InitialClusterToken {
		return fmt.Errorf("%w: data dir %s belongs to cluster %x, created with --initial-cluster-token %q, not %q: use the data dir of this cluster, or remove it to start fresh",
			ErrMisconfigured, s.cfg.DataDir, md.ClusterID, token, s.cfg.InitialClusterToken)
	}
	return nil
}

// latestCacheBytes maps --latest-cache-bytes (0: off) to mvcc's option
// (0: its default, negative: off).
func latestCacheBytes(flag int64) int {
	if flag == 0 {
		return -1
	}
	return int(flag)
}
