package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/cairn-kv/cairn/lease"
)

// A follower forwards keep-alives to the leader in batches: while one POST
// to leaseKeepAlivesPath is on its way, the keep-alives that arrive wait and
// leave together in the next. A lone keep-alive leaves at once, so batches
// grow only with the load; each costs the follower and the leader one HTTP
// request instead of one per keep-alive.
//
// The body is the lease IDs, each a protobuf varint (as an int64 field
// encodes it). The answer, with status 200, has one varint per ID in the
// same order: the renewed TTL, or -1 if the leader has no such lease. Any
// other status answers for the whole batch, as for leaseTimeToLivePath.
const (
	leaseKeepAlivesPath = "/leases/keepalives"
	// maxRenewBatch bounds the IDs of one batch (10 bytes each at most,
	// well under the 1 MiB a lease request body may have).
	maxRenewBatch = 4096
	// renewNotFound is the TTL of an unknown lease in a batch answer.
	renewNotFound = -1
)

// renewBatcher queues a follower's keep-alives for the leader.
type renewBatcher struct {
	mu      sync.Mutex
	queue   []*renewCall // guarded by mu
	running bool         // guarded by mu: a batch is on its way

	forwarded atomic.Int64 // keep-alives forwarded
	batches   atomic.Int64 // requests they took
}

// renewCall is one keep-alive waiting for its batch's answer.
type renewCall struct {
	id   int64
	urls []string // the leader's peer URLs when it was queued
	ttl  int64
	err  error
	done chan struct{}
}

// forwardRenew renews lease id on the leader at urls, in a batch with the
// other keep-alives this member forwards meanwhile.
func (s *Server) forwardRenew(ctx context.Context, urls []string, id int64) (int64, error) {
	b := &s.renewals
	c := &renewCall{id: id, urls: urls, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if b.running {
		b.mu.Unlock()
	} else {
		// No batch on its way: this caller sends one now, with whatever
		// else is queued, and hands the sending on if more arrived.
		b.running = true
		batch := b.takeLocked()
		b.mu.Unlock()
		s.sendRenewals(batch)
		if batch := b.next(); batch != nil {
			go func() {
				for ; batch != nil; batch = b.next() {
					s.sendRenewals(batch)
				}
			}()
		}
	}
	select {
	case <-c.done:
		return c.ttl, c.err
	case <-ctx.Done():
		return 0, s.proposalError(ctx, ctx.Err())
	case <-s.stopc:
		return 0, ErrStopped
	}
}

// takeLocked takes up to maxRenewBatch queued calls.
func (b *renewBatcher) takeLocked() []*renewCall {
	n := min(len(b.queue), maxRenewBatch)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil
	}
	return batch
}

// next takes the next batch, or marks the batcher idle and returns nil.
func (b *renewBatcher) next() []*renewCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		b.running = false
		return nil
	}
	return b.takeLocked()
}

// sendRenewals posts one batch to the leader and answers its calls. The
// request has the request timeout, whatever the callers' deadlines: a
// caller that gave up ignores its answer.
func (s *Server) sendRenewals(batch []*renewCall) {
	ids := make([]int64, len(batch))
	for i, c := range batch {
		ids[i] = c.id
	}
	s.renewals.forwarded.Add(int64(len(batch)))
	s.renewals.batches.Add(1)
	ctx, cancel := s.withRequestTimeout(context.Background())
	defer cancel()
	ttls, err := s.postRenewals(ctx, batch[0].urls, ids)
	for i, c := range batch {
		switch {
		case err != nil:
			c.err = err
		case ttls[i] == renewNotFound:
			c.err = lease.ErrLeaseNotFound
		default:
			c.ttl = ttls[i]
		}
		close(c.done)
	}
}

// postRenewals tries the leader's URLs in turn; errRetryLeader if none
// answered for the leader.
func (s *Server) postRenewals(ctx context.Context, urls []string, ids []int64) ([]int64, error) {
	body := encodeLeaseIDs(ids)
	var errs []error
	for _, u := range urls {
		b, err := s.postLease(ctx, u+leaseKeepAlivesPath, body)
		if err == nil {
			return decodeRenewTTLs(b, len(ids))
		}
		if errors.Is(err, errRetryLeader) {
			return nil, err
		}
		errs = append(errs, err)
	}
	s.log.Debug("forwarding keep-alives to the leader failed", "err", errors.Join(errs...))
	return nil, errRetryLeader
}

// serveKeepAlives answers a follower's batch: it renews each lease, and
// answers for the batch as a whole only if this member cannot decide
// (errRetryLeader) or the store failed.
func (s *Server) serveKeepAlives(ctx context.Context, body []byte) ([]byte, error) {
	ids, err := decodeLeaseIDs(body)
	if err != nil {
		return nil, err
	}
	if s.node.Leader() != s.id {
		return nil, errRetryLeader
	}
	ttls := make([]int64, len(ids))
	err = s.onPrimary(ctx, s.node.LeaderChanged(), func(ctx context.Context) error {
		return s.renewLocalBatch(ctx, ids, ttls)
	})
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(ttls)*3)
	for _, t := range ttls {
		out = protowire.AppendVarint(out, uint64(t))
	}
	return out, nil
}

// renewLocalBatch renews each of ids on this member, the primary lessor,
// setting ttls[i] to the TTL or renewNotFound. A lease unknown here may be
// granted and committed but not yet applied: the unknown ones are renewed
// again after one linearizable read point, when they are known if they
// exist.
func (s *Server) renewLocalBatch(ctx context.Context, ids []int64, ttls []int64) error {
	l := s.lease.lessor
	var unknown []int
	for i, id := range ids {
		ttl, err := l.Renew(id)
		switch {
		case errors.Is(err, lease.ErrLeaseNotFound):
			ttls[i] = renewNotFound
			if _, known := l.Lookup(id); !known {
				unknown = append(unknown, i)
			}
		case err != nil:
			return err
		default:
			ttls[i] = ttl
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	if err := s.LinearizableReadNotify(ctx); err != nil {
		return err
	}
	for _, i := range unknown {
		ttl, err := l.Renew(ids[i])
		switch {
		case errors.Is(err, lease.ErrLeaseNotFound):
		case err != nil:
			return err
		default:
			ttls[i] = ttl
		}
	}
	return nil
}

// encodeLeaseIDs is a keep-alive batch's request body.
func encodeLeaseIDs(ids []int64) []byte {
	out := make([]byte, 0, len(ids)*9)
	for _, id := range ids {
		out = protowire.AppendVarint(out, uint64(id))
	}
	return out
}

// decodeLeaseIDs reads a keep-alive batch's request body.
func decodeLeaseIDs(b []byte) ([]int64, error) {
	var ids []int64
	for len(b) > 0 {
		if len(ids) == maxRenewBatch {
			return nil, fmt.Errorf("server: a keep-alive batch of more than %d leases", maxRenewBatch)
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return nil, fmt.Errorf("server: keep-alive batch, lease %d: %w", len(ids), protowire.ParseError(n))
		}
		ids = append(ids, int64(v))
		b = b[n:]
	}
	if len(ids) == 0 {
		return nil, errors.New("server: an empty keep-alive batch")
	}
	return ids, nil
}

// decodeRenewTTLs reads the answer to a batch of n keep-alives.
func decodeRenewTTLs(b []byte, n int) ([]int64, error) {
	ttls := make([]int64, 0, n)
	for len(b) > 0 && len(ttls) < n {
		v, k := protowire.ConsumeVarint(b)
		if k < 0 {
			return nil, fmt.Errorf("server: keep-alive batch answer, lease %d: %w", len(ttls), protowire.ParseError(k))
		}
		t := int64(v)
		if t < renewNotFound {
			return nil, fmt.Errorf("server: keep-alive batch answer, lease %d: TTL %d", len(ttls), t)
		}
		ttls = append(ttls, t)
		b = b[k:]
	}
	if len(ttls) != n || len(b) != 0 {
		return nil, fmt.Errorf("server: a keep-alive batch answer for %d leases, want %d (%d bytes left)", len(ttls), n, len(b))
	}
	return ttls, nil
}
