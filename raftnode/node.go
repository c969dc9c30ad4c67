package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// ErrStopped is returned by calls made after [Node.Stop].
var ErrStopped = errors.New("raftnode: stopped")

// WAL is the durable log the Ready loop writes to; *wal.WAL implements it
// through a small adapter in the server.
type WAL interface {
	// Save appends the hard state and entries with one write, fsyncing when
	// mustSync is true.
	Save(hs *raftpb.HardState, ents []*raftpb.Entry, mustSync bool) error
	// SaveSnapshot durably records that state up to the snapshot's index is
	// held outside the log.
	SaveSnapshot(meta *raftpb.SnapshotMetadata) error
}

// Transport sends messages to peers without blocking.
type Transport interface {
	Send(msgs []*raftpb.Message)
	SendSnapshot(m *raftpb.Message, open func() (io.ReadCloser, error))
}

// Config configures a [Node].
type Config struct {
	ID             uint64
	ElectionTicks  int
	HeartbeatTicks int
	TickInterval   time.Duration

	// Storage is the in-memory raft log, already loaded with the snapshot and
	// entries read from the WAL.
	Storage   *raft.MemoryStorage
	WAL       WAL
	Transport Transport
	// SnapshotSource opens the state stream for an outgoing MsgSnap.
	SnapshotSource func() (io.ReadCloser, error)
	// Applied is the index up to which the state machine already holds state.
	Applied uint64
	// Peers bootstraps a new cluster; empty restarts or joins one.
	Peers  []raft.Peer
	Logger *slog.Logger
	// RaftLogger is the logger handed to the raft library.
	RaftLogger raft.Logger
	// OnFatal is called when persisting fails; the node stops. Nil panics.
	OnFatal func(error)
	// ApplyInline, if set, is offered a batch on the Ready loop instead of
	// queueing it for the apply goroutine, when that saves the hand-off
	// there and back without holding anything up: the batch's entries are
	// already durable, it holds no snapshot or configuration change, its
	// Ready writes no new entries, and every batch queued before it was
	// applied (its Applied closed). It reports whether it applied the batch
	// and closed Applied; false queues the batch as usual.
	ApplyInline func(*Apply) bool
	// Dropped is called on the Ready loop for a proposal that Propose
	// queued (this node led at the time) and raft then refused with err
	// while it knew a leader: a leadership transfer in progress, or this
	// node removed. The proposer's call has returned by then, so this is
	// how it learns of it. Nil ignores such drops; the proposer waits for
	// its context.
	Dropped func(data []byte, err error)
}

// Apply is one batch of work for the apply goroutine, in log order.
type Apply struct {
	// Snapshot, if not nil, must be installed before Entries are applied, and
	// only after Persisted is closed.
	Snapshot *raftpb.Snapshot
	Entries  []*raftpb.Entry
	// Persisted is closed once Entries (and Snapshot) are durable in the
	// WAL: at once if earlier Readies wrote them all (the leader's committed
	// entries always, a follower's mostly), else when the Ready that
	// produced this batch has been written.
	Persisted <-chan struct{}
	// Applied must be closed by the applier once the batch is applied.
	Applied chan<- struct{}
}

// Status is a point-in-time view of the node.
type Status struct {
	ID, Leader, Term, Commit, Applied uint64
	IsLeader                          bool
	IsLearner                         bool
}

// Node is a running raft member. See the package doc for the Ready loop.
type Node struct {
	cfg Config
	log *slog.Logger

	// mu guards rn. Callers step raft on their own goroutine under mu (a
	// proposal, a peer's message, a tick) and then wake the Ready loop,
	// which takes each Ready and gives it back with Advance under mu too,
	// but handles it (persist, send, apply) without holding it.
	mu sync.Mutex
	rn *raft.RawNode
	// wake (capacity 1) tells the Ready loop that raft may have a Ready.
	wake chan struct{}

	// propMu guards props, the proposals queued on the leader (its own and
	// those its followers forward) for the Ready loop, which steps them all
	// into raft as one MsgProp: one append, one self-acknowledgment and one
	// round of append messages for all of them, rather than one per
	// proposal.
	propMu sync.Mutex
	props  []queuedProp
	// spare is the slice props last held, for reuse (the Ready loop's).
	spare []queuedProp

	lead atomic.Uint64
	term atomic.Uint64

	applyc chan *Apply
	// lastQueued is the Applied channel of the batch last queued on applyc;
	// only the Ready loop uses it.
	lastQueued chan struct{}
	readStates chan raft.ReadState

	// leaderMu guards leaderCh.
	leaderMu sync.Mutex
	leaderCh chan struct{} // closed and replaced whenever the leader changes

	stopc    chan struct{}
	donec    chan struct{}
	stopOnce sync.Once

	// durable is the index of the last entry in the WAL as of the end of
	// the previous Ready (used by the Ready loop only).
	durable uint64
	// durableCommit is the commit index of the last hard state in the WAL.
	durableCommit atomic.Uint64
}

// Start starts the raft node and its Ready loop.
func Start(cfg Config) (*Node, error) {
	if cfg.Storage == nil || cfg.WAL == nil || cfg.Transport == nil {
		return nil, errors.New("raftnode: Storage, WAL and Transport are required")
	}
	if cfg.TickInterval <= 0 || cfg.ElectionTicks <= cfg.HeartbeatTicks || cfg.HeartbeatTicks <= 0 {
		return nil, fmt.Errorf("raftnode: bad timing: tick %v, election %d ticks, heartbeat %d ticks",
			cfg.TickInterval, cfg.ElectionTicks, cfg.HeartbeatTicks)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	rc := &raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   cfg.Storage,
		Applied:                   cfg.Applied,
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  64 << 20,
		MaxUncommittedEntriesSize: 1 << 30,
		MaxInflightMsgs:           512,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		Logger:                    cfg.RaftLogger,
	}
	if rc.Logger == nil {
		rc.Logger = discardRaftLogger{}
	}
	n := &Node{
		cfg:        cfg,
		log:        cfg.Logger,
		applyc:     make(chan *Apply, 16),
		readStates: make(chan raft.ReadState, 64),
		leaderCh:   make(chan struct{}),
		wake:       make(chan struct{}, 1),
		stopc:      make(chan struct{}),
		donec:      make(chan struct{}),
	}
	rn, err := raft.NewRawNode(rc)
	if err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	if len(cfg.Peers) > 0 {
		if err := rn.Bootstrap(cfg.Peers); err != nil {
			return nil, fmt.Errorf("raftnode: bootstrap: %w", err)
		}
	}
	n.rn = rn
	last, err := cfg.Storage.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("raftnode: last index of the log: %w", err)
	}
	n.durable = last
	hs, _, err := cfg.Storage.InitialState()
	if err != nil {
		return nil, fmt.Errorf("raftnode: initial state: %w", err)
	}
	n.durableCommit.Store(hs.GetCommit())
	go n.run()
	return n, nil
}

// DurableCommit is the commit index recorded in the WAL. Applied entries
// may be ahead of it (an entry is applied once it is committed and durable,
// while the hard state saying so may still be on its way to the WAL), so a
// snapshot marker, which a restart trusts only up to the recorded commit
// index, must not be placed above it.
func (n *Node) DurableCommit() uint64 { return n.durableCommit.Load() }

// Apply returns the channel of batches for the apply goroutine. It is
// closed when the node stops.
func (n *Node) Apply() <-chan *Apply { return n.applyc }

// ReadStates returns the channel of ReadIndex answers.
func (n *Node) ReadStates() <-chan raft.ReadState { return n.readStates }

// Done is closed when the Ready loop has exited.
func (n *Node) Done() <-chan struct{} { return n.donec }

// Propose proposes data to be appended to the log.
//
// A follower that knows the leader sends the proposal to it directly, as
// raft would forward it (a MsgProp without a term), but without passing
// through its own raft: raft forwards only in the follower's next Ready,
// which waits for the fsync in progress. Like any forwarded proposal, one
// that reaches a member no longer leading is forwarded on or dropped there,
// and its proposer waits for its context.
//
// The leader queues the proposal for its Ready loop, which steps every
// queued proposal into raft at once before it takes the next Ready (the
// entries would wait for that Ready anyway). Should raft refuse them while
// it knows a leader, Config.Dropped reports each; while it knows none they
// stay queued until it does or their context ends. As on a follower, a
// proposal is made once Propose returned nil, whatever its context does
// afterwards (short of leaving it waiting for a leader).
//
// A member that knows no leader steps the proposal itself and waits for a
// leader, returning the context's error if none comes.
func (n *Node) Propose(ctx context.Context, data []byte) error {
	lead := n.lead.Load()
	if lead == 0 {
		return n.propose(ctx, func() error { return n.rn.Propose(data) })
	}
	if err := n.usable(ctx); err != nil {
		return err
	}
	if lead == n.cfg.ID {
		n.enqueue(ctx, false, &raftpb.Entry{Data: data})
		return nil
	}
	n.cfg.Transport.Send([]*raftpb.Message{{
		Type: raftpb.MsgProp.Enum(), From: new(n.cfg.ID), To: new(lead),
		Entries: []*raftpb.Entry{{Type: raftpb.EntryNormal.Enum(), Data: data}},
	}})
	return nil
}

// enqueue queues entries for the Ready loop's next raft step and wakes it;
// remote marks those of a proposal a follower forwarded.
func (n *Node) enqueue(ctx context.Context, remote bool, ents ...*raftpb.Entry) {
	n.propMu.Lock()
	for _, e := range ents {
		n.props = append(n.props, queuedProp{ctx: ctx, ent: e, remote: remote})
	}
	n.propMu.Unlock()
	n.signal()
}

// queuedProp is a proposal waiting for the Ready loop's raft step: a local
// one, or an entry of a proposal a follower forwarded (remote).
type queuedProp struct {
	ctx    context.Context
	ent    *raftpb.Entry
	remote bool
}

// stepQueuedLocked steps the queued proposals into raft as one MsgProp.
// mu is held. Raft refusing them for want of a leader puts the local ones
// whose proposers still wait back in front of the queue, to be stepped once
// raft knows one (forwarded ones are dropped, as raft drops them); refused
// otherwise, they are returned with the error for Config.Dropped, which the
// caller calls without mu.
func (n *Node) stepQueuedLocked() ([]queuedProp, error) {
	n.propMu.Lock()
	ps := n.props
	if len(ps) == 0 {
		n.propMu.Unlock()
		return nil, nil
	}
	n.props, n.spare = n.spare[:0], nil
	n.propMu.Unlock()
	ents := make([]*raftpb.Entry, len(ps))
	for i, p := range ps {
		ents[i] = p.ent
	}
	err := n.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(n.cfg.ID), Entries: ents})
	switch {
	case err == nil:
		clear(ps)
		n.spare = ps
		return nil, nil
	case errors.Is(err, raft.ErrProposalDropped) && n.rn.BasicStatus().Lead == raft.None:
		live := ps[:0]
		for _, p := range ps {
			if !p.remote && p.ctx.Err() == nil {
				live = append(live, p)
			}
		}
		n.propMu.Lock()
		n.props = append(live, n.props...)
		n.propMu.Unlock()
		return nil, nil
	default:
		return ps, err
	}
}

// reportDropped hands proposals raft refused to Config.Dropped.
func (n *Node) reportDropped(ps []queuedProp, err error) {
	if n.cfg.Dropped != nil {
		for _, p := range ps {
			if !p.remote {
				n.cfg.Dropped(p.ent.GetData(), err)
			}
		}
	}
}

// usable returns ctx's error, or ErrStopped once the node is stopped.
func (n *Node) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-n.stopc:
		return ErrStopped
	default:
		return nil
	}
}

// propose steps a proposal into raft on the caller's goroutine. While raft
// knows no leader it drops proposals; propose then waits for a leader (or
// retries after a tick, in case raft lost and regained its leader between two
// Readies) until ctx ends, as raft.Node's proposals do.
func (n *Node) propose(ctx context.Context, step func() error) error {
	for {
		if err := n.usable(ctx); err != nil {
			return err
		}
		n.mu.Lock()
		err := step()
		leaderless := errors.Is(err, raft.ErrProposalDropped) && n.rn.BasicStatus().Lead == raft.None
		n.mu.Unlock()
		n.signal()
		if !leaderless {
			return err
		}
		// Taken only now, off the usual path: a leader change between the
		// drop and here is caught by the retry after a tick.
		changed := n.LeaderChanged()
		t := time.NewTimer(n.cfg.TickInterval)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
		case <-n.stopc:
		}
		t.Stop()
	}
}

// step runs f on raft under mu and wakes the Ready loop. It does nothing
// once the node is stopped and reports whether f ran.
func (n *Node) step(f func(rn *raft.RawNode)) bool {
	select {
	case <-n.stopc:
		return false
	default:
	}
	n.mu.Lock()
	f(n.rn)
	n.mu.Unlock()
	n.signal()
	return true
}

// signal wakes the Ready loop without blocking.
func (n *Node) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// ProposeConfChange proposes a configuration change.
func (n *Node) ProposeConfChange(ctx context.Context, cc raftpb.ConfChangeI) error {
	return n.propose(ctx, func() error { return n.rn.ProposeConfChange(cc) })
}

// ApplyConfChange applies a committed configuration change to raft and
// returns the resulting configuration. Only the applier calls it; it also
// works after Stop, while the applier finishes its last batch.
func (n *Node) ApplyConfChange(cc raftpb.ConfChangeI) *raftpb.ConfState {
	n.mu.Lock()
	cs := n.rn.ApplyConfChange(cc)
	n.mu.Unlock()
	n.signal()
	return cs
}

// ReadIndex requests a read index; the answer arrives on ReadStates. raft
// drops the request while it knows no leader; the caller retries.
func (n *Node) ReadIndex(ctx context.Context, rctx []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !n.step(func(rn *raft.RawNode) { rn.ReadIndex(rctx) }) {
		return ErrStopped
	}
	return nil
}

// LocalReadIndex returns a read index without a round through raft when
// raft would answer a ReadIndex request at once with the same index: this
// node leads and is the configuration's only voter. It reports false
// otherwise, and also while the leader has no entry of its own term
// committed: a new leader's commit index may trail entries that were
// committed, and acknowledged, before it was elected, which raft's
// one-voter answer does not wait for.
func (n *Node) LocalReadIndex() (uint64, bool) {
	select {
	case <-n.stopc:
		return 0, false
	default:
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.rn.BasicStatus()
	if st.RaftState != raft.StateLeader || st.ID != n.cfg.ID {
		return 0, false
	}
	voters, self := 0, false
	n.rn.WithProgress(func(id uint64, typ raft.ProgressType, _ tracker.Progress) {
		if typ == raft.ProgressTypePeer {
			voters++
			self = self || id == n.cfg.ID
		}
	})
	if voters != 1 || !self {
		return 0, false
	}
	if t, err := n.cfg.Storage.Term(st.GetCommit()); err != nil || t != st.GetTerm() {
		return 0, false
	}
	return st.GetCommit(), true
}

// Step hands a message received from a peer to raft. Like raft.Node's Step,
// it drops without an error what raft would not take from the network: local
// message types, responses from members not in the configuration, proposals
// without entries, and forwarded proposals raft drops (no leader known; the
// proposer times out).
// On the leader a forwarded proposal joins the queue of local ones (see
// Propose), its entries as they came (a configuration change stays one).
func (n *Node) Step(ctx context.Context, m *raftpb.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.GetType() == raftpb.MsgProp && len(m.GetEntries()) == 0 {
		// raft's leader panics on an empty proposal (holding n.mu), and
		// a follower would forward it to the leader: drop it.
		return nil
	}
	if m.GetType() == raftpb.MsgProp && n.lead.Load() == n.cfg.ID {
		// A follower's proposal joins the local ones in the queue.
		if err := n.usable(ctx); err != nil {
			return err
		}
		n.enqueue(context.Background(), true, m.GetEntries()...)
		return nil
	}
	var err error
	if !n.step(func(rn *raft.RawNode) { err = rn.Step(m) }) {
		return ErrStopped
	}
	switch {
	case err == nil, errors.Is(err, raft.ErrStepLocalMsg), errors.Is(err, raft.ErrStepPeerNotFound):
		return nil
	case errors.Is(err, raft.ErrProposalDropped) && m.GetType() == raftpb.MsgProp:
		return nil
	}
	return err
}

// ReportUnreachable tells raft a peer could not be reached.
func (n *Node) ReportUnreachable(id uint64) {
	n.step(func(rn *raft.RawNode) { rn.ReportUnreachable(id) })
}

// ReportSnapshot tells raft how a snapshot transfer ended.
func (n *Node) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	n.step(func(rn *raft.RawNode) { rn.ReportSnapshot(id, status) })
}

// TransferLeadership asks the leader to hand leadership to transferee.
func (n *Node) TransferLeadership(_ context.Context, transferee uint64) {
	n.step(func(rn *raft.RawNode) { rn.TransferLeader(transferee) })
}

// Campaign makes this node start an election.
func (n *Node) Campaign(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var err error
	if !n.step(func(rn *raft.RawNode) { err = rn.Campaign() }) {
		return ErrStopped
	}
	return err
}

// Leader returns the ID of the current leader, or 0 if none is known.
func (n *Node) Leader() uint64 { return n.lead.Load() }

// Term returns the current term as last seen by the Ready loop.
func (n *Node) Term() uint64 { return n.term.Load() }

// LeaderChanged returns a channel closed at the next change of leader.
func (n *Node) LeaderChanged() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderCh
}

// Status returns the node's status.
func (n *Node) Status() Status {
	st := n.RaftStatus()
	s := Status{
		ID: st.ID, Leader: st.Lead, Term: st.HardState.GetTerm(), Commit: st.HardState.GetCommit(), Applied: st.Applied,
		IsLeader: st.RaftState == raft.StateLeader,
	}
	if _, ok := st.Config.Learners[n.cfg.ID]; ok {
		s.IsLearner = true
	}
	return s
}

// RaftStatus returns the raft library's full status, with progress of peers
// when this node leads.
func (n *Node) RaftStatus() raft.Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rn.Status()
}

// Stop stops the Ready loop and waits for it. Calls made after it return
// ErrStopped or do nothing, except ApplyConfChange, which the applier may
// still call for its last batch.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stopc) })
	<-n.donec
}

func (n *Node) setLeader(lead uint64) {
	if n.lead.Swap(lead) == lead {
		return
	}
	n.leaderMu.Lock()
	close(n.leaderCh)
	n.leaderCh = make(chan struct{})
	n.leaderMu.Unlock()
}

func (n *Node) fatal(err error) {
	n.log.Error("raft node cannot persist; stopping", "err", err)
	if n.cfg.OnFatal != nil {
		n.cfg.OnFatal(err)
		return
	}
	panic(err)
}

type discardRaftLogger struct{}

func (discardRaftLogger) Debug(...any)              {}
func (discardRaftLogger) Debugf(string, ...any)     {}
func (discardRaftLogger) Error(...any)              {}
func (discardRaftLogger) Errorf(string, ...any)     {}
func (discardRaftLogger) Info(...any)               {}
func (discardRaftLogger) Infof(string, ...any)      {}
func (discardRaftLogger) Warning(...any)            {}
func (discardRaftLogger) Warningf(string, ...any)   {}
func (discardRaftLogger) Fatal(v ...any)            { panic(fmt.Sprint(v...)) }
func (discardRaftLogger) Fatalf(f string, v ...any) { panic(fmt.Sprintf(f, v...)) }
func (discardRaftLogger) Panic(v ...any)            { panic(fmt.Sprint(v...)) }
func (discardRaftLogger) Panicf(f string, v ...any) { panic(fmt.Sprintf(f, v...)) }
