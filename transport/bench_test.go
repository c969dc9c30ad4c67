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
