package server

import (
	"testing"
	"time"
)

type countingSizer struct {
	size  int64
	reads int
}

func (c *countingSizer) Size() int64 { c.reads++; return c.size }

func TestQuotaSizerReadsPebbleRarelyFarFromQuota(t *testing.T) {
	var q quotaSizer
	be := &countingSizer{size: 1000}
	now := time.Unix(100, 0)
	for i := range 50 {
		if est := q.estimate(be, 10, 1<<20, now); est != 1000+int64(i)*10+10 {
			t.Fatalf("write %d: estimate %d, want %d", i, est, 1000+i*10+10)
		}
	}
	if be.reads != 1 {
		t.Fatalf("%d size reads for 50 writes within %v far from the quota, want 1", be.reads, quotaSizeMaxAge)
	}
	be.size = 5000
	if est := q.estimate(be, 10, 1<<20, now.Add(quotaSizeMaxAge)); est != 5010 || be.reads != 2 {
		t.Fatalf("after %v: estimate %d with %d reads, want a fresh read (5010, 2)", quotaSizeMaxAge, est, be.reads)
	}
}

func TestQuotaSizerRereadsNearQuota(t *testing.T) {
	var q quotaSizer
	be := &countingSizer{size: 900}
	now := time.Unix(100, 0)
	q.estimate(be, 10, 1000, now) // 910
	be.size = 990                 // Pebble grew more than the admitted cost
	// 900 + 10 + 90 = 1000 reaches the quota: the estimate must be fresh.
	if est := q.estimate(be, 90, 1000, now); est != 1080 || be.reads != 2 {
		t.Fatalf("near the quota: estimate %d with %d reads, want 1080 from a fresh read", est, be.reads)
	}
	// Every later write stays near the quota and keeps reading.
	q.estimate(be, 1, 1000, now)
	if be.reads != 3 {
		t.Fatalf("%d reads, want a read per write near the quota", be.reads)
	}
}
