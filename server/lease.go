package server

import (
	"context"
	"errors"
	"math"
	"net/http"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/apply"
	"github.com/cairn-kv/cairn/backend"
	"github.com/cairn-kv/cairn/lease"
	"github.com/cairn-kv/cairn/mvcc"
	"github.com/cairn-kv/cairn/transport"
)

// leaseMember is the member's lease side: the lessor over the current store,
// the open batch's lease Tx and the client that forwards keep-alives and
// TimeToLive to the leader's peer port.
type leaseMember struct {
	lessor *lease.Lessor
	minTTL int64        // seconds: etcd's minTTL for this member's timing
	client *http.Client // to the leader's peer URLs
	tx     *lease.Tx    // the batch being applied; apply goroutine only
}

// loadLeases (re)builds the lease table from be: at open, and whenever a
// received state copy replaces the store (openStore).
func (s *Server) loadLeases(be *backend.Backend) error {
	if s.lease == nil {
		s.lease = &leaseMember{
			lessor: lease.New(lease.Config{Logger: s.log.With("component", "lease")}),
			minTTL: lease.MinTTL(s.cfg.ElectionTicks(), s.cfg.HeartbeatInterval),
			client: transport.PeerClient(), // one HTTP/2 connection per peer
		}
	}
	return s.lease.lessor.Load(be)
}

// leaseExists is the revisioned store's LeaseExists (apply goroutine).
func (s *Server) leaseExists(id int64) bool { return s.lease.lessor.Exists(id) }

// leaseBegin opens the lease side of an applied batch.
func (s *Server) leaseBegin(bt *backend.Batch, w *mvcc.Writer) {
	s.lease.tx = s.lease.lessor.Begin(bt, w)
}

// leaseFlush indexes the batch's key attachments before it is committed.
func (s *Server) leaseFlush() error { return s.lease.tx.Flush() }

// leaseEnd publishes the committed batch's lease changes.
func (s *Server) leaseEnd() {
	s.lease.tx.End()
	s.lease.tx = nil
}

// applyLease applies a lease request of the batch; ok is false for others.
func (s *Server) applyLease(req *pb.InternalRaftRequest) (apply.Result, bool) {
	return apply.ApplyLease(s.lease.tx, req)
}

// LeaseGrant grants a lease. ID 0 asks the member to choose a unique
// positive ID; a TTL under the member's minimum TTL is raised to it. Both
// are decided here, at proposal, so applying stays deterministic.
func (s *Server) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.TTL > lease.MaxTTL {
		return nil, lease.ErrTTLTooLarge
	}
	for attempt := 0; ; attempt++ {
		req := &pb.LeaseGrantRequest{ID: r.ID, TTL: max(r.TTL, s.lease.minTTL)}
		for req.ID == 0 {
			req.ID = int64(s.reqIDs.Next() & math.MaxInt64)
		}
		resp, err := s.propose(ctx, &pb.InternalRaftRequest{LeaseGrant: req})
		if r.ID == 0 && errors.Is(err, lease.ErrLeaseExists) && attempt < 3 {
			continue // a chosen ID collided with a client's: choose again
		}
		if err != nil {
			return nil, err
		}
		return resp.(*pb.LeaseGrantResponse), nil
	}
}

// LeaseRevoke revokes a lease and deletes its keys.
func (s *Server) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: r.ID}})
	if err != nil {
		return nil, err
	}
	return resp.(*pb.LeaseRevokeResponse), nil
}

// LeaseRenew renews a lease on the leader (forwarding to it from a
// follower, in a batch with the other keep-alives forwarded meanwhile) and
// returns its TTL.
func (s *Server) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	var ttl int64
	err := s.onLeader(ctx,
		func(ctx context.Context) (err error) {
			ttl, err = s.renewLocal(ctx, id)
			return err
		},
		func(ctx context.Context, urls []string) (err error) {
			ttl, err = s.forwardRenew(ctx, urls, id)
			return err
		})
	return ttl, err
}

// renewLocal renews one lease on this member (renewLocalBatch).
func (s *Server) renewLocal(ctx context.Context, id int64) (int64, error) {
	ids, ttls := [1]int64{id}, [1]int64{}
	if err := s.renewLocalBatch(ctx, ids[:], ttls[:]); err != nil {
		return 0, err
	}
	if ttls[0] == renewNotFound {
		return 0, lease.ErrLeaseNotFound
	}
	return ttls[0], nil
}

// LeaseTimeToLive reports a lease's remaining and granted TTL as the leader
// counts them, and its keys if asked.
func (s *Server) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	var resp *pb.LeaseTimeToLiveResponse
	err := s.onLeader(ctx,
		func(ctx context.Context) (err error) {
			resp, err = s.timeToLiveLocal(ctx, r)
			return err
		},
		func(ctx context.Context, urls []string) error {
			resp = &pb.LeaseTimeToLiveResponse{}
			return s.forwardLease(ctx, urls, leaseTimeToLivePath, r, resp)
		})
	return resp, err
}

func (s *Server) timeToLiveLocal(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	l := s.lease.lessor
	if _, known := l.Lookup(r.ID); !known {
		if err := s.LinearizableReadNotify(ctx); err != nil {
			return nil, err
		}
	}
	rem, granted, err := l.TimeToLive(r.ID)
	if err != nil {
		return nil, err
	}
	resp := &pb.LeaseTimeToLiveResponse{Header: &pb.ResponseHeader{}, ID: r.ID, TTL: rem, GrantedTTL: granted}
	if r.Keys {
		s.storeMu.RLock()
		defer s.storeMu.RUnlock()
		if s.be == nil {
			return nil, ErrStopped
		}
		if resp.Keys, err = lease.Keys(s.be, r.ID); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// LeaseLeases lists the leases, linearizably.
func (s *Server) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	if err := s.LinearizableReadNotify(ctx); err != nil {
		return nil, err
	}
	ls := s.lease.lessor.Leases()
	resp := &pb.LeaseLeasesResponse{Header: &pb.ResponseHeader{}, Leases: make([]*pb.LeaseStatus, len(ls))}
	for i, le := range ls {
		resp.Leases[i] = &pb.LeaseStatus{ID: le.ID}
	}
	return resp, nil
}
