package transport

import (
	"errors"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

const testCluster = 0xc1

// connect makes every node a peer of every other.
func connect(nodes ...*node) {
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.tr.AddPeer(b.id, []string{b.url})
			}
		}
	}
}

func TestMessagesDeliveredInOrderBetweenTwo(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, testCluster, "127.0.0.1:0")
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	connect(a, b)
	const n = 500
	for i := range uint64(n) {
		a.tr.Send([]*raftpb.Message{msg(1, 2, i)})
		b.tr.Send([]*raftpb.Message{msg(2, 1, i)})
	}
	waitFor(t, 10*time.Second, "delivery", func() bool {
		return len(b.raft.from(1)) == n && len(a.raft.from(2)) == n
	})
	checkInOrder(t, b.raft.from(1), n)
	checkInOrder(t, a.raft.from(2), n)
	waitFor(t, 5*time.Second, "active peers", func() bool {
		return slices.Equal(a.tr.ActivePeers(), []uint64{2}) && slices.Equal(b.tr.ActivePeers(), []uint64{1})
	})
	for _, st := range [][]PeerStatus{a.tr.Peers(), b.tr.Peers()} {
		if len(st) != 1 || st[0].MessagesSent != n || st[0].Received != n || st[0].Dropped != 0 || !st[0].Active {
			t.Fatalf("stats = %+v, want one peer with %d sent and received, none dropped", st, n)
		}
	}
}

func TestMessagesDeliveredInOrderAmongThree(t *testing.T) {
	checkGoroutines(t)
	nodes := []*node{
		startNode(t, 1, testCluster, "127.0.0.1:0"),
		startNode(t, 2, testCluster, "127.0.0.2:0"),
		startNode(t, 3, testCluster, "127.0.0.3:0"),
	}
	connect(nodes...)
	const n = 300
	for i := range uint64(n) {
		for _, s := range nodes {
			var batch []*raftpb.Message
			for _, r := range nodes {
				if r != s {
					batch = append(batch, msg(s.id, r.id, i))
				}
			}
			s.tr.Send(batch)
		}
	}
	for _, r := range nodes {
		for _, s := range nodes {
			if r == s {
				continue
			}
			waitFor(t, 10*time.Second, "delivery", func() bool { return len(r.raft.from(s.id)) >= n })
			checkInOrder(t, r.raft.from(s.id), n)
		}
	}
}

func TestBatchingUnderLoad(t *testing.T) {
	checkGoroutines(t)
	const n = 20000
	a := startNode(t, 1, testCluster, "127.0.0.1:0", func(c *Config) { c.QueueSize = n })
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	connect(a, b)
	waitFor(t, 5*time.Second, "stream up", func() bool { return len(a.tr.ActivePeers()) == 1 })
	for i := uint64(0); i < n; i += 100 {
		batch := make([]*raftpb.Message, 0, 100)
		for j := i; j < i+100; j++ {
			batch = append(batch, msg(1, 2, j))
		}
		a.tr.Send(batch)
	}
	waitFor(t, 20*time.Second, "all messages", func() bool { return len(b.raft.from(1)) == n })
	checkInOrder(t, b.raft.from(1), n)
	st, _ := a.tr.PeerStatus(2)
	if st.MessagesSent != n {
		t.Fatalf("MessagesSent = %d, want %d", st.MessagesSent, n)
	}
	if st.BatchesSent >= n/2 {
		t.Fatalf("%d messages took %d writes: not batched", n, st.BatchesSent)
	}
	t.Logf("%d messages in %d writes", n, st.BatchesSent)
	if a.raft.unreachableCount(2) != 0 {
		t.Fatalf("peer reported unreachable %d times under load", a.raft.unreachableCount(2))
	}
}

func TestReconnectAfterPeerRestart(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, testCluster, "127.0.0.1:0")
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	connect(a, b)
	a.tr.Send([]*raftpb.Message{msg(1, 2, 0)})
	waitFor(t, 5*time.Second, "first delivery", func() bool { return len(b.raft.from(1)) == 1 })

	addr := b.url[len("http://"):]
	b.stop()
	waitFor(t, 5*time.Second, "stream down", func() bool { return len(a.tr.ActivePeers()) == 0 })
	waitFor(t, 5*time.Second, "unreachable reported", func() bool { return a.raft.unreachableCount(2) > 0 })

	b2 := startNode(t, 2, testCluster, addr)
	var sent atomic.Uint64
	waitFor(t, 10*time.Second, "delivery after restart", func() bool {
		a.tr.Send([]*raftpb.Message{msg(1, 2, sent.Add(1))})
		return len(b2.raft.from(1)) > 0
	})
	if !slices.Equal(a.tr.ActivePeers(), []uint64{2}) {
		t.Fatalf("active peers %v after reconnect", a.tr.ActivePeers())
	}
}

func TestUpdatePeerMovesStream(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, testCluster, "127.0.0.1:0")
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	connect(a, b)
	waitFor(t, 5*time.Second, "stream up", func() bool { return len(a.tr.ActivePeers()) == 1 })
	b.stop()
	b2 := startNode(t, 2, testCluster, "127.0.0.3:0")
	a.tr.UpdatePeer(2, []string{b2.url})
	waitFor(t, 10*time.Second, "delivery at the new URL", func() bool {
		a.tr.Send([]*raftpb.Message{msg(1, 2, 0)})
		return len(b2.raft.from(1)) > 0
	})
}

func TestClusterIDMismatchRejected(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, 0xaaa, "127.0.0.1:0")
	b := startNode(t, 2, 0xbbb, "127.0.0.2:0")
	a.tr.AddPeer(2, []string{b.url})
	waitFor(t, 5*time.Second, "rejection seen by the sender", func() bool {
		st, _ := a.tr.PeerStatus(2)
		return isRejected(st.LastError, ErrClusterIDMismatch)
	})
	st, _ := a.tr.PeerStatus(2)
	var rej *RejectedError
	errors.As(st.LastError, &rej)
	if rej.OurCluster != 0xaaa || rej.TheirCluster != 0xbbb || rej.Peer != 2 {
		t.Fatalf("rejection %+v", rej)
	}
	a.tr.Send([]*raftpb.Message{msg(1, 2, 0)})
	if n := len(b.raft.from(1)); n != 0 {
		t.Fatalf("receiver of another cluster got %d messages", n)
	}
	if !contains(a.logs.String(), "peer 2 rejected us: cluster ID mismatch (ours aaa, theirs bbb)") {
		t.Fatalf("sender log lacks the reason:\n%s", a.logs.String())
	}
	waitFor(t, time.Second, "receiver log", func() bool {
		l := b.logs.String()
		return contains(l, "cluster ID mismatch") && contains(l, "their_cluster=aaa") && contains(l, "our_cluster=bbb")
	})
	if a.raft.unreachableCount(2) == 0 {
		t.Fatal("rejected peer not reported unreachable")
	}
}

func TestWrongMemberIDRejected(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, testCluster, "127.0.0.1:0")
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	a.tr.AddPeer(3, []string{b.url}) // member 3 configured at member 2's URL
	waitFor(t, 5*time.Second, "rejection", func() bool {
		st, _ := a.tr.PeerStatus(3)
		return isRejected(st.LastError, ErrWrongMember)
	})
	waitFor(t, time.Second, "receiver log", func() bool {
		return contains(b.logs.String(), "addressed to another member")
	})
}

func TestRemovedMemberRejected(t *testing.T) {
	checkGoroutines(t)
	removedBy := make(chan uint64, 1)
	a := startNode(t, 1, testCluster, "127.0.0.1:0", func(c *Config) {
		c.OnRemoved = func(by uint64) { removedBy <- by }
	})
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	b.raft.mu.Lock()
	b.raft.removed[1] = true
	b.raft.mu.Unlock()
	a.tr.AddPeer(2, []string{b.url})
	select {
	case by := <-removedBy:
		if by != 2 {
			t.Fatalf("OnRemoved(%d), want 2", by)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnRemoved not called")
	}
	waitFor(t, 5*time.Second, "status shows the removal", func() bool {
		st, _ := a.tr.PeerStatus(2)
		return isRejected(st.LastError, ErrMemberRemoved)
	})
	a.tr.Send([]*raftpb.Message{msg(1, 2, 0)})
	if len(b.raft.from(1)) != 0 {
		t.Fatal("message from a removed member delivered")
	}
}

// A member removed while its stream is open must not keep delivering on it:
// the stream ends, and the reconnect is refused with the removal.
func TestMemberRemovedWhileStreamOpen(t *testing.T) {
	checkGoroutines(t)
	removedBy := make(chan uint64, 1)
	a := startNode(t, 1, testCluster, "127.0.0.1:0", func(c *Config) {
		c.OnRemoved = func(by uint64) { removedBy <- by }
	})
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	a.tr.AddPeer(2, []string{b.url})
	a.tr.Send([]*raftpb.Message{msg(1, 2, 0)})
	waitFor(t, 5*time.Second, "first message delivered", func() bool { return len(b.raft.from(1)) == 1 })
	b.raft.mu.Lock()
	b.raft.removed[1] = true
	b.raft.mu.Unlock()
	a.tr.Send([]*raftpb.Message{msg(1, 2, 1)})
	select {
	case by := <-removedBy:
		if by != 2 {
			t.Fatalf("OnRemoved(%d), want 2", by)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a member removed while its stream was open never learned it")
	}
	if n := len(b.raft.from(1)); n != 1 {
		t.Fatalf("%d messages delivered, want only the one sent before the removal", n)
	}
}

func TestUnknownPeerReportedUnreachable(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, testCluster, "127.0.0.1:0")
	a.tr.Send([]*raftpb.Message{msg(1, 9, 0), msg(1, 9, 1)})
	if got := a.raft.unreachableCount(9); got != 1 {
		t.Fatalf("ReportUnreachable(9) called %d times, want once per Send", got)
	}
}

// freeAddr returns an address on which nothing listens.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestSendNeverBlocksWhenPeerIsDown(t *testing.T) {
	checkGoroutines(t)
	// A black hole: accepts connections and never answers.
	hole, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	holeDone := make(chan struct{})
	go func() {
		defer close(holeDone)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	a := startNode(t, 1, testCluster, "127.0.0.1:0", func(c *Config) { c.QueueSize = 16 })
	t.Cleanup(func() { hole.Close(); <-holeDone })
	a.tr.AddPeer(2, []string{"http://" + freeAddr(t)})
	a.tr.AddPeer(3, []string{"http://" + hole.Addr().String()})
	start := time.Now()
	for i := range uint64(20000) {
		a.tr.Send([]*raftpb.Message{msg(1, 2, i), msg(1, 3, i)})
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("20000 Send calls took %v", d)
	}
	if a.raft.unreachableCount(2) == 0 || a.raft.unreachableCount(3) == 0 {
		t.Fatalf("unreachable reports: 2→%d 3→%d", a.raft.unreachableCount(2), a.raft.unreachableCount(3))
	}
	for _, st := range a.tr.Peers() {
		if st.Dropped == 0 || st.Queued > 16 {
			t.Fatalf("peer %x: %+v, want drops and at most 16 queued", st.ID, st)
		}
	}
	waitFor(t, 5*time.Second, "connection failures recorded", func() bool {
		s2, _ := a.tr.PeerStatus(2)
		s3, _ := a.tr.PeerStatus(3)
		return s2.LastError != nil && s3.LastError != nil
	})
}

func TestMsgSnapRefusedBySend(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, testCluster, "127.0.0.1:0")
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	connect(a, b)
	m := msg(1, 2, 0)
	m.Type = raftpb.MessageType_MsgSnap.Enum()
	a.tr.Send([]*raftpb.Message{m})
	if a.raft.snapCount(raft.SnapshotFailure) != 1 {
		t.Fatalf("MsgSnap through Send not reported as a failed snapshot")
	}
}

func TestStopClosesEverything(t *testing.T) {
	checkGoroutines(t)
	nodes := []*node{
		startNode(t, 1, testCluster, "127.0.0.1:0"),
		startNode(t, 2, testCluster, "127.0.0.2:0"),
		startNode(t, 3, testCluster, "127.0.0.3:0"),
	}
	connect(nodes...)
	for i := range uint64(100) {
		nodes[0].tr.Send([]*raftpb.Message{msg(1, 2, i), msg(1, 3, i)})
	}
	waitFor(t, 5*time.Second, "all streams up", func() bool {
		for _, n := range nodes {
			if len(n.tr.ActivePeers()) != 2 {
				return false
			}
		}
		return true
	})
	// Stop only the transports first: their handlers must end although the
	// HTTP servers are still up.
	for _, n := range nodes {
		done := make(chan struct{})
		go func() { n.tr.Stop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Stop of %d hangs", n.id)
		}
	}
	for _, n := range nodes {
		if len(n.tr.ActivePeers()) != 0 {
			t.Fatal("peers still active after Stop")
		}
	}
	nodes[0].tr.Send([]*raftpb.Message{msg(1, 2, 0)}) // must not panic or block
	// Goroutines are checked by checkGoroutines once the servers close.
}
