package transport

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// BenchmarkSendDeliver measures messages per second from Send on one member
// to Raft.Process on another, over a real h2c stream on 127.0.0.1.
func BenchmarkSendDeliver(b *testing.B) {
	a := startNode(b, 1, testCluster, "127.0.0.1:0", func(c *Config) { c.QueueSize = 1 << 16 })
	r := startNode(b, 2, testCluster, "127.0.0.2:0")
	connect(a, r)
	m := msg(1, 2, 0)
	batch := make([]*raftpb.Message, 64)
	for i := range batch {
		batch[i] = m
	}
	b.ResetTimer()
	sent := 0
	for sent < b.N {
		n := min(len(batch), b.N-sent)
		// Keep the queue from overflowing: wait while it is nearly full.
		for sent-int(r.raft.processed.Load()) > 1<<15 {
			time.Sleep(50 * time.Microsecond)
		}
		a.tr.Send(batch[:n])
		sent += n
	}
	deadline := time.Now().Add(time.Minute)
	for int(r.raft.processed.Load()) < b.N {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d", int(r.raft.processed.Load()), b.N)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkRoundTrip measures the latency of one message to a peer and its
// answer back (ns/op is one round trip), the transport's share of a
// replicated write's latency.
func BenchmarkRoundTrip(b *testing.B) {
	a := startNode(b, 1, testCluster, "127.0.0.1:0")
	r := startNode(b, 2, testCluster, "127.0.0.2:0")
	back := make(chan struct{}, 1)
	r.raft.onProcess = func(m *raftpb.Message) error {
		r.tr.Send([]*raftpb.Message{msg(2, 1, m.GetIndex())})
		return nil
	}
	a.raft.onProcess = func(*raftpb.Message) error {
		back <- struct{}{}
		return nil
	}
	connect(a, r)
	// Both streams up before timing.
	a.tr.Send([]*raftpb.Message{msg(1, 2, 0)})
	<-back
	b.ResetTimer()
	for i := range b.N {
		a.tr.Send([]*raftpb.Message{msg(1, 2, uint64(i))})
		select {
		case <-back:
		case <-time.After(10 * time.Second):
			b.Fatalf("round trip %d lost", i)
		}
	}
}
