package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// memWAL records what the Ready loop persisted; it can be told to fail.
type memWAL struct {
	mu      sync.Mutex
	ents    []*raftpb.Entry
	hs      *raftpb.HardState
	snaps   []uint64
	saves   int
	failErr error
	// gate, if set, holds every Save with entries until it receives a
	// permit (or the channel is closed).
	gate chan struct{}
	// held counts Saves that have waited at the gate.
	held atomic.Int32
	// delay, if set, is how long every Save with entries takes.
	delay time.Duration
}

func (w *memWAL) Save(hs *raftpb.HardState, ents []*raftpb.Entry, mustSync bool) error {
	w.mu.Lock()
	gate, delay := w.gate, w.delay
	w.mu.Unlock()
	if gate != nil && len(ents) > 0 {
		w.held.Add(1)
		<-gate
	}
	if len(ents) > 0 {
		time.Sleep(delay)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failErr != nil {
		return w.failErr
	}
	w.saves++
	if hs != nil && !raft.IsEmptyHardState(hs) {
		w.hs = proto.Clone(hs).(*raftpb.HardState)
	}
	w.ents = append(w.ents, ents...)
	return nil
}

func (w *memWAL) SaveSnapshot(meta *raftpb.SnapshotMetadata) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.snaps = append(w.snaps, meta.GetIndex())
	return nil
}

// memNet delivers messages between nodes in-process.
type memNet struct {
	mu    sync.Mutex
	nodes map[uint64]*Node
	down  map[uint64]bool
	// sent counts messages handed for delivery, by sender, receiver and type.
	sent map[[3]uint64]int
}

// delivered returns how many messages of type typ from went to to.
func (n *memNet) delivered(from, to uint64, typ raftpb.MessageType) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sent[[3]uint64{from, to, uint64(typ)}]
}

type memTransport struct {
	net  *memNet
	from uint64
}

func (t *memTransport) Send(msgs []*raftpb.Message) {
	for _, m := range msgs {
		t.net.mu.Lock()
		dst := t.net.nodes[m.GetTo()]
		cut := t.net.down[m.GetTo()] || t.net.down[t.from]
		if dst != nil && !cut {
			t.net.sent[[3]uint64{t.from, m.GetTo(), uint64(m.GetType())}]++
		}
		t.net.mu.Unlock()
		if dst == nil || cut {
			continue
		}
		m := proto.Clone(m).(*raftpb.Message)
		go func() { _ = dst.Step(context.Background(), m) }()
	}
}

func (t *memTransport) SendSnapshot(m *raftpb.Message, _ func() (io.ReadCloser, error)) {
	t.Send([]*raftpb.Message{m})
}

type testMember struct {
	node    *Node
	wal     *memWAL
	mu      sync.Mutex
	applied []string
	fatal   chan error
	// offers counts ApplyInline's calls, inlined the batches it applied
	// (it takes every other offer), when startClusterOpts set it up.
	offers, inlined atomic.Int64
	// dropped receives what Config.Dropped reports: data and error.
	dropped chan droppedProp
	// inlineHook, if set, makes applyInline take every offer and call it
	// before applying.
	inlineHook atomic.Pointer[func(*Apply)]
}

type droppedProp struct {
	data string
	err  error
}

func (tm *testMember) appliedData() []string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return append([]string(nil), tm.applied...)
}

// applyLoop is a minimal applier: it records normal entries and applies
// configuration changes.
func (tm *testMember) applyLoop() {
	for ap := range tm.node.Apply() {
		<-ap.Persisted // as the server's applier: nothing is applied before it is durable
		tm.apply(ap)
	}
}

// applyInline is Config.ApplyInline: it applies every other batch offered.
func (tm *testMember) applyInline(ap *Apply) bool {
	if hook := tm.inlineHook.Load(); hook != nil {
		(*hook)(ap)
		tm.apply(ap)
		return true
	}
	if tm.offers.Add(1)%2 == 0 {
		return false
	}
	select {
	case <-ap.Persisted:
	default:
		panic("ApplyInline was offered a batch that is not durable yet")
	}
	tm.apply(ap)
	tm.inlined.Add(1)
	return true
}

func (tm *testMember) apply(ap *Apply) {
	for _, e := range ap.Entries {
		switch e.GetType() {
		case raftpb.EntryNormal:
			if len(e.GetData()) > 0 {
				tm.mu.Lock()
				tm.applied = append(tm.applied, string(e.GetData()))
				tm.mu.Unlock()
			}
		case raftpb.EntryConfChange:
			var cc raftpb.ConfChange
			if err := proto.Unmarshal(e.GetData(), &cc); err == nil {
				tm.node.ApplyConfChange(&cc)
			}
		}
	}
	close(ap.Applied)
}

func startCluster(t *testing.T, n int) (*memNet, []*testMember) {
	t.Helper()
	return startClusterTicks(t, n, 10)
}

// startClusterTicks starts n members with an election timeout of
// electionTicks ticks of 5 ms.
func startClusterTicks(t *testing.T, n, electionTicks int) (*memNet, []*testMember) {
	t.Helper()
	return startClusterOpts(t, n, electionTicks, false)
}

// startClusterOpts is startClusterTicks, with every member's Config.ApplyInline
// set to testMember.applyInline if inline.
func startClusterOpts(t *testing.T, n, electionTicks int, inline bool) (*memNet, []*testMember) {
	t.Helper()
	net := &memNet{nodes: map[uint64]*Node{}, down: map[uint64]bool{}, sent: map[[3]uint64]int{}}
	var peers []raft.Peer
	for i := 1; i <= n; i++ {
		peers = append(peers, raft.Peer{ID: uint64(i)})
	}
	members := make([]*testMember, n)
	net.mu.Lock()
	defer net.mu.Unlock()
	for i := range members {
		id := uint64(i + 1)
		tm := &testMember{wal: &memWAL{}, fatal: make(chan error, 1), dropped: make(chan droppedProp, 64)}
		cfg := Config{
			ID: id, ElectionTicks: electionTicks, HeartbeatTicks: 1, TickInterval: 5 * time.Millisecond,
			Storage: raft.NewMemoryStorage(), WAL: tm.wal,
			Transport: &memTransport{net: net, from: id},
			Peers:     peers,
			OnFatal:   func(err error) { tm.fatal <- err },
			Dropped:   func(data []byte, err error) { tm.dropped <- droppedProp{string(data), err} },
		}
		if inline {
			cfg.ApplyInline = tm.applyInline
		}
		node, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		tm.node = node
		net.nodes[id] = node
		members[i] = tm
		go tm.applyLoop()
	}
	t.Cleanup(func() {
		for _, m := range members {
			m.node.Stop()
		}
	})
	return net, members
}

func waitLeader(t *testing.T, members []*testMember) *testMember {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range members {
			if st := m.node.Status(); st.IsLeader {
				return m
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no leader elected within 10s")
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCommittedEntriesReachEveryMemberInOrder(t *testing.T) {
	_, members := startCluster(t, 3)
	leader := waitLeader(t, members)
	const total = 50
	for i := 0; i < total; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := leader.node.Propose(ctx, []byte(fmt.Sprintf("e%03d", i))); err != nil {
			cancel()
			t.Fatalf("propose %d: %v", i, err)
		}
		cancel()
	}
	for _, m := range members {
		waitFor(t, "all entries applied", func() bool { return len(m.appliedData()) >= total })
		got := m.appliedData()
		for i := 0; i < total; i++ {
			if want := fmt.Sprintf("e%03d", i); got[i] != want {
				t.Fatalf("member %d entry %d = %q, want %q", m.node.cfg.ID, i, got[i], want)
			}
		}
		m.wal.mu.Lock()
		persisted := len(m.wal.ents)
		m.wal.mu.Unlock()
		if persisted < total {
			t.Errorf("member %d persisted %d entries, want >= %d", m.node.cfg.ID, persisted, total)
		}
	}
}

func TestNewLeaderAfterLeaderIsolated(t *testing.T) {
	net, members := startCluster(t, 3)
	old := waitLeader(t, members)
	oldID := old.node.cfg.ID
	net.mu.Lock()
	net.down[oldID] = true
	net.mu.Unlock()
	var rest []*testMember
	for _, m := range members {
		if m != old {
			rest = append(rest, m)
		}
	}
	// The member that lost the election learns of the winner with its
	// first message: wait for both to name it.
	waitFor(t, "a new leader among the majority, known to both", func() bool {
		l := rest[0].node.Leader()
		return l != 0 && l != oldID && rest[1].node.Leader() == l
	})
	if l := rest[0].node.Leader(); !slices.ContainsFunc(rest, func(m *testMember) bool { return m.node.cfg.ID == l && m.node.Status().IsLeader }) {
		t.Fatalf("majority sees leader %d, which is not one of them leading (old %d)", l, oldID)
	}
}

func TestPersistFailureIsFatal(t *testing.T) {
	_, members := startCluster(t, 1)
	m := waitLeader(t, members)
	boom := errors.New("disk on fire")
	m.wal.mu.Lock()
	m.wal.failErr = boom
	m.wal.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = m.node.Propose(ctx, []byte("x"))
	select {
	case err := <-m.fatal:
		if !errors.Is(err, boom) {
			t.Fatalf("fatal error = %v, want %v", err, boom)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a failed WAL save did not stop the node")
	}
	select {
	case <-m.node.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Ready loop still running after a fatal persist error")
	}
	if got := m.appliedData(); len(got) != 0 {
		t.Fatalf("entry applied although it was never persisted: %q", got)
	}
}

func TestStartRejectsBadTiming(t *testing.T) {
	_, err := Start(Config{Storage: raft.NewMemoryStorage(), WAL: &memWAL{}, Transport: &memTransport{},
		TickInterval: time.Millisecond, ElectionTicks: 1, HeartbeatTicks: 1})
	if err == nil {
		t.Fatal("Start accepted election ticks <= heartbeat ticks")
	}
}

// holdSaves makes every Save with entries of m wait for a permit on the
// returned channel, which is closed at the end of the test.
func holdSaves(t *testing.T, m *testMember) chan struct{} {
	gate := make(chan struct{})
	m.wal.mu.Lock()
	m.wal.gate = gate
	m.wal.mu.Unlock()
	t.Cleanup(func() { close(gate) })
	return gate
}

// stallFollower stops f's Ready loop in the Save of an entry e1 proposed on
// leader and returns the gate that holds it there.
func stallFollower(ctx context.Context, t *testing.T, leader, f *testMember) chan struct{} {
	t.Helper()
	gate := holdSaves(t, f)
	if err := leader.node.Propose(ctx, []byte("e1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the follower's Ready loop holds in a Save", func() bool { return f.wal.held.Load() == 1 })
	return gate
}

// followerOf returns a member other than leader.
func followerOf(members []*testMember, leader *testMember) *testMember {
	for _, m := range members {
		if m != leader {
			return m
		}
	}
	return nil
}

// A follower passes a read-index request on to the leader without waiting
// for the fsync of the Ready that carries it: here that fsync never
// finishes, and the leader still receives the request.
func TestFollowerForwardsReadIndexBeforeItsFsync(t *testing.T) {
	net, members := startCluster(t, 3)
	leader := waitLeader(t, members)
	f := followerOf(members, leader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gate := stallFollower(ctx, t, leader, f)
	// e2 reaches f's raft while its loop is stuck, then f's read-index
	// request: both land in f's next Ready.
	if err := leader.node.Propose(ctx, []byte("e2")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "leader applies e2", func() bool { return slices.Contains(leader.appliedData(), "e2") })
	time.Sleep(50 * time.Millisecond) // e2's MsgApp stepped by f
	if err := f.node.ReadIndex(ctx, []byte("r")); err != nil {
		t.Fatal(err)
	}
	gate <- struct{}{} // e1's Save finishes; the next Ready (e2, MsgReadIndex) holds in its Save
	waitFor(t, "the follower's next Save holds", func() bool { return f.wal.held.Load() == 2 })
	waitFor(t, "leader receives the read-index request while f's fsync hangs", func() bool {
		return net.delivered(f.node.cfg.ID, leader.node.cfg.ID, raftpb.MsgReadIndex) > 0
	})
}

// The leader applies committed entries without waiting for the fsync of the
// Ready that delivers them, which persists newer entries: its committed
// entries were made durable by earlier Readies.
func TestLeaderAppliesWhileNextFsyncHangs(t *testing.T) {
	_, members := startCluster(t, 3)
	leader := waitLeader(t, members)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// First e0, so that the new leader's own entry is written and applied:
	// its Save must not be the one held below.
	if err := leader.node.Propose(ctx, []byte("e0")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "leader applies e0", func() bool { return slices.Contains(leader.appliedData(), "e0") })
	gate := holdSaves(t, leader)
	// The leader's loop stops in the Save of e1; the followers store e1,
	// so e1 commits; e2 waits in the leader's raft.
	if err := leader.node.Propose(ctx, []byte("e1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "leader commits e1", func() bool {
		st := leader.node.RaftStatus()
		return st.GetCommit() > st.Applied
	})
	if err := leader.node.Propose(ctx, []byte("e2")); err != nil {
		t.Fatal(err)
	}
	gate <- struct{}{} // e1's Save finishes; the next Ready (e1 committed, e2 to write) holds in its Save
	waitFor(t, "leader applies e1 while e2's fsync hangs", func() bool {
		return slices.Contains(leader.appliedData(), "e1")
	})
}

func TestAlreadyDurable(t *testing.T) {
	ents := func(idx ...uint64) []*raftpb.Entry {
		var out []*raftpb.Entry
		for _, i := range idx {
			out = append(out, &raftpb.Entry{Index: proto.Uint64(i)})
		}
		return out
	}
	n := &Node{durable: 10}
	for _, c := range []struct {
		name      string
		committed []*raftpb.Entry
		entries   []*raftpb.Entry
		want      bool
	}{
		{"nothing committed", nil, ents(11), false},
		{"committed all written before", ents(8, 9, 10), ents(11, 12), true},
		{"committed beyond the WAL", ents(10, 11), nil, false},
		{"committed entry rewritten by this Ready", ents(9, 10), ents(10, 11), false},
		{"committed entry written by this Ready", ents(11), ents(11), false},
		{"no new entries", ents(10), nil, true},
		{"a configuration change", append(ents(9), &raftpb.Entry{Index: proto.Uint64(10), Type: raftpb.EntryConfChange.Enum()}), nil, false},
	} {
		if got := n.alreadyDurable(&raft.Ready{CommittedEntries: c.committed, Entries: c.entries}); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// A follower sends a client's proposal to the leader itself, not through
// its raft: here the follower's Ready loop hangs in a Save for good, and
// the leader still commits and applies the follower's proposal with the
// other follower.
func TestFollowerProposalBypassesItsStuckReadyLoop(t *testing.T) {
	_, members := startCluster(t, 3)
	leader := waitLeader(t, members)
	f := followerOf(members, leader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor(t, "the follower knows the leader", func() bool { return f.node.Leader() == leader.node.cfg.ID })
	stallFollower(ctx, t, leader, f) // and it stays there
	if err := f.node.Propose(ctx, []byte("p")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "leader applies the stuck follower's proposal", func() bool { return slices.Contains(leader.appliedData(), "p") })
}

// raft drops a proposal while it knows no leader. Node.Propose steps raft
// on the caller's goroutine, so it must wait for a leader itself, as
// raft.Node's Propose did, rather than fail: here the proposal is made
// before the single member's first election and must be applied after it.
func TestProposalBeforeTheFirstElectionWaitsForIt(t *testing.T) {
	_, members := startClusterTicks(t, 1, 40) // the first election comes after 200-400 ms
	m := members[0]
	if st := m.node.RaftStatus(); st.Lead != raft.None {
		t.Fatalf("leader %x already known; the test needs a leaderless start", st.Lead)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.node.Propose(ctx, []byte("early")); err != nil {
		t.Fatalf("propose before the first election: %v", err)
	}
	waitFor(t, "the early proposal is applied", func() bool { return slices.Contains(m.appliedData(), "early") })

	// A proposal whose context ends while no leader is known fails with
	// the context's error.
	_, alone := startClusterTicks(t, 3, 10)
	for _, o := range alone[1:] {
		o.node.Stop()
	}
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := alone[0].node.Propose(short, []byte("never")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("leaderless propose = %v, want %v", err, context.DeadlineExceeded)
	}
}

// Step takes messages from peers. What raft would not take from the network
// (a local message type, a response from a member outside the
// configuration, a forwarded proposal on a member that knows no leader) is
// dropped without an error, as raft.Node's Step dropped it, so the
// transport does not log it as refused.
func TestStepDropsWhatRaftWouldNotTakeFromPeers(t *testing.T) {
	_, members := startClusterTicks(t, 3, 1000) // no election during the test
	n := members[0].node
	ctx := context.Background()
	term := n.RaftStatus().GetTerm()
	for _, m := range []*raftpb.Message{
		{Type: raftpb.MsgHup.Enum(), From: proto.Uint64(2), To: proto.Uint64(1)},
		{Type: raftpb.MsgAppResp.Enum(), From: proto.Uint64(9), To: proto.Uint64(1), Term: proto.Uint64(0)},
		{Type: raftpb.MsgProp.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Entries: []*raftpb.Entry{{Data: []byte("p")}}},
	} {
		if err := n.Step(ctx, m); err != nil {
			t.Errorf("Step(%v from %d) = %v, want nil", m.GetType(), m.GetFrom(), err)
		}
	}
	if st := n.RaftStatus(); st.Lead != raft.None || st.GetTerm() != term || st.RaftState != raft.StateFollower {
		t.Fatalf("status after the dropped messages: lead %x term %d %v, want a leaderless follower at term %d", st.Lead, st.GetTerm(), st.RaftState, term)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := n.Step(canceled, &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(2), To: proto.Uint64(1)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Step with a canceled context = %v, want %v", err, context.Canceled)
	}
}

func TestCoalesceAppends(t *testing.T) {
	ent := func(idx, term uint64, size int) *raftpb.Entry {
		return &raftpb.Entry{Index: proto.Uint64(idx), Term: proto.Uint64(term), Data: make([]byte, size)}
	}
	app := func(to, index, logTerm, commit uint64, ents ...*raftpb.Entry) *raftpb.Message {
		return &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: proto.Uint64(1), To: proto.Uint64(to),
			Term: proto.Uint64(2), Index: proto.Uint64(index), LogTerm: proto.Uint64(logTerm), Commit: proto.Uint64(commit),
			Entries: ents}
	}
	hb := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(1), To: proto.Uint64(3), Term: proto.Uint64(2)}
	first := app(2, 5, 2, 5, ent(6, 2, 1), ent(7, 2, 1))
	in := []*raftpb.Message{
		first,
		app(3, 5, 2, 5, ent(6, 2, 1), ent(7, 2, 1)),
		app(2, 7, 2, 6, ent(8, 2, 1)),
		hb, // separates 3's appends: not merged across it
		app(3, 7, 2, 6, ent(8, 2, 1)),
		app(2, 8, 2, 8),                // commit only: merged, carrying commit 8
		app(2, 9, 2, 8, ent(10, 2, 1)), // a gap (index 9 was not sent): not merged
	}
	out := coalesceAppends(in)
	type view struct {
		to, index, commit uint64
		ents              []uint64
	}
	var got []view
	for _, m := range out {
		if m.GetType() != raftpb.MsgApp {
			got = append(got, view{to: m.GetTo()})
			continue
		}
		v := view{to: m.GetTo(), index: m.GetIndex(), commit: m.GetCommit()}
		for _, e := range m.GetEntries() {
			v.ents = append(v.ents, e.GetIndex())
		}
		got = append(got, v)
	}
	want := []view{
		{to: 2, index: 5, commit: 8, ents: []uint64{6, 7, 8}},
		{to: 3, index: 5, commit: 5, ents: []uint64{6, 7}},
		{to: 3},
		{to: 3, index: 7, commit: 6, ents: []uint64{8}},
		{to: 2, index: 9, commit: 8, ents: []uint64{10}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("coalesced:\n got %v\nwant %v", got, want)
	}
	if len(first.GetEntries()) != 2 || first.GetCommit() != 5 || out[0] == first {
		t.Fatalf("raft's own message was modified or reused: %d entries, commit %d", len(first.GetEntries()), first.GetCommit())
	}

	for _, c := range []struct {
		name string
		next *raftpb.Message
	}{
		{"another term", func() *raftpb.Message { m := app(2, 7, 2, 6, ent(8, 3, 1)); m.Term = proto.Uint64(3); return m }()},
		{"log term does not match", app(2, 7, 1, 6, ent(8, 2, 1))},
		{"commit goes back", app(2, 7, 2, 4, ent(8, 2, 1))},
		{"a field raft does not set on appends", func() *raftpb.Message { m := app(2, 7, 2, 6, ent(8, 2, 1)); m.Context = []byte("x"); return m }()},
		{"over the size bound", app(2, 7, 2, 6, ent(8, 2, maxCoalescedAppendBytes))},
	} {
		if out := coalesceAppends([]*raftpb.Message{app(2, 5, 2, 5, ent(6, 2, 1), ent(7, 2, 1)), c.next}); len(out) != 2 {
			t.Errorf("%s: merged into %d message(s), want 2", c.name, len(out))
		}
	}
}

// After Stop nothing steps raft any more: calls report ErrStopped.
func TestCallsAfterStopReportStopped(t *testing.T) {
	_, members := startCluster(t, 1)
	n := waitLeader(t, members).node
	n.Stop()
	ctx := context.Background()
	hb := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(2), To: proto.Uint64(1)}
	if err := n.Step(ctx, hb); !errors.Is(err, ErrStopped) {
		t.Errorf("Step after Stop = %v, want %v", err, ErrStopped)
	}
	if err := n.ReadIndex(ctx, []byte("r")); !errors.Is(err, ErrStopped) {
		t.Errorf("ReadIndex after Stop = %v, want %v", err, ErrStopped)
	}
	if err := n.Propose(ctx, []byte("p")); !errors.Is(err, ErrStopped) {
		t.Errorf("Propose after Stop = %v, want %v", err, ErrStopped)
	}
	if err := n.Campaign(ctx); !errors.Is(err, ErrStopped) {
		t.Errorf("Campaign after Stop = %v, want %v", err, ErrStopped)
	}
}

// plainAppend checks raftpb.Message's fields by name; a field added by a
// raftpb upgrade must be looked at before appends carrying it are merged.
func TestPlainAppendKnowsEveryField(t *testing.T) {
	fields := (&raftpb.Message{}).ProtoReflect().Descriptor().Fields()
	var got []string
	for i := range fields.Len() {
		got = append(got, string(fields.Get(i).Name()))
	}
	slices.Sort(got)
	want := slices.Clone(plainAppendFields)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("raftpb.Message fields %v, plainAppend knows %v", got, want)
	}
	for _, m := range []*raftpb.Message{
		{Vote: proto.Uint64(1)}, {Snapshot: &raftpb.Snapshot{}}, {Reject: proto.Bool(false)},
		{RejectHint: proto.Uint64(0)}, {Context: []byte{}}, {Responses: []*raftpb.Message{{}}},
	} {
		if plainAppend(m) {
			t.Errorf("plainAppend(%v) = true", m)
		}
	}
}

// Under steady load the Ready loop always finds another Ready after the one
// it handled. It must still tick raft: without ticks the leader sends no
// heartbeats (a follower being probed waits for one to be resumed) and no
// longer checks its quorum. Here every Save takes 2 ms while proposals keep
// coming; the leader must keep sending heartbeats.
func TestLeaderKeepsTickingUnderSteadyLoad(t *testing.T) {
	net, members := startCluster(t, 3)
	leader := waitLeader(t, members)
	f := followerOf(members, leader)
	leader.wal.mu.Lock()
	leader.wal.delay = 2 * time.Millisecond
	leader.wal.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := 0; ctx.Err() == nil; j++ {
				_ = leader.node.Propose(ctx, []byte(fmt.Sprintf("p%d-%d", i, j)))
				time.Sleep(50 * time.Microsecond)
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // the load is on
	from, to := leader.node.cfg.ID, f.node.cfg.ID
	before := net.delivered(from, to, raftpb.MsgHeartbeat)
	time.Sleep(500 * time.Millisecond) // 100 heartbeat intervals
	got := net.delivered(from, to, raftpb.MsgHeartbeat) - before
	cancel()
	wg.Wait()
	if got < 10 {
		t.Fatalf("leader sent %d heartbeats in 500 ms under load, want at least 10 (one per 5 ms tick)", got)
	}
}

// TestApplyInlineKeepsLogOrder has the Ready loop apply every other batch it
// may (Config.ApplyInline) while the applier takes the rest, under
// sequential and concurrent proposals: every member must still apply every
// entry once, in log order.
func TestApplyInlineKeepsLogOrder(t *testing.T) {
	_, members := startClusterOpts(t, 3, 10, true)
	leader := waitLeader(t, members)
	const total = 200
	propose := func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := leader.node.Propose(ctx, []byte(fmt.Sprintf("e%03d", i))); err != nil {
			t.Errorf("propose %d: %v", i, err)
		}
	}
	// One at a time, each applied before the next: the batches the inline
	// path is for.
	for i := 0; i < total/2; i++ {
		propose(i)
		waitFor(t, "entry applied", func() bool { return len(leader.appliedData()) > i })
	}
	// Then many at once, so that batches queue for the applier between
	// inline ones.
	var wg sync.WaitGroup
	for i := total / 2; i < total; i++ {
		wg.Go(func() { propose(i) })
	}
	wg.Wait()
	for _, m := range members {
		waitFor(t, "all entries applied", func() bool { return len(m.appliedData()) >= total })
		got := m.appliedData()
		if len(got) != total {
			t.Fatalf("member %d applied %d entries, want %d", m.node.cfg.ID, len(got), total)
		}
		seen := map[string]bool{}
		for i, d := range got {
			if seen[d] {
				t.Fatalf("member %d applied %q twice", m.node.cfg.ID, d)
			}
			seen[d] = true
			if i < total/2 && d != fmt.Sprintf("e%03d", i) {
				t.Fatalf("member %d entry %d = %q, want e%03d", m.node.cfg.ID, i, d, i)
			}
		}
		if !slices.Equal(got, members[0].appliedData()) {
			t.Fatalf("member %d applied another order than member 1", m.node.cfg.ID)
		}
	}
	if leader.inlined.Load() == 0 || leader.offers.Load() < 2 {
		t.Fatalf("leader: %d batches offered inline, %d applied inline: the inline path was not exercised", leader.offers.Load(), leader.inlined.Load())
	}
	t.Logf("leader: %d offers, %d applied inline", leader.offers.Load(), leader.inlined.Load())
}

// TestLocalReadIndexOnlyForALoneVoterWithItsTermCommitted checks when raft's
// ReadIndex round may be skipped: on a one-voter leader once an entry of its
// term is committed, never before, never with other voters.
func TestLocalReadIndexOnlyForALoneVoterWithItsTermCommitted(t *testing.T) {
	gate := make(chan struct{})
	tm := &testMember{wal: &memWAL{gate: gate}, fatal: make(chan error, 1)}
	node, err := Start(Config{
		ID: 1, ElectionTicks: 10, HeartbeatTicks: 1, TickInterval: 5 * time.Millisecond,
		Storage: raft.NewMemoryStorage(), WAL: tm.wal,
		Transport: &memTransport{net: &memNet{nodes: map[uint64]*Node{}, down: map[uint64]bool{}, sent: map[[3]uint64]int{}}, from: 1},
		Peers:     []raft.Peer{{ID: 1}},
		OnFatal:   func(err error) { tm.fatal <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	tm.node = node
	go tm.applyLoop()
	defer node.Stop()
	defer close(gate)
	gate <- struct{}{} // the bootstrap entries; the new leader's first entry waits
	waitFor(t, "a leader whose first entry is being saved", func() bool { return node.Status().IsLeader && tm.wal.held.Load() == 2 })
	if idx, ok := node.LocalReadIndex(); ok {
		t.Fatalf("LocalReadIndex = %d before the leader committed an entry of its term", idx)
	}
	gate <- struct{}{}
	waitFor(t, "the leader's entry committed", func() bool { _, ok := node.LocalReadIndex(); return ok })
	idx, _ := node.LocalReadIndex()
	if st := node.Status(); idx != st.Commit || idx < 2 {
		t.Fatalf("LocalReadIndex = %d, commit %d: want the commit index, past the bootstrap entry", idx, st.Commit)
	}

	_, members := startCluster(t, 3)
	waitLeader(t, members)
	for _, m := range members {
		if idx, ok := m.node.LocalReadIndex(); ok {
			t.Fatalf("member %d of three: LocalReadIndex = %d, want a ReadIndex round", m.node.cfg.ID, idx)
		}
	}
	node.Stop()
	if _, ok := node.LocalReadIndex(); ok {
		t.Fatal("LocalReadIndex answered after Stop")
	}
}

// waitAppliedEverywhere waits until every member applied exactly want, in
// order.
func waitAppliedEverywhere(t *testing.T, members []*testMember, want []string) {
	t.Helper()
	for _, m := range members {
		waitFor(t, "the proposals applied on every member", func() bool { return len(m.appliedData()) >= len(want) })
		if got := m.appliedData(); !slices.Equal(got, want) {
			t.Fatalf("member %d applied %q, want %q", m.node.cfg.ID, got, want)
		}
	}
}

// noneDropped fails if m's Config.Dropped reported a proposal.
func noneDropped(t *testing.T, m *testMember) {
	t.Helper()
	select {
	case d := <-m.dropped:
		t.Fatalf("Dropped(%q, %v) for a proposal raft took or kept", d.data, d.err)
	default:
	}
}

// waitLeads waits until the Ready loop of the leader m has taken note that it
// leads, so that Propose queues rather than steps.
func waitLeads(t *testing.T, m *testMember) {
	t.Helper()
	waitFor(t, "the leader's Ready loop to know it leads", func() bool { return m.node.lead.Load() == m.node.cfg.ID })
}

// The leader's proposals wait in a queue for the Ready loop, which steps
// them into raft together: they are committed in the order they were
// queued, also one whose context ended after Propose returned, as raft's
// own Propose would have it.
func TestLeaderStepsQueuedProposalsTogether(t *testing.T) {
	_, members := startCluster(t, 3)
	leader := waitLeader(t, members)
	waitLeads(t, leader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ended, end := context.WithCancel(ctx)
	// Holding raft's mutex keeps the Ready loop from stepping the queue.
	leader.node.mu.Lock()
	var want []string
	for i := range 5 {
		pctx := ctx
		if i == 2 {
			pctx = ended
		}
		data := fmt.Sprintf("q%d", i)
		if err := leader.node.Propose(pctx, []byte(data)); err != nil {
			leader.node.mu.Unlock()
			t.Fatalf("propose %s: %v", data, err)
		}
		want = append(want, data)
	}
	leader.node.propMu.Lock()
	queued := len(leader.node.props)
	leader.node.propMu.Unlock()
	end()
	leader.node.mu.Unlock()
	if queued != 5 {
		t.Fatalf("%d proposals queued while the Ready loop was held, want 5", queued)
	}
	waitAppliedEverywhere(t, members, want)
	noneDropped(t, leader)
}

// A queued proposal that raft refuses while it knows a leader (here: a
// leadership transfer is under way) is reported through Config.Dropped,
// since Propose has already returned, and is not applied.
func TestRefusedQueuedProposalIsReported(t *testing.T) {
	net, members := startClusterTicks(t, 3, 100) // a transfer stays pending for 500 ms
	leader := waitLeader(t, members)
	waitLeads(t, leader)
	f := followerOf(members, leader)
	// With the transferee cut off, the transfer can only wait.
	net.mu.Lock()
	net.down[f.node.cfg.ID] = true
	net.mu.Unlock()
	leader.node.TransferLeadership(context.Background(), f.node.cfg.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leader.node.Propose(ctx, []byte("refused")); err != nil {
		t.Fatalf("propose: %v", err)
	}
	select {
	case d := <-leader.dropped:
		if d.data != "refused" || !errors.Is(d.err, raft.ErrProposalDropped) {
			t.Fatalf("Dropped(%q, %v), want (\"refused\", %v)", d.data, d.err, raft.ErrProposalDropped)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no Dropped report for a proposal raft refused during a leadership transfer")
	}
	if slices.Contains(leader.appliedData(), "refused") {
		t.Fatal("a refused proposal was applied")
	}
}

// Queued proposals that raft refuses for want of a leader (here the leader
// stepped down before its Ready loop took them) wait in the queue until a
// leader is known, then go to it; one whose context ended meanwhile is left
// out.
func TestQueuedProposalsWaitForALeader(t *testing.T) {
	net, members := startCluster(t, 3)
	old := waitLeader(t, members)
	waitLeads(t, old)
	id := old.node.cfg.ID
	net.mu.Lock()
	net.down[id] = true
	net.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ended, end := context.WithCancel(ctx)
	// Holding raft's mutex keeps the Ready loop from stepping the queue
	// while raft, cut off from the others, is ticked until it steps down.
	old.node.mu.Lock()
	for i, data := range []string{"w1", "w2", "w3"} {
		pctx := ctx
		if i == 1 {
			pctx = ended
		}
		if err := old.node.Propose(pctx, []byte(data)); err != nil {
			old.node.mu.Unlock()
			t.Fatalf("propose %s: %v", data, err)
		}
	}
	for i := 0; old.node.rn.BasicStatus().Lead != raft.None; i++ {
		if i == 10000 {
			old.node.mu.Unlock()
			t.Fatal("the cut-off leader did not step down")
		}
		old.node.rn.Tick()
	}
	end()
	old.node.mu.Unlock()
	waitFor(t, "the Ready loop to put back the two live proposals", func() bool {
		old.node.propMu.Lock()
		defer old.node.propMu.Unlock()
		return len(old.node.props) == 2
	})
	net.mu.Lock()
	net.down[id] = false
	net.mu.Unlock()
	waitAppliedEverywhere(t, members, []string{"w1", "w3"})
	noneDropped(t, old)
}

// On the leader a follower's forwarded proposals join the queue, entries as
// they came: a forwarded configuration change is applied as one.
// settledCluster starts three members and returns them, the leader (once its
// Ready loop knows it leads) and a follower that knows the leader.
func settledCluster(t *testing.T) (members []*testMember, leader, f *testMember) {
	t.Helper()
	_, members = startCluster(t, 3)
	leader = waitLeader(t, members)
	waitLeads(t, leader)
	f = followerOf(members, leader)
	waitFor(t, "the follower to know the leader", func() bool { return f.node.Leader() == leader.node.cfg.ID })
	return members, leader, f
}

func TestForwardedProposalsJoinTheLeadersQueue(t *testing.T) {
	members, leader, f := settledCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leader.node.mu.Lock()
	if err := f.node.Propose(ctx, []byte("f1")); err != nil {
		leader.node.mu.Unlock()
		t.Fatalf("follower propose: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		leader.node.propMu.Lock()
		n := len(leader.node.props)
		leader.node.propMu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			leader.node.mu.Unlock()
			t.Fatalf("the forwarded proposal did not reach the leader's queue (%d queued)", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	leader.node.mu.Unlock()
	for _, m := range members {
		waitFor(t, "the forwarded proposal applied", func() bool { return slices.Contains(m.appliedData(), "f1") })
	}

	// A configuration change proposed on the follower: raft forwards it,
	// and the leader's queue must keep its entry type.
	if err := f.node.ProposeConfChange(ctx, &raftpb.ConfChange{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: new(uint64(9))}); err != nil {
		t.Fatalf("propose conf change: %v", err)
	}
	waitFor(t, "the learner added on the leader", func() bool {
		_, ok := leader.node.RaftStatus().Config.Learners[9]
		return ok
	})
	if got := leader.appliedData(); !slices.Equal(got, []string{"f1"}) {
		t.Fatalf("leader applied normal entries %q, want only f1 (the conf change must not turn into one)", got)
	}
}

// A MsgProp without entries from a peer is dropped: raft's leader panics on
// one (with raft's mutex held, wedging the member), and a follower would
// forward it to the leader. The member keeps working after it.
func TestStepDropsAnEmptyProposalFromAPeer(t *testing.T) {
	members, leader, f := settledCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range []*testMember{leader, f} {
		from := leader.node.cfg.ID
		if m == leader {
			from = f.node.cfg.ID
		}
		empty := &raftpb.Message{Type: raftpb.MsgProp.Enum(), From: proto.Uint64(from), To: proto.Uint64(m.node.cfg.ID)}
		if err := m.node.Step(ctx, empty); err != nil {
			t.Errorf("Step(empty MsgProp) on %x = %v, want nil", m.node.cfg.ID, err)
		}
	}
	if err := f.node.Propose(ctx, []byte("after")); err != nil {
		t.Fatalf("propose after the empty proposals: %v", err)
	}
	for _, m := range members {
		waitFor(t, "the proposal after the empty ones applied", func() bool { return slices.Contains(m.appliedData(), "after") })
	}
}

// TestLeaderSendsCommitBeforeItAppliesInline: while the leader applies a
// committed entry on its Ready loop, the followers must already have been
// sent the commit index (they apply the entry meanwhile), not only once the
// leader's apply returns.
func TestLeaderSendsCommitBeforeItAppliesInline(t *testing.T) {
	// An election timeout of 500-1000 ms: while the hook below holds the
	// leader's loop (no heartbeats), no follower campaigns and commits x
	// under a new leader.
	_, members := startClusterOpts(t, 3, 100, true)
	leader := waitLeader(t, members)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The leader's first entry of its term, applied before the hook is set.
	if err := leader.node.Propose(ctx, []byte("e0")); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		waitFor(t, "e0 applied", func() bool { return slices.Contains(m.appliedData(), "e0") })
	}
	seen := make(chan bool, 1)
	hook := func(ap *Apply) {
		if !slices.ContainsFunc(ap.Entries, func(e *raftpb.Entry) bool { return string(e.GetData()) == "x" }) {
			return
		}
		// The Ready loop waits here: a follower applies x only if the
		// commit index already left.
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) {
			for _, m := range members {
				if m != leader && slices.Contains(m.appliedData(), "x") {
					seen <- true
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
		seen <- false
	}
	leader.inlineHook.Store(&hook)
	if err := leader.node.Propose(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-seen:
		if !ok {
			t.Fatal("no follower applied x while the leader applied it inline: the commit index waited for the leader's apply")
		}
	case <-ctx.Done():
		t.Fatal("the leader never applied x inline")
	}
}
