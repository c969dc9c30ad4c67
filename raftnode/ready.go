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
			n.tick()
		case <-n.wake:
		case <-n.stopc:
			return
		}
		// Handle Readies until raft has nothing more: what callers stepped
		// in while one was being handled comes out in the next. Under
		// steady load that can go on for good, so ticks are taken here too:
		// without them the leader would stop sending heartbeats (which
		// resume a follower being probed) and checking its quorum. The
		// leader's queued proposals are stepped before each Ready.
		for {
			select {
			case <-ticker.C:
				n.tick()
			default:
			}
			n.mu.Lock()
			dropped, err := n.stepQueuedLocked()
			if !n.rn.HasReady() {
				n.mu.Unlock()
				n.reportDropped(dropped, err)
				break
			}
			rd := n.rn.Ready()
			n.mu.Unlock()
			n.reportDropped(dropped, err)
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

// tick advances raft's clock by one tick.
func (n *Node) tick() {
	n.mu.Lock()
	n.rn.Tick()
	n.mu.Unlock()
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

	// The leader sends before it applies: a commit index it advances
	// reaches the followers, which apply (and answer their clients' writes)
	// meanwhile, instead of after the leader's own apply on this loop.
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
		if !n.applyInline(rd, ap) {
			select {
			case n.applyc <- ap:
				n.lastQueued = applied
			case <-n.stopc:
				return false
			}
		}
	} else {
		close(applied)
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

// applyInline offers ap to Config.ApplyInline when applying it on the Ready
// loop holds nothing up: its entries are durable, it holds no snapshot or
// configuration change, rd writes no new entries (so no fsync waits behind
// the apply) and the applier has applied every batch queued before.
func (n *Node) applyInline(rd *raft.Ready, ap *Apply) bool {
	if n.cfg.ApplyInline == nil || ap.Persisted != closedChan || ap.Snapshot != nil || len(rd.Entries) > 0 {
		return false
	}
	if n.lastQueued != nil {
		select {
		case <-n.lastQueued:
		default:
			return false
		}
	}
	return n.cfg.ApplyInline(ap)
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
	msgs = coalesceAppends(msgs)
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

// maxCoalescedAppendBytes bounds the entry data of one coalesced append
// message, as raft's MaxSizePerMsg (set in Start) bounds the ones it builds.
const maxCoalescedAppendBytes = 1 << 20

// coalesceAppends merges each run of append messages (MsgApp) to one
// follower in which every message continues the previous one (its Index is
// the previous one's last entry, its LogTerm that entry's term, same term
// and sender) into a single message carrying all the run's entries and the
// last commit index, as if raft had built them as one. raft builds an
// append message for every proposal it steps, so a Ready of the leader
// holds many small ones per follower; each costs a frame on the wire, a step
// of the follower's raft and an acknowledgement back. raft's flow control
// counts the originals as in flight and frees all of them with the
// acknowledgement of the merged message's last entry. Messages keep their
// order per follower; only directly consecutive appends to the same
// follower are merged. raft's own messages are not modified: a merged
// message is a new one.
func coalesceAppends(msgs []*raftpb.Message) []*raftpb.Message {
	apps := 0
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgApp {
			apps++
		}
	}
	if apps < 2 {
		return msgs
	}
	out := make([]*raftpb.Message, 0, len(msgs))
	lastTo := map[uint64]int{} // follower → index in out of its latest message
	merged := map[int]int{}    // index in out of a merged message → its entry bytes
	for _, m := range msgs {
		to := m.GetTo()
		if i, ok := lastTo[to]; ok {
			if p := out[i]; continuesAppend(p, m) {
				size, own := merged[i]
				if !own {
					size = entryBytes(p.GetEntries())
				}
				if add := entryBytes(m.GetEntries()); size+add <= maxCoalescedAppendBytes {
					if !own {
						p = copyAppend(p)
						out[i] = p
					}
					p.Entries = append(p.Entries, m.GetEntries()...)
					p.Commit = m.Commit
					merged[i] = size + add
					continue
				}
			}
		}
		lastTo[to] = len(out)
		out = append(out, m)
	}
	return out
}

// continuesAppend reports whether append message m directly continues p.
func continuesAppend(p, m *raftpb.Message) bool {
	if p.GetType() != raftpb.MsgApp || m.GetType() != raftpb.MsgApp || !plainAppend(p) || !plainAppend(m) {
		return false
	}
	pe := p.GetEntries()
	if len(pe) == 0 || p.GetTerm() != m.GetTerm() || p.GetFrom() != m.GetFrom() {
		return false
	}
	last := pe[len(pe)-1]
	return m.GetIndex() == last.GetIndex() && m.GetLogTerm() == last.GetTerm() && m.GetCommit() >= p.GetCommit()
}

// plainAppend reports whether m sets only the fields raft sets on an append
// message (type, to, from, term, logTerm, index, entries, commit), which
// copyAppend copies. TestPlainAppendKnowsEveryField fails if a raftpb upgrade
// adds a field this does not check.
func plainAppend(m *raftpb.Message) bool {
	return m.Vote == nil && m.Snapshot == nil && m.Reject == nil && m.RejectHint == nil &&
		m.Context == nil && len(m.Responses) == 0 && len(m.ProtoReflect().GetUnknown()) == 0
}

// plainAppendFields are the raftpb.Message fields plainAppend allows or checks.
var plainAppendFields = []string{
	"type", "to", "from", "term", "logTerm", "index", "entries", "commit", // copied
	"vote", "snapshot", "reject", "rejectHint", "context", "responses", // must be unset
}

// copyAppend returns a new append message with p's fields and its own
// entries slice.
func copyAppend(p *raftpb.Message) *raftpb.Message {
	return &raftpb.Message{
		Type: p.Type, To: p.To, From: p.From, Term: p.Term, LogTerm: p.LogTerm, Index: p.Index,
		Entries: slices.Clone(p.Entries), Commit: p.Commit,
	}
}

func entryBytes(ents []*raftpb.Entry) int {
	n := 0
	for _, e := range ents {
		n += len(e.GetData())
	}
	return n
}
