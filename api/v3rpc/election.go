package v3rpc

import (
	"bytes"
	"context"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"

	"github.com/cairn-kv/cairn/mvcc"
)

type electionServer struct {
	v3electionpb.UnimplementedElectionServer
	c *coordinator
	// header builds the header of responses made from events.
	header func(rev int64) *pb.ResponseHeader
}

// Campaign waits until the request's lease leads the election name, then
// returns the leader key. A lease that already campaigns keeps its place
// (and its value is updated).
func (s *electionServer) Campaign(ctx context.Context, r *v3electionpb.CampaignRequest) (*v3electionpb.CampaignResponse, error) {
	lk, hdr, err := s.c.campaign(ctx, r.Name, r.Value, r.Lease)
	if err != nil {
		return nil, coordError(err)
	}
	return &v3electionpb.CampaignResponse{Header: hdr, Leader: lk}, nil
}

func (c *coordinator) campaign(ctx context.Context, name, val []byte, lease int64) (*v3electionpb.LeaderKey, *pb.ResponseHeader, error) {
	lease, err := c.sessionLease(ctx, lease)
	if err != nil {
		return nil, nil, err
	}
	pfx, key := lockKey(name, lease)
	resp, err := c.kv.Txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{createdAt(key, 0)},
		Success: []*pb.RequestOp{opPut(key, val, lease)},
		Failure: []*pb.RequestOp{opRange(&pb.RangeRequest{Key: key})},
	})
	if err != nil {
		return nil, nil, err
	}
	lk := &v3electionpb.LeaderKey{Name: name, Key: key, Rev: resp.Header.Revision, Lease: lease}
	if !resp.Succeeded {
		kv := resp.Responses[0].GetResponseRange().Kvs[0]
		lk.Rev = kv.CreateRevision
		if !bytes.Equal(kv.Value, val) {
			if _, err := c.proclaim(ctx, lk, val); err != nil {
				_, _ = c.resign(context.WithoutCancel(ctx), lk)
				return nil, nil, err
			}
		}
	}
	if err := waitDeletes(ctx, c.kv, c.w, pfx, lk.Rev-1); err != nil {
		if ctx.Err() != nil {
			c.cleanupResign(ctx, lk)
		}
		return nil, nil, err
	}
	return lk, resp.Header, nil
}

// cleanupResign gives up a campaign whose wait was canceled.
func (c *coordinator) cleanupResign(ctx context.Context, lk *v3electionpb.LeaderKey) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, _ = c.resign(ctx, lk)
}

// Proclaim sets the leader's value, if the leader key still leads.
func (s *electionServer) Proclaim(ctx context.Context, r *v3electionpb.ProclaimRequest) (*v3electionpb.ProclaimResponse, error) {
	if r.Leader == nil {
		return nil, coordError(errMissingLeaderKey)
	}
	hdr, err := s.c.proclaim(ctx, r.Leader, r.Value)
	if err != nil {
		return nil, coordError(err)
	}
	return &v3electionpb.ProclaimResponse{Header: hdr}, nil
}

func (c *coordinator) proclaim(ctx context.Context, lk *v3electionpb.LeaderKey, val []byte) (*pb.ResponseHeader, error) {
	resp, err := c.kv.Txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{createdAt(lk.Key, lk.Rev)},
		Success: []*pb.RequestOp{opPut(lk.Key, val, lk.Lease)},
	})
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		return nil, errElectionNotLeader
	}
	return resp.Header, nil
}

// Resign deletes the leader key if it is still the one created at its
// revision; resigning twice is not an error.
func (s *electionServer) Resign(ctx context.Context, r *v3electionpb.ResignRequest) (*v3electionpb.ResignResponse, error) {
	if r.Leader == nil {
		return nil, coordError(errMissingLeaderKey)
	}
	hdr, err := s.c.resign(ctx, r.Leader)
	if err != nil {
		return nil, coordError(err)
	}
	return &v3electionpb.ResignResponse{Header: hdr}, nil
}

func (c *coordinator) resign(ctx context.Context, lk *v3electionpb.LeaderKey) (*pb.ResponseHeader, error) {
	resp, err := c.kv.Txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{createdAt(lk.Key, lk.Rev)},
		Success: []*pb.RequestOp{opDelete(lk.Key)},
	})
	if err != nil {
		return nil, err
	}
	return resp.Header, nil
}

// Leader returns the current leader's key-value.
func (s *electionServer) Leader(ctx context.Context, r *v3electionpb.LeaderRequest) (*v3electionpb.LeaderResponse, error) {
	resp, err := s.c.leader(ctx, r.Name)
	if err != nil {
		return nil, coordError(err)
	}
	return resp, nil
}

func (c *coordinator) leader(ctx context.Context, name []byte) (*v3electionpb.LeaderResponse, error) {
	pfx, _ := lockKey(name, 0)
	resp, err := c.kv.Range(ctx, firstCreated(pfx))
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, errElectionNoLeader
	}
	return &v3electionpb.LeaderResponse{Header: resp.Header, Kv: resp.Kvs[0]}, nil
}

// Observe streams the leader: the current one, each value it proclaims,
// and each following leader. Like etcd's service, the stream ends without
// error when reading the election fails, and with the context's error when
// the client goes away.
func (s *electionServer) Observe(r *v3electionpb.LeaderRequest, stream v3electionpb.Election_ObserveServer) error {
	ctx := stream.Context()
	send := func(resp *v3electionpb.LeaderResponse) error { return stream.Send(resp) }
	err := s.c.observe(ctx, r.Name, s.header, send)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return coordError(ctxErr)
	}
	var sendErr *observeSendError
	if errors.As(err, &sendErr) {
		return sendErr.err
	}
	return nil
}

// observeSendError marks a failure to send, which ends Observe with it.
type observeSendError struct{ err error }

func (e *observeSendError) Error() string { return e.err.Error() }

// observe calls send with the leader and every change of it until ctx ends
// or an error occurs.
func (c *coordinator) observe(ctx context.Context, name []byte, header func(int64) *pb.ResponseHeader,
	send func(*v3electionpb.LeaderResponse) error) error {
	pfx, _ := lockKey(name, 0)
	for {
		lr, err := c.nextLeader(ctx, pfx, header)
		if err != nil {
			return err
		}
		if err := send(lr); err != nil {
			return &observeSendError{err}
		}
		if err := c.followLeader(ctx, lr.Kv.Key, lr.Header.Revision+1, header, send); err != nil {
			return err
		}
	}
}

// nextLeader returns the leader under pfx, waiting for one if there is
// none.
func (c *coordinator) nextLeader(ctx context.Context, pfx []byte, header func(int64) *pb.ResponseHeader) (*v3electionpb.LeaderResponse, error) {
	for {
		resp, err := c.kv.Range(ctx, firstCreated(pfx))
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) > 0 {
			return &v3electionpb.LeaderResponse{Header: resp.Header, Kv: resp.Kvs[0]}, nil
		}
		from := resp.Header.Revision + 1
		for {
			evs, next, err := c.w.next(ctx, pfx, prefixEnd(pfx), from)
			if errors.Is(err, mvcc.ErrCompacted) {
				break // look again
			}
			if err != nil {
				return nil, err
			}
			for _, ev := range evs {
				if ev.Type == mvccpb.PUT {
					return &v3electionpb.LeaderResponse{Header: header(ev.Kv.ModRevision), Kv: ev.Kv}, nil
				}
			}
			from = next
		}
	}
}

// followLeader sends every put of the leader key from revision from on and
// returns when the key is deleted.
func (c *coordinator) followLeader(ctx context.Context, key []byte, from int64, header func(int64) *pb.ResponseHeader,
	send func(*v3electionpb.LeaderResponse) error) error {
	for {
		evs, next, err := c.w.next(ctx, key, nil, from)
		if errors.Is(err, mvcc.ErrCompacted) {
			return nil // the caller finds the leader again
		}
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.Type == mvccpb.DELETE {
				return nil
			}
			if err := send(&v3electionpb.LeaderResponse{Header: header(ev.Kv.ModRevision), Kv: ev.Kv}); err != nil {
				return &observeSendError{err}
			}
		}
		from = next
	}
}
