package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/apply"
	"github.com/cairn-kv/cairn/mvcc"
)

// ErrRequestTooLarge is returned for a request over --max-request-bytes.
var ErrRequestTooLarge = errors.New("server: request is too large")

// withRequestTimeout bounds ctx by the server's request timeout unless the
// caller set a deadline, in which case ctx is returned as it is (a child
// context per request cost three allocations and a registration with the
// parent, for nothing to cancel).
func (s *Server) withRequestTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.requestTimeout())
}

// proposalError turns a failed or abandoned proposal into the error the
// caller sees.
func (s *Server) proposalError(ctx context.Context, err error) error {
	select {
	case <-s.stopc:
		return ErrStopped
	default:
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	if s.node.Leader() == 0 {
		return ErrNoLeader
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrTimeout
	}
	return err
}

// propose replicates req through raft and returns the result of applying it.
func (s *Server) propose(ctx context.Context, req *pb.InternalRaftRequest) (proto.Message, error) {
	if err := s.checkQuota(ctx, req); err != nil {
		return nil, err
	}
	id := s.reqIDs.Next()
	req.Header = &pb.RequestHeader{ID: id}
	data, err := apply.Encode(req)
	if err != nil {
		return nil, err
	}
	if uint(len(data)) > s.cfg.MaxRequestBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrRequestTooLarge, len(data), s.cfg.MaxRequestBytes)
	}
	ctx, cancel := s.withRequestTimeout(ctx)
	defer cancel()
	ch := s.waits.RegisterValue(id, req)
	s.metrics.proposalPending(1)
	defer s.metrics.proposalPending(-1)
	if err := s.node.Propose(ctx, data); err != nil {
		s.waits.Cancel(id)
		s.metrics.proposalFailed()
		return nil, s.proposalError(ctx, err)
	}
	select {
	case x := <-ch:
		if d, ok := x.(proposalRefused); ok {
			s.metrics.proposalFailed()
			return nil, s.proposalError(ctx, d.err)
		}
		r := x.(apply.Result)
		return r.Resp, r.Err
	case <-ctx.Done():
		s.waits.Cancel(id)
		s.metrics.proposalFailed()
		return nil, s.proposalError(ctx, ctx.Err())
	case <-s.stopc:
		return nil, ErrStopped
	}
}

// proposalDropped is raftnode's report of a queued proposal that raft
// refused after Node.Propose returned: its proposer, waiting for the result,
// gets the refusal instead.
func (s *Server) proposalDropped(data []byte, err error) {
	if id, ok := apply.PeekID(data); ok {
		s.waits.Trigger(id, proposalRefused{err})
	}
}

// proposalRefused is what a proposer waiting for its result gets instead
// when raft refused the proposal.
type proposalRefused struct{ err error }

// Put stores a key.
func (s *Server) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{Put: r})
	if err != nil {
		return nil, err
	}
	return resp.(*pb.PutResponse), nil
}

// DeleteRange deletes a key or range.
func (s *Server) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{DeleteRange: r})
	if err != nil {
		return nil, err
	}
	return resp.(*pb.DeleteRangeResponse), nil
}

// Txn runs a transaction through the log.
func (s *Server) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{Txn: r})
	if err != nil {
		return nil, err
	}
	return resp.(*pb.TxnResponse), nil
}

// Compact compacts the history up to a revision.
func (s *Server) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{Compaction: r})
	if err != nil {
		return nil, err
	}
	return resp.(*pb.CompactionResponse), nil
}

// Range reads keys: linearizably unless r.Serializable.
func (s *Server) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if !r.GetSerializable() {
		if err := s.LinearizableReadNotify(ctx); err != nil {
			return nil, err
		}
	}
	var resp *pb.RangeResponse
	err := s.withStore(func(kv *mvcc.Store) error {
		var err error
		resp, err = kv.Range(ctx, r)
		return err
	})
	return resp, err
}

// withStore runs f with the revisioned store, which cannot be swapped (by
// installing a received state) meanwhile.
func (s *Server) withStore(f func(*mvcc.Store) error) error {
	s.storeMu.RLock()
	defer s.storeMu.RUnlock()
	if s.kv == nil {
		return ErrStopped
	}
	return f(s.kv)
}

// notifier is one ReadIndex round that readers wait on.
type notifier struct {
	c   chan struct{}
	err error
}

func newNotifier() *notifier { return &notifier{c: make(chan struct{})} }

func (n *notifier) notify(err error) {
	n.err = err
	close(n.c)
}

// LinearizableReadNotify returns once this member has applied everything
// committed before the call: a read of the local store is then linearizable.
func (s *Server) LinearizableReadNotify(ctx context.Context) error {
	if idx, ok := s.node.LocalReadIndex(); ok {
		// The only voter, leading: its commit index is the read index,
		// with no ReadIndex round to share.
		return s.waitApplied(ctx, idx)
	}
	s.readMu.Lock()
	nr := s.readNotifier
	s.readMu.Unlock()
	select {
	case s.readWake <- struct{}{}:
	default:
	}
	select {
	case <-nr.c:
		return nr.err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopc:
		return ErrStopped
	}
}

// readLoop runs ReadIndex rounds; readers that arrive during a round share
// the next one.
func (s *Server) readLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.readWake:
		case <-s.stopc:
			s.readMu.Lock()
			s.readNotifier.notify(ErrStopped)
			s.readMu.Unlock()
			return
		}
		s.readMu.Lock()
		nr := s.readNotifier
		s.readNotifier = newNotifier()
		s.readMu.Unlock()
		nr.notify(s.readIndexRound())
	}
}

// readIndexRound asks the leader for a read index and waits until it is
// applied locally.
func (s *Server) readIndexRound() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
	defer cancel()
	rctx := make([]byte, 8)
	binary.BigEndian.PutUint64(rctx, s.reqIDs.Next())
	retry := time.NewTicker(s.cfg.ElectionTimeout / 2)
	defer retry.Stop()
	if err := s.node.ReadIndex(ctx, rctx); err != nil {
		return s.proposalError(ctx, err)
	}
	for {
		select {
		case rs := <-s.node.ReadStates():
			if !bytes.Equal(rs.RequestCtx, rctx) {
				continue // an answer to an abandoned round
			}
			if err := s.waitApplied(ctx, rs.Index); err != nil {
				return s.proposalError(ctx, err)
			}
			return nil
		case <-retry.C:
			// The request may have been dropped (no leader, leader change).
			if err := s.node.ReadIndex(ctx, rctx); err != nil {
				return s.proposalError(ctx, err)
			}
		case <-ctx.Done():
			return s.proposalError(ctx, ctx.Err())
		case <-s.stopc:
			return ErrStopped
		}
	}
}
