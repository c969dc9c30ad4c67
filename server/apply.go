package server

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/apply"
	"github.com/cairn-kv/cairn/backend"
	"github.com/cairn-kv/cairn/internal/failpoint"
	"github.com/cairn-kv/cairn/membership"
	"github.com/cairn-kv/cairn/raftnode"
	"github.com/cairn-kv/cairn/snap"
	"github.com/cairn-kv/cairn/wal"
)

// catchUpEntries is how many applied entries the in-memory raft log keeps
// behind a snapshot (at most --snapshot-count), so a slightly slow follower
// catches up from the log rather than needing a state copy.
const catchUpEntries = 5000

// The in-memory raft log is bounded by bytes as well as by entries: large
// entries (big values, many-op transactions) would otherwise keep up to
// --snapshot-count of them in memory. A snapshot is taken once maxLogBytes
// of entries were applied since the last one, and the entries kept for
// catching up hold about catchUpBytes at most.
const (
	maxLogBytes  = 16 << 20
	catchUpBytes = 4 << 20
)

// pendingResult is a result to hand a waiting proposer once the batch that
// produced it is committed.
type pendingResult struct {
	id  uint64
	res any
}

// applyLoop is the apply goroutine.
func (s *Server) applyLoop() {
	defer s.wg.Done()
	for ap := range s.node.Apply() {
		s.applyMu.Lock()
		err := s.applyOne(ap)
		if err == nil {
			err = s.maybeSnapshot()
		}
		s.applyMu.Unlock()
		if err != nil {
			s.fail(err)
			return
		}
	}
}

// applyOne applies ap and records it as handled.
func (s *Server) applyOne(ap *raftnode.Apply) error {
	err := s.applyBatch(ap)
	close(ap.Applied)
	if err != nil {
		return err
	}
	if n := len(ap.Entries); n > 0 {
		s.handled.Store(ap.Entries[n-1].GetIndex())
	}
	return nil
}

// applyInline applies ap on raft's Ready loop (raftnode.Config.ApplyInline,
// which offers a batch only once every earlier one was applied) unless the
// apply goroutine is still busy after its last batch or a snapshot is due:
// taking one could hold the Ready loop up for long. It saves the hand-off
// to the apply goroutine on the path of a write that has the member to
// itself.
func (s *Server) applyInline(ap *raftnode.Apply) bool {
	if s.fatalErr.Load() != nil || !s.applyMu.TryLock() {
		return false
	}
	if s.snapshotDue() {
		s.applyMu.Unlock()
		return false
	}
	err := s.applyOne(ap)
	s.applyMu.Unlock()
	if err != nil {
		s.fail(err)
	}
	// Let the proposers just answered run before the rest of the Ready.
	runtime.Gosched()
	return true
}

// applyBatch applies one Ready's worth of committed entries (and first an
// incoming snapshot) in one backend batch.
func (s *Server) applyBatch(ap *raftnode.Apply) error {
	if ap.Snapshot != nil {
		<-ap.Persisted
		if err := s.installSnapshot(ap.Snapshot); err != nil {
			return err
		}
	}
	if len(ap.Entries) == 0 {
		return nil
	}
	be, kv := s.store()
	applied := be.AppliedIndex()
	bt := be.NewBatch()
	w := kv.Write(bt)
	s.leaseBegin(bt, w)
	var results []pendingResult
	s.membersChanged = false
	last := applied
	for _, e := range ap.Entries {
		idx := e.GetIndex()
		if idx <= applied {
			if err := s.replayConfChange(be, e); err != nil {
				return err
			}
			continue
		}
		switch e.GetType() {
		case raftpb.EntryNormal:
			if r, ok := s.applyNormal(bt, w, e); ok {
				results = append(results, r)
				failpoint.Hit(failpoint.ApplyMidBatch)
			}
		case raftpb.EntryConfChange:
			r, err := s.applyConfChange(bt, e)
			if err != nil {
				return err
			}
			results = append(results, r)
		default:
			s.log.Error("unsupported entry type: ignored", "index", idx, "type", e.GetType())
		}
		last = idx
		s.logBytes += uint64(len(e.GetData()))
	}
	if last == applied {
		return nil
	}
	if s.membersChanged {
		if err := bt.Set(clusterKey, s.cluster.Encode()); err != nil {
			return err
		}
	}
	if err := s.leaseFlush(); err != nil {
		return err
	}
	// The entries must be durable in our own WAL before the store records
	// them as applied: a restart replays the log from the store's index.
	<-ap.Persisted
	if err := bt.Commit(last); err != nil {
		return fmt.Errorf("server: commit applied batch at %d: %w", last, err)
	}
	evs, err := w.End()
	if err != nil {
		return fmt.Errorf("server: events of applied batch at %d: %w", last, err)
	}
	s.notifyWatchers(evs)
	s.leaseEnd()
	s.setApplied(last)
	for _, r := range results {
		s.waits.Trigger(r.id, r.res)
	}
	return nil
}

// applyNormal applies one normal entry; it returns the proposer's result.
func (s *Server) applyNormal(bt *backend.Batch, w apply.KV, e *raftpb.Entry) (pendingResult, bool) {
	if len(e.GetData()) == 0 {
		return pendingResult{}, false // a new leader's empty entry
	}
	req, ok := s.ownRequest(e.GetData())
	if !ok {
		var err error
		if req, err = apply.Decode(e.GetData()); err != nil {
			s.log.Error("undecodable entry: ignored", "index", e.GetIndex(), "err", err)
			return pendingResult{}, false
		}
	}
	id := apply.RequestID(req)
	if res, ok := s.applyMaintenance(bt, req); ok {
		return pendingResult{id: id, res: res}, true
	}
	if a := req.GetClusterMemberAttrSet(); a != nil {
		err := s.applyMemberAttrs(a.GetMember_ID(), a.GetMemberAttributes().GetName(), a.GetMemberAttributes().GetClientUrls())
		return pendingResult{id: id, res: apply.Result{Err: err}}, true
	}
	if res, ok := s.applyLease(req); ok {
		return pendingResult{id: id, res: res}, true
	}
	return pendingResult{id: id, res: apply.Apply(w, req)}, true
}

// ownRequest returns the request this member proposed as data, if its
// proposer still waits: data is that request's encoding (request IDs are
// unique to the member), so decoding it again would only rebuild it.
func (s *Server) ownRequest(data []byte) (*pb.InternalRaftRequest, bool) {
	id, ok := apply.PeekID(data)
	if !ok {
		return nil, false
	}
	v, _ := s.waits.Value(id)
	req, ok := v.(*pb.InternalRaftRequest)
	return req, ok
}

func (s *Server) applyMemberAttrs(id uint64, name string, clientURLs []string) error {
	ch := membership.Change{Type: membership.ChangePublish, Member: membership.Member{ID: id, Name: name, ClientURLs: clientURLs}}
	if err := s.cluster.Validate(ch); err != nil {
		s.log.Warn("member attributes rejected", "member", fmt.Sprintf("%x", id), "err", err)
		return err
	}
	if err := s.cluster.Apply(ch); err != nil {
		return err
	}
	s.membersChanged = true
	return nil
}

// applyConfChange validates and applies a configuration change, records its
// outcome, and tells raft and the transport.
func (s *Server) applyConfChange(bt *backend.Batch, e *raftpb.Entry) (pendingResult, error) {
	var cc raftpb.ConfChange
	if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
		return pendingResult{}, fmt.Errorf("server: undecodable conf change at %d: %w", e.GetIndex(), err)
	}
	ch, err := membership.ChangeFromConfChange(&cc)
	if err == nil {
		err = s.cluster.Validate(ch)
	}
	outcome := apply.OutcomeApplied
	if err != nil {
		outcome = apply.OutcomeRejected
		cc.NodeId = proto.Uint64(0)
		s.log.Warn("configuration change rejected", "index", e.GetIndex(), "err", err)
	}
	if err := bt.Set(apply.ConfChangeOutcomeKey(e.GetIndex()), outcome); err != nil {
		return pendingResult{}, err
	}
	s.confState, s.confIndex = s.node.ApplyConfChange(&cc), e.GetIndex()
	res := confChangeResult{err: err}
	if err == nil {
		if aerr := s.cluster.Apply(ch); aerr != nil {
			return pendingResult{}, fmt.Errorf("server: apply validated conf change at %d: %w", e.GetIndex(), aerr)
		}
		s.membersChanged = true
		s.afterMemberChange(ch)
		res.members = s.cluster.Members()
	}
	return pendingResult{id: cc.GetId(), res: res}, nil
}

// replayConfChange hands raft a configuration change whose effect the store
// already holds, with the outcome recorded when it was first applied.
func (s *Server) replayConfChange(be *backend.Backend, e *raftpb.Entry) error {
	if e.GetType() != raftpb.EntryConfChange {
		return nil
	}
	var cc raftpb.ConfChange
	if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
		return fmt.Errorf("server: undecodable conf change at %d: %w", e.GetIndex(), err)
	}
	outcome, err := be.Get(apply.ConfChangeOutcomeKey(e.GetIndex()))
	if errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("server: no recorded outcome for the applied conf change at %d", e.GetIndex())
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(outcome, apply.OutcomeApplied) {
		cc.NodeId = proto.Uint64(0)
	}
	s.confState, s.confIndex = s.node.ApplyConfChange(&cc), e.GetIndex()
	return nil
}

// afterMemberChange updates the transport and notices our own removal.
func (s *Server) afterMemberChange(ch membership.Change) {
	id := ch.Member.ID
	switch ch.Type {
	case membership.ChangeAddVoter, membership.ChangeAddLearner:
		if id != s.id {
			s.tr.AddPeer(id, ch.Member.PeerURLs)
		}
	case membership.ChangeUpdatePeerURLs:
		if id != s.id {
			s.tr.UpdatePeer(id, ch.Member.PeerURLs)
		}
	case membership.ChangeRemove:
		if id == s.id {
			s.log.Error("this member was removed from the cluster; stopping", "member", fmt.Sprintf("%x", id))
			s.stopRemoved()
			return
		}
		s.tr.RemovePeer(id)
	}
}

// installSnapshot replaces the store with the state copy received with a
// raft snapshot.
func (s *Server) installSnapshot(sn *raftpb.Snapshot) error {
	idx := sn.GetMetadata().GetIndex()
	be, _ := s.store()
	if be.AppliedIndex() >= idx {
		s.log.Info("store already at or past the received snapshot", "snapshot-index", idx, "applied", be.AppliedIndex())
		return s.snapDir.RemoveStagedThrough(idx)
	}
	staged, at, err := s.snapDir.StagedAtLeast(idx)
	if err != nil {
		return fmt.Errorf("server: raft delivered snapshot %d but no state copy is staged: %w", idx, err)
	}
	s.log.Info("installing state received from the leader", "snapshot-index", idx, "staged-index", at)
	s.closeStore()
	if err := snap.Install(staged, s.dbDir); err != nil {
		return err
	}
	if err := s.openStore(); err != nil {
		return err
	}
	be, _ = s.store()
	cluster, err := s.loadCluster()
	if err != nil {
		return err
	}
	if err := s.cluster.Restore(cluster); err != nil {
		return err
	}
	for _, m := range s.cluster.Members() {
		if m.ID != s.id {
			s.tr.AddPeer(m.ID, m.PeerURLs)
		}
	}
	s.confState = proto.Clone(sn.GetMetadata().GetConfState()).(*raftpb.ConfState)
	s.confIndex, s.snapshotIndex = idx, idx
	s.snapshotsInstalled.Add(1)
	s.setApplied(be.AppliedIndex())
	return s.snapDir.RemoveStagedThrough(at)
}

// snapshotDue reports whether maybeSnapshot would take a snapshot now.
func (s *Server) snapshotDue() bool {
	return s.applied.Load()-s.snapshotIndex >= s.cfg.SnapshotCount || s.logBytes >= maxLogBytes
}

// maybeSnapshot takes a snapshot once SnapshotCount entries (or maxLogBytes
// of entries) were applied since the last one: state made durable, marker
// written, raft log and WAL trimmed.
func (s *Server) maybeSnapshot() error {
	if !s.snapshotDue() {
		return nil
	}
	applied := s.applied.Load()
	since := max(applied-s.snapshotIndex, 1)
	be, _ := s.store()
	durable, err := be.Sync()
	if err != nil {
		return fmt.Errorf("server: make state durable for snapshot: %w", err)
	}
	if durable < applied {
		applied = durable
	}
	// A restart trusts a snapshot marker only up to the commit index the
	// WAL records, which may trail what was applied.
	applied = min(applied, s.node.DurableCommit())
	if applied < s.confIndex {
		// confState is the configuration after a change above the
		// snapshot's index: try again after the next batch.
		return nil
	}
	sn, err := s.raftStorage.CreateSnapshot(applied, s.confState, nil)
	if err != nil {
		if err == raft.ErrSnapOutOfDate {
			s.logBytes = 0
			return nil
		}
		return fmt.Errorf("server: create snapshot at %d: %w", applied, err)
	}
	meta := sn.GetMetadata()
	if err := s.wal.SaveSnapshot(wal.Snapshot{Index: meta.GetIndex(), Term: meta.GetTerm(), ConfState: meta.GetConfState()}); err != nil {
		return err
	}
	// Entries to keep for catching up: catchUpEntries, fewer if the recent
	// entries are large (estimated from their average size).
	keep := min(uint64(catchUpEntries), s.cfg.SnapshotCount)
	if avg := s.logBytes / since; avg > 0 {
		keep = min(keep, max(catchUpBytes/avg, 1))
	}
	s.snapshotIndex = applied
	s.logBytes = 0
	if applied > keep {
		if err := s.raftStorage.Compact(applied - keep); err != nil && err != raft.ErrCompacted {
			return fmt.Errorf("server: compact raft log: %w", err)
		}
	}
	if err := s.wal.ReleaseTo(applied); err != nil {
		return err
	}
	s.log.Info("snapshot taken", "index", applied, "term", meta.GetTerm())
	return nil
}
