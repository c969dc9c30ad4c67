package raftnode

import (
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// run is the Ready loop; it is the only goroutine that takes a Ready and calls
// Advance and Tick.
func (n *Node) run() {
	defer close(n.donec)
	defer close(n.applyc)

	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	isLeader := false
	for {
		select {
		case <-ticker.C:
			n.mu.Lock()
			n.rn.Tick()
			n.mu.Unlock()
		case <-n.wake:
		case <-n.stopc:
			return
		}
		// Handle Readies until raft has nothing more: what callers stepped
		// in while one was being handled comes out in the next.
		for {
			n.mu.Lock()
			if !n.rn.HasReady() {
				n.mu.Unlock()
				break
			}
			rd := n.rn.Ready()
			n.mu.Unlock()
			if rd.SoftState != nil {
				n.setLeader(rd.SoftState.Lead)
				isLeader = rd.SoftState.RaftState == raft.StateLeader
			}
			if rd.HardState != nil && rd.HardState.GetTerm() != 0 {
				n.term.Store(rd.HardState.GetTerm())
			}
			if !n.handleReady(&rd, isLeader) {
				return
			}
			n.mu.Lock()
			n.rn.Advance(rd)
			n.mu.Unlock()
			select {
			case <-n.stopc:
				return
			default:
			}
		}
	}
}

// handleReady processes one Ready; it returns false if the node must stop.
func (n *Node) handleReady(rd *raft.Ready, isLeader bool) bool {
	for _, rs := range rd.ReadStates {
		select {
		case n.readStates <- rs:
		default:
			n.log.Warn("read state dropped: no reader keeps up", "index", rs.Index)
		}
	}

	persisted := make(chan struct{})
	applied := make(chan struct{})
	hasSnap := !raft.IsEmptySnap(rd.Snapshot)
	if hasSnap || len(rd.CommittedEntries) > 0 {
		ap := &Apply{Entries: rd.CommittedEntries, Persisted: persisted, Applied: applied}
		if !hasSnap && n.alreadyDurable(rd) {
			ap.Persisted = closedChan // the applier need not wait for this Ready's fsync
		}
		if hasSnap {
			ap.Snapshot = rd.Snapshot
		}
		select {
		case n.applyc <- ap:
		case <-n.stopc:
			return false
		}
	} else {
		close(applied)
	}

	msgs := rd.Messages
	if isLeader {
		n.send(msgs)
	} else {
		// Requests a follower forwards to the leader acknowledge nothing
		// this Ready persists: they need not wait for its fsync.
		var early []*raftpb.Message
		early, msgs = splitRequests(msgs)
		n.send(early)
	}
	if err := n.persist(rd); err != nil {
		close(persisted)
		n.fatal(err)
		return false
	}
	close(persisted)
	if c := rd.HardState.GetCommit(); c > n.durableCommit.Load() {
		n.durableCommit.Store(c)
	}
	if hasSnap {
		n.durable = rd.Snapshot.GetMetadata().GetIndex()
		if n.durable > n.durableCommit.Load() {
			n.durableCommit.Store(n.durable)
		}
	}
	if k := len(rd.Entries); k > 0 {
		n.durable = rd.Entries[k-1].GetIndex() // later entries, if any, were cut
	}

	if !isLeader {
		if hasConfChange(rd.CommittedEntries) {
			// Votes must be counted against the configuration that the
			// committed changes produce: wait for the applier.
			select {
			case <-applied:
			case <-n.stopc:
				return false
			}
		}
		n.send(msgs)
	}
	return true
}

// closedChan is an always-closed Persisted channel.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// alreadyDurable reports whether every committed entry of rd was written to
// the WAL by an earlier Ready and is not being rewritten by this one, so
// applying it need not wait for this Ready's fsync. The leader's committed
// entries always are (raft counts the leader's own entries toward a commit
// only once their append was acknowledged, after the fsync); a follower's
// are unless the leader's message carried new entries and a commit index
// covering them together.
//
// A batch with a configuration change always waits: raft refuses a new
// change while it counts an earlier one as unapplied, and it counts it
// applied only at Advance, after this Ready's fsync. Were the change
// applied (and its proposer answered) before that, the proposer's next
// change could be refused.
func (n *Node) alreadyDurable(rd *raft.Ready) bool {
	k := len(rd.CommittedEntries)
	if k == 0 || hasConfChange(rd.CommittedEntries) {
		return false
	}
	limit := n.durable
	if len(rd.Entries) > 0 {
		limit = min(limit, rd.Entries[0].GetIndex()-1)
	}
	return rd.CommittedEntries[k-1].GetIndex() <= limit
}

// splitRequests separates forwarded proposals and read-index requests
// (MsgProp, MsgReadIndex: a follower passing a local request to the leader)
// from the other messages, which may acknowledge what the Ready persists
// (append and vote responses) and so must wait for the fsync. Order is kept
// within each part.
func splitRequests(msgs []*raftpb.Message) (requests, rest []*raftpb.Message) {
	if !slices.ContainsFunc(msgs, isRequest) {
		return nil, msgs // the usual case: nothing to copy
	}
	for _, m := range msgs {
		if isRequest(m) {
			requests = append(requests, m)
		} else {
			rest = append(rest, m)
		}
	}
	return requests, rest
}

func isRequest(m *raftpb.Message) bool {
	t := m.GetType()
	return t == raftpb.MsgProp || t == raftpb.MsgReadIndex
}

// persist writes a Ready's snapshot marker, hard state and entries to the
// WAL and the in-memory log.
func (n *Node) persist(rd *raft.Ready) error {
	if !raft.IsEmptySnap(rd.Snapshot) {
		// The state behind the snapshot was stored durably by the transport's
		// snapshot sink before raft saw the MsgSnap.
		if err := n.cfg.WAL.SaveSnapshot(rd.Snapshot.GetMetadata()); err != nil {
			return err
		}
	}
	if err := n.cfg.WAL.Save(rd.HardState, rd.Entries, rd.MustSync); err != nil {
		return err
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.cfg.Storage.ApplySnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
		if err := n.cfg.Storage.SetHardState(rd.HardState); err != nil {
			return err
		}
	}
	if len(rd.Entries) > 0 {
		if err := n.cfg.Storage.Append(rd.Entries); err != nil {
			return err
		}
	}
	return nil
}

// send hands messages to the transport, diverting snapshots to the
// streaming path.
func (n *Node) send(msgs []*raftpb.Message) {
	if len(msgs) == 0 {
		return
	}
	out := msgs[:0:0]
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgSnap {
			if n.cfg.SnapshotSource == nil {
				n.log.Error("cannot send snapshot: no snapshot source", "to", m.GetTo())
				n.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
				continue
			}
			n.cfg.Transport.SendSnapshot(m, n.cfg.SnapshotSource)
			continue
		}
		out = append(out, m)
	}
	if len(out) > 0 {
		n.cfg.Transport.Send(out)
	}
}

func hasConfChange(ents []*raftpb.Entry) bool {
	for _, e := range ents {
		switch e.GetType() {
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			return true
		}
	}
	return false
}
