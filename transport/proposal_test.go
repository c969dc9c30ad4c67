package transport

import (
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// raft takes a forwarded proposal only while it knows a leader. A member
// without one must still read the rest of the stream: the sender's next
// messages may be the very heartbeats that tell it who leads (bug 1 in
// ROBUSTNESS.md: a resumed old leader got its former followers' queued
// proposals, blocked on the first, and never heard the new leader).
func TestBlockedProposalDoesNotStallStream(t *testing.T) {
	checkGoroutines(t)
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	b.raft.onProcess = func(m *raftpb.Message) error {
		if m.GetType() == raftpb.MessageType_MsgProp {
			<-gate // no leader yet
		}
		return nil
	}
	a := startNode(t, 1, testCluster, "127.0.0.1:0")
	t.Cleanup(release) // runs before the nodes' cleanups stop them
	connect(a, b)

	prop := func(i uint64) *raftpb.Message {
		return &raftpb.Message{Type: raftpb.MessageType_MsgProp.Enum(), From: proto.Uint64(1), To: proto.Uint64(2),
			Entries: []*raftpb.Entry{{Data: []byte{byte(i)}}}}
	}
	hb := func(i uint64) *raftpb.Message {
		return &raftpb.Message{Type: raftpb.MessageType_MsgHeartbeat.Enum(), From: proto.Uint64(1), To: proto.Uint64(2),
			Term: proto.Uint64(3), Commit: proto.Uint64(i)}
	}
	a.tr.Send([]*raftpb.Message{prop(0), prop(1)})
	for i := range uint64(10) {
		a.tr.Send([]*raftpb.Message{hb(i)})
	}
	count := func(typ raftpb.MessageType) int {
		n := 0
		for _, m := range b.raft.from(1) {
			if m.GetType() == typ {
				n++
			}
		}
		return n
	}
	waitFor(t, 5*time.Second, "heartbeats behind a blocked proposal", func() bool {
		return count(raftpb.MessageType_MsgHeartbeat) == 10
	})
	if n := count(raftpb.MessageType_MsgProp); n != 0 {
		t.Fatalf("%d proposals handed over while raft was blocked", n)
	}
	release() // a leader is known: the proposals go through, in order
	waitFor(t, 5*time.Second, "proposals", func() bool { return count(raftpb.MessageType_MsgProp) == 2 })
	var got []byte
	for _, m := range b.raft.from(1) {
		if m.GetType() == raftpb.MessageType_MsgProp {
			got = append(got, m.GetEntries()[0].GetData()...)
		}
	}
	if string(got) != "\x00\x01" {
		t.Fatalf("proposals out of order: %v", got)
	}
}

// raft forwards read-index requests (and proposals) with the original
// requester as From; a member that stepped down passes on what its former
// followers sent it. Those must not be dropped as spoofed.
func TestForwardedReadIndexFromAnotherMemberAccepted(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, testCluster, "127.0.0.1:0")
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	connect(a, b)
	ri := &raftpb.Message{Type: raftpb.MessageType_MsgReadIndex.Enum(), From: proto.Uint64(3), To: proto.Uint64(2),
		Entries: []*raftpb.Entry{{Data: []byte("ctx")}}}
	spoofed := msg(3, 2, 7) // a MsgApp claiming to be from 3 on 1's stream
	a.tr.Send([]*raftpb.Message{ri, spoofed, msg(1, 2, 8)})
	waitFor(t, 5*time.Second, "delivery", func() bool { return len(b.raft.from(1)) == 1 })
	got := b.raft.from(3)
	if len(got) != 1 || got[0].GetType() != raftpb.MessageType_MsgReadIndex {
		t.Fatalf("from 3: %v, want only the read-index request", got)
	}
}
