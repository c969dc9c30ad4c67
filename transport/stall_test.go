package transport

import (
	"bytes"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// A peer that stops reading (its raft is stuck, its process paused) makes
// our writes wait once the socket buffers are full. After WriteTimeout the
// stream must be torn down and re-dialed, even while the peer still does
// not read (bug 1 in ROBUSTNESS.md, when streams were HTTP/2 request
// bodies: the stream goroutine waited forever for a body read that only
// closing the body ended, and a paused member never heard from the new
// leader).
func TestStalledPeerStreamIsTornDownAfterWriteTimeout(t *testing.T) {
	checkGoroutines(t)
	gate := make(chan struct{})
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	b.raft.onProcess = func(*raftpb.Message) error {
		<-gate
		return nil
	}
	a := startNode(t, 1, testCluster, "127.0.0.1:0", func(c *Config) {
		c.WriteTimeout = 300 * time.Millisecond
	})
	defer func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	}()
	a.tr.AddPeer(2, []string{b.url})
	waitFor(t, 5*time.Second, "stream up", func() bool {
		st, _ := a.tr.PeerStatus(2)
		return st.Active
	})
	// Far more than the flow-control windows and socket buffers hold.
	big := bytes.Repeat([]byte("x"), 64<<10)
	for i := uint64(0); i < 400; i++ {
		m := msg(1, 2, i)
		m.Entries[0].Data = big
		a.tr.Send([]*raftpb.Message{m})
	}
	waitFor(t, 5*time.Second, "the stalled stream to be torn down while the peer still does not read", func() bool {
		st, _ := a.tr.PeerStatus(2)
		return !st.Active && st.LastError != nil
	})
	close(gate)
	// Traffic flows again on a new stream.
	marker := msg(1, 2, 9999)
	marker.Entries[0].Data = []byte("after the stall")
	waitFor(t, 10*time.Second, "a message sent after the stall to arrive", func() bool {
		a.tr.Send([]*raftpb.Message{proto.Clone(marker).(*raftpb.Message)})
		for _, m := range b.raft.from(1) {
			if m.GetIndex() == 9999 {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
		return false
	})
}
