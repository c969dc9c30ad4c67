package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/cairn-kv/cairn/internal/connmux"
	"github.com/cairn-kv/cairn/internal/failpoint"
	"github.com/cairn-kv/cairn/internal/logutil"
	"github.com/cairn-kv/cairn/membership"
	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/snap"
	"github.com/cairn-kv/cairn/transport"
	"github.com/cairn-kv/cairn/wal"
)

// Version is the etcd API version cairn speaks.
const Version = "3.7.0"

// maxSnapshotBytes bounds a received state copy.
const maxSnapshotBytes = 256 << 30

// ClientAPI is what the member serves on its client URLs: gRPC for
// connections that open with the HTTP/2 preface, HTTP for the rest. Either
// may be nil (not served). The server cannot import the API packages;
// cmd/cairn builds them on the server and passes them here.
type ClientAPI struct {
	GRPC GRPCServer
	HTTP http.Handler
}

// GRPCServer serves gRPC on a listener: grpc-go's *grpc.Server, or the lean
// transport of internal/h2rpc.
type GRPCServer interface {
	Serve(net.Listener) error
	Stop()
}

// Start opens the listeners and starts raft, apply and the transport, and
// serves api on the client URLs.
func (s *Server) Start(api ClientAPI) error {
	var err error
	if s.peerLn, err = listen(s.cfg.ListenPeerURLs); err != nil {
		return err
	}
	if s.clientLn, err = listen(s.cfg.ListenClientURLs); err != nil {
		closeAll(s.peerLn)
		return err
	}
	s.tr, err = transport.New(transport.Config{
		LocalID: s.id, ClusterID: s.cluster.ID(), Raft: raftAdapter{s}, Snapshots: snapSink{s},
		Logger:    s.log.With("component", "transport"),
		OnRemoved: s.onRemovedByPeer,
	})
	if err != nil {
		closeAll(s.peerLn)
		closeAll(s.clientLn)
		return err
	}
	s.readNotifier = newNotifier()
	be, _ := s.store()
	s.setApplied(be.AppliedIndex())
	s.node, err = raftnode.Start(raftnode.Config{
		ID: s.id, ElectionTicks: s.cfg.ElectionTicks(), HeartbeatTicks: 1, TickInterval: s.cfg.HeartbeatInterval,
		Storage: s.raftStorage, WAL: walAdapter{w: s.wal, observeSync: s.metrics.observeWALSync}, Transport: s.tr,
		SnapshotSource: s.openSnapshot, Peers: s.peers,
		Logger:      s.log.With("component", "raft"),
		RaftLogger:  logutil.RaftLogger(s.log.With("component", "raft")),
		OnFatal:     s.fail,
		ApplyInline: s.applyInline,
		Dropped:     s.proposalDropped,
	})
	if err != nil {
		s.tr.Stop()
		closeAll(s.peerLn)
		closeAll(s.clientLn)
		return err
	}
	// Peers are added once the node exists: the transport reports to it.
	for id, urls := range s.initialPeers() {
		s.tr.AddPeer(id, urls)
	}
	s.peerSrv = &http.Server{Handler: s.peerMux(), ReadHeaderTimeout: 10 * time.Second}
	transport.ConfigureServer(s.peerSrv)
	s.wg.Add(4)
	go s.applyLoop()
	go s.readLoop()
	go s.publish()
	go s.campaignIfAlone()
	s.startMetrics()
	s.startLeases()
	s.serve(s.peerSrv, s.peerLn)
	s.serveClients(api)
	s.startCorruptCheck()
	s.log.Info("member started", "name", s.cfg.Name, "member", fmt.Sprintf("%x", s.id),
		"cluster", fmt.Sprintf("%x", s.cluster.ID()), "peer", s.PeerAddrs(), "client", s.ClientAddrs())
	return nil
}

// campaignIfAlone starts an election at once when this member is the only
// voter, instead of waiting out the election timeout (1 s by default, the
// bulk of a single member's restart time). raft starts with the last
// snapshot's configuration and replays later changes as the apply loop goes
// through the committed entries, so it first waits until those are handled;
// only then is raft's configuration the one to judge by. With other voters
// it does nothing: they may have a leader, and the timeout is what lets one
// be heard from first. It gives up when the election timeout passes (the
// timeout itself campaigns then).
func (s *Server) campaignIfAlone() {
	defer s.wg.Done()
	st := s.node.RaftStatus()
	commit, start := st.GetCommit(), st.Applied
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(s.cfg.ElectionTimeout)
	for start < commit && s.handled.Load() < commit {
		select {
		case <-tick.C:
		case <-deadline:
			return
		case <-s.stopc:
			return
		}
	}
	voters := s.node.RaftStatus().Config.Voters.IDs()
	if _, ok := voters[s.id]; !ok || len(voters) != 1 || s.node.Leader() != 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ElectionTimeout)
	defer cancel()
	if err := s.node.Campaign(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("campaign at start failed", "err", err)
	}
}

// initialPeers lists the peers to reach at start.
func (s *Server) initialPeers() map[uint64][]string {
	out := map[uint64][]string{}
	for _, m := range s.cluster.Members() {
		out[m.ID] = m.PeerURLs
	}
	for _, p := range s.peers {
		var c membership.ConfChangeContext
		if err := c.Unmarshal(p.Context); err == nil {
			out[p.ID] = c.Member.PeerURLs
		}
	}
	for _, m := range s.joinPeers {
		out[m.ID] = m.PeerURLs
	}
	delete(out, s.id)
	return out
}

func listen(urls []url.URL) ([]net.Listener, error) {
	var lns []net.Listener
	for _, u := range urls {
		if u.Scheme != "http" {
			closeAll(lns)
			return nil, fmt.Errorf("server: listen on %s: only http is supported so far", u.String())
		}
		ln, err := net.Listen("tcp", u.Host)
		if err != nil {
			closeAll(lns)
			return nil, fmt.Errorf("server: listen on %s: %w", u.String(), err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func closeAll(lns []net.Listener) {
	for _, l := range lns {
		l.Close()
	}
}

func (s *Server) serve(srv *http.Server, lns []net.Listener) {
	for _, ln := range lns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, connmux.ErrClosed) {
				s.log.Error("listener failed", "addr", ln.Addr().String(), "err", err)
			}
		}()
	}
}

func (s *Server) peerMux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(transport.PathPrefix, s.tr.Handler())
	mux.HandleFunc(membersPath, s.serveMembers)
	mux.HandleFunc(leasePathPrefix, s.serveLease)
	mux.HandleFunc(hashKVPath, s.serveHashKV)
	return mux
}

// serveClients serves api on every client listener, split by connmux.
func (s *Server) serveClients(api ClientAPI) {
	h := api.HTTP
	if h == nil {
		h = http.NotFoundHandler()
	}
	s.clientSrv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.grpcSrv = api.GRPC
	var httpLns []net.Listener
	for _, ln := range s.clientLn {
		m := connmux.New(ln)
		s.muxes = append(s.muxes, m)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = m.Serve()
		}()
		httpLns = append(httpLns, m.Other())
		if s.grpcSrv != nil {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				if err := s.grpcSrv.Serve(m.HTTP2()); err != nil && !errors.Is(err, connmux.ErrClosed) {
					s.log.Debug("gRPC listener ended", "err", err)
				}
			}()
		} else {
			go closeEach(m.HTTP2())
		}
	}
	s.serve(s.clientSrv, httpLns)
}

// closeEach closes every connection accepted from l until l is closed.
func closeEach(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// Health reports "" when the member is healthy, else the reason, like
// etcd's /health: a leader must be known and, if linearizable, a
// linearizable read must succeed.
func (s *Server) Health(ctx context.Context, linearizable bool) string {
	if s.node.Leader() == 0 {
		return "RAFT NO LEADER"
	}
	if linearizable {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := s.LinearizableReadNotify(ctx); err != nil {
			return "QGET ERROR: " + err.Error()
		}
	}
	return ""
}

// Stop shuts the member down; a leader first hands leadership to another
// voter.
func (s *Server) Stop() { s.stop(true) }

func (s *Server) stop(transfer bool) {
	s.stopOnce.Do(func() {
		if transfer && s.node != nil {
			s.transferLeadershipForStop()
		}
		close(s.stopc)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if s.grpcSrv != nil {
			s.grpcSrv.Stop()
		}
		for _, m := range s.muxes {
			m.Close()
		}
		if s.clientSrv != nil {
			_ = s.clientSrv.Shutdown(ctx)
		}
		// Incoming peer streams end with the peer server; the transport's
		// Stop waits for their handlers.
		if s.peerSrv != nil {
			_ = s.peerSrv.Close()
		}
		if s.node != nil {
			s.node.Stop()
		}
		if s.tr != nil {
			s.tr.Stop()
		}
		s.wg.Wait()
		s.closeStorage()
		s.log.Info("member stopped", "member", fmt.Sprintf("%x", s.id))
		close(s.donec)
	})
	<-s.donec
}

// Close releases what New opened, for a server that was never started.
func (s *Server) Close() {
	if s.node == nil {
		s.stopOnce.Do(func() {
			close(s.stopc)
			s.closeStorage()
			close(s.donec)
		})
	}
}

// transferLeadershipForStop hands leadership to the most caught-up voter.
func (s *Server) transferLeadershipForStop() {
	st := s.node.RaftStatus()
	if st.RaftState != raft.StateLeader {
		return
	}
	var to, best uint64
	for id, pr := range st.Progress {
		if id != s.id && !pr.IsLearner && pr.Match >= best {
			to, best = id, pr.Match
		}
	}
	if to == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.ElectionTimeout)
	defer cancel()
	if err := s.MoveLeader(ctx, to); err != nil {
		s.log.Warn("leadership transfer before stop failed", "to", fmt.Sprintf("%x", to), "err", err)
	}
}

// MoveLeader transfers leadership to transferee and waits for it.
func (s *Server) MoveLeader(ctx context.Context, transferee uint64) error {
	if s.node.Leader() != s.id {
		return ErrNotLeader
	}
	if _, ok := s.cluster.Member(transferee); !ok {
		return membership.ErrIDNotFound
	}
	s.log.Info("transferring leadership", "to", fmt.Sprintf("%x", transferee))
	s.node.TransferLeadership(ctx, transferee)
	for {
		ch := s.node.LeaderChanged()
		if l := s.node.Leader(); l == transferee {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ErrLeaderTransfer
		}
	}
}

// onRemovedByPeer stops a member that a peer says was removed.
func (s *Server) onRemovedByPeer(by uint64) {
	s.log.Error("a peer reports that this member was removed from the cluster; stopping", "reported-by", fmt.Sprintf("%x", by))
	s.stopRemoved()
}

// stopRemoved records that this member was removed, so it refuses to start
// again from this data dir, and stops it.
func (s *Server) stopRemoved() {
	if !s.removed.Swap(true) {
		note := fmt.Sprintf("member %x was removed from cluster %x at %s\n", s.id, s.cluster.ID(), time.Now().UTC().Format(time.RFC3339))
		if err := os.WriteFile(s.removedMarker(), []byte(note), 0o600); err != nil {
			s.log.Error("cannot record the removal in the data dir", "err", err)
		}
	}
	err := ErrRemoved
	s.fatalErr.CompareAndSwap(nil, &err)
	go s.stop(false)
}

// removedMarker is the file that marks a data dir whose member was removed.
func (s *Server) removedMarker() string {
	return filepath.Join(s.cfg.DataDir, "member", "removed")
}

// openSnapshot streams a consistent copy of the store for a follower.
func (s *Server) openSnapshot() (io.ReadCloser, error) {
	dir := filepath.Join(s.snapDir.Path(), fmt.Sprintf("send-%x.db.tmp", s.reqIDs.Next()))
	be, _ := s.store()
	if err := be.Checkpoint(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		err := snap.WriteArchive(context.Background(), pw, dir)
		os.RemoveAll(dir)
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// raftAdapter exposes the raft node to the transport.
type raftAdapter struct{ s *Server }

func (a raftAdapter) Process(ctx context.Context, m *raftpb.Message) error {
	return a.s.node.Step(ctx, m)
}
func (a raftAdapter) IsIDRemoved(id uint64) bool  { return a.s.cluster.IsRemoved(id) }
func (a raftAdapter) ReportUnreachable(id uint64) { a.s.node.ReportUnreachable(id) }
func (a raftAdapter) ReportSnapshot(id uint64, st raft.SnapshotStatus) {
	a.s.node.ReportSnapshot(id, st)
}

// snapSink stores state copies received from the leader.
type snapSink struct{ s *Server }

func (k snapSink) ReceiveSnapshot(ctx context.Context, m *raftpb.Message, r io.Reader) error {
	idx := m.GetSnapshot().GetMetadata().GetIndex()
	k.s.log.Info("receiving state from the leader", "from", fmt.Sprintf("%x", m.GetFrom()), "index", idx)
	return k.s.snapDir.Receive(ctx, idx, r, maxSnapshotBytes)
}

// walAdapter fits *wal.WAL to raftnode.WAL; observeSync times synced saves.
type walAdapter struct {
	w           *wal.WAL
	observeSync func(time.Duration)
}

func (a walAdapter) Save(hs *raftpb.HardState, ents []*raftpb.Entry, mustSync bool) error {
	if !mustSync {
		return a.w.Save(hs, ents, false)
	}
	failpoint.Hit(failpoint.WALBeforeSync)
	start := time.Now()
	err := a.w.Save(hs, ents, true)
	a.observeSync(time.Since(start))
	failpoint.Hit(failpoint.WALAfterSync)
	return err
}

func (a walAdapter) SaveSnapshot(meta *raftpb.SnapshotMetadata) error {
	return a.w.SaveSnapshot(wal.Snapshot{Index: meta.GetIndex(), Term: meta.GetTerm(), ConfState: meta.GetConfState()})
}
