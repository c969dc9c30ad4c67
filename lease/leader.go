package lease

import (
	"cmp"
	"math"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// startLocked starts a lease's countdown on a primary lessor: from its
// persisted remaining TTL (or its TTL), plus extend.
func (l *Lessor) startLocked(le *lease, now time.Time, extend time.Duration) {
	rem := le.Remaining
	if rem <= 0 {
		rem = le.TTL
	}
	le.deadline = now.Add(seconds(rem) + extend)
	le.dirty, le.cpAt, le.revokeAt = false, now, time.Time{}
}

// seconds converts a TTL to a duration, saturating.
func seconds(s int64) time.Duration {
	if s >= int64(math.MaxInt64/time.Second) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(s) * time.Second
}

// Promote makes the lessor primary: call it on the leader once everything
// committed before its term is applied. Every lease's countdown starts from
// its persisted remaining TTL plus extend (the election timeout), so no lease
// expires merely because leadership moved.
func (l *Lessor) Promote(extend time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	for _, le := range l.leases {
		l.startLocked(le, now, extend)
	}
	if !l.primary {
		l.primary = true
		close(l.promotedc)
	}
	l.extend = extend
}

// Demote ends the lessor's primacy: another member decides expiry now.
func (l *Lessor) Demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return
	}
	l.primary = false
	l.promotedc = make(chan struct{})
	for _, le := range l.leases {
		le.deadline, le.dirty, le.cpAt, le.revokeAt = time.Time{}, false, time.Time{}, time.Time{}
	}
}

// Primary reports whether the lessor decides expiry, and returns a channel
// closed once it does (already closed if it does).
func (l *Lessor) Primary() (bool, <-chan struct{}) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.primary, l.promotedc
}

// Renew restarts a lease's countdown at its full TTL and returns the TTL.
// It fails with ErrNotPrimary on a member that does not decide expiry, and
// ErrLeaseNotFound for an unknown or already expired lease.
func (l *Lessor) Renew(id int64) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return 0, ErrNotPrimary
	}
	le, ok := l.leases[id]
	if !ok {
		return 0, ErrLeaseNotFound
	}
	now := l.clock.Now()
	if !now.Before(le.deadline) {
		return 0, ErrLeaseNotFound // expired: its revocation is under way
	}
	le.deadline = now.Add(seconds(le.TTL))
	le.dirty = true
	return le.TTL, nil
}

// TimeToLive returns, on the primary lessor, a lease's remaining TTL in whole
// seconds (truncated, like etcd) and its granted TTL.
func (l *Lessor) TimeToLive(id int64) (remaining, granted int64, err error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if !l.primary {
		return 0, 0, ErrNotPrimary
	}
	le, ok := l.leases[id]
	if !ok {
		return 0, 0, ErrLeaseNotFound
	}
	left := le.deadline.Sub(l.clock.Now())
	return max(0, int64(left/time.Second)), le.TTL, nil
}

// Expired returns, on the primary lessor, up to limit expired leases whose
// revocation is not under way, earliest deadline first, and marks them as
// being revoked: they are returned again only after Config.RevokeRetry, in
// case the proposal was lost.
func (l *Lessor) Expired(limit int) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary || limit <= 0 {
		return nil
	}
	now := l.clock.Now()
	var due []*lease
	for _, le := range l.leases {
		if !now.Before(le.deadline) && !now.Before(le.revokeAt) {
			due = append(due, le)
		}
	}
	slices.SortFunc(due, func(a, b *lease) int {
		return cmp.Or(a.deadline.Compare(b.deadline), cmp.Compare(a.ID, b.ID))
	})
	due = due[:min(limit, len(due))]
	ids := make([]int64, len(due))
	for i, le := range due {
		le.revokeAt = now.Add(l.cfg.RevokeRetry)
		ids[i] = le.ID
	}
	return ids
}

// checkpointEvery is how stale the persisted remaining TTL of an unrenewed
// lease may grow.
func (l *Lessor) checkpointEvery(ttl int64) time.Duration {
	return max(l.cfg.MinCheckpointInterval, seconds(ttl)/10)
}

// CheckpointsDue returns, on the primary lessor, up to limit remaining TTLs
// to record through raft: of the leases renewed since their last checkpoint
// first, then of those whose persisted value is stale. It counts them as
// recorded; CheckpointFailed undoes that for a proposal that failed.
func (l *Lessor) CheckpointsDue(limit int) []*pb.LeaseCheckpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary || limit <= 0 {
		return nil
	}
	now := l.clock.Now()
	var due []*lease
	for _, le := range l.leases {
		if !now.Before(le.deadline) {
			continue // expiring: nothing to record
		}
		if le.dirty || now.Sub(le.cpAt) >= l.checkpointEvery(le.TTL) {
			due = append(due, le)
		}
	}
	slices.SortFunc(due, func(a, b *lease) int {
		if a.dirty != b.dirty {
			if a.dirty {
				return -1
			}
			return 1
		}
		return cmp.Or(a.cpAt.Compare(b.cpAt), cmp.Compare(a.ID, b.ID))
	})
	due = due[:min(limit, len(due))]
	cps := make([]*pb.LeaseCheckpoint, len(due))
	for i, le := range due {
		// Round up: a new leader must never see less than the truth.
		left := le.deadline.Sub(now)
		rem := int64((left + time.Second - 1) / time.Second)
		cps[i] = &pb.LeaseCheckpoint{ID: le.ID, Remaining_TTL: min(max(rem, 1), le.TTL)}
		le.dirty, le.cpAt = false, now
	}
	return cps
}

// CheckpointFailed marks the leases of checkpoints that were not recorded
// as due again.
func (l *Lessor) CheckpointFailed(cps []*pb.LeaseCheckpoint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, cp := range cps {
		if le, ok := l.leases[cp.ID]; ok {
			le.dirty = true
		}
	}
}
