package server

import (
	"sync"
	"time"
)

// quotaSizeMaxAge is how long checkQuota trusts a backend size it read.
const quotaSizeMaxAge = 100 * time.Millisecond

// sizer is the part of the backend the quota check reads.
type sizer interface{ Size() int64 }

// quotaSizer estimates the backend size for the quota check without asking
// Pebble on every write: Backend.Size computes all of Pebble's metrics,
// which cost a tenth of a member's CPU under 64 concurrent puts. It re-reads
// the size when the last read is older than quotaSizeMaxAge, and whenever
// the estimate (last size plus the cost of the writes admitted since) would
// reach the quota, so a write that may cross the quota is always checked
// against a fresh size.
type quotaSizer struct {
	mu    sync.Mutex // guards the fields below
	size  int64      // backend size at the last read
	since int64      // cost of the writes admitted since the last read
	at    time.Time  // time of the last read; zero before the first
}

// estimate returns the size to compare with quota for a write of cost
// bytes (the backend size after it, as far as is known) and admits the
// write's cost into later estimates.
func (q *quotaSizer) estimate(be sizer, cost, quota int64, now time.Time) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.at.IsZero() || now.Sub(q.at) >= quotaSizeMaxAge || q.size+q.since+cost >= quota {
		q.size, q.since, q.at = be.Size(), 0, now
	}
	est := q.size + q.since + cost
	q.since += cost
	return est
}
