package lease

import (
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/mvcc"
)

// primaryWith returns a primary lessor holding n leases of TTL 60.
func primaryWith(b *testing.B, n int) *member {
	m := &member{t: b, dir: b.TempDir(), clock: newFakeClock()}
	m.open()
	b.Cleanup(m.close)
	m.apply(func(tx *Tx, _ *mvcc.Writer) {
		for id := int64(1); id <= int64(n); id++ {
			if _, err := tx.Grant(&pb.LeaseGrantRequest{ID: id, TTL: 60}); err != nil {
				b.Fatal(err)
			}
		}
	})
	m.l.Promote(0)
	return m
}

// BenchmarkRenew is the leader's work per keep-alive.
func BenchmarkRenew(b *testing.B) {
	m := primaryWith(b, 10_000)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := m.l.Renew(int64(i%10_000) + 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTickScan100k is the leader's per-tick scan (expiry and
// checkpoints) over 100k leases when nothing is due.
func BenchmarkTickScan100k(b *testing.B) {
	m := primaryWith(b, 100_000)
	m.clock.Advance(500 * time.Millisecond)
	b.ResetTimer()
	for b.Loop() {
		if len(m.l.Expired(500)) != 0 || len(m.l.CheckpointsDue(1000)) != 0 {
			b.Fatal("something due")
		}
	}
}
