package v3rpc

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/lease"
)

// LeaseBackend is the member's lease side.
type LeaseBackend interface {
	Member
	// Rev is the store's current revision, for response headers.
	Rev() int64
	LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error)
	LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error)
	// LeaseRenew keeps a lease alive (on the leader) and returns its TTL.
	LeaseRenew(ctx context.Context, id int64) (int64, error)
	LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error)
	LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error)
}

type leaseServer struct {
	pb.UnimplementedLeaseServer
	a *API
	b LeaseBackend
}

func (s *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	resp, err := s.b.LeaseGrant(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	s.a.fillHeader(&resp.Header)
	return resp, nil
}

func (s *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := s.b.LeaseRevoke(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	s.a.fillHeader(&resp.Header)
	return resp, nil
}

// LeaseTimeToLive answers like etcd: an unknown lease is not an error but
// TTL -1.
func (s *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := s.b.LeaseTimeToLive(ctx, r)
	switch {
	case errors.Is(err, lease.ErrLeaseNotFound):
		resp = &pb.LeaseTimeToLiveResponse{ID: r.ID, TTL: -1}
	case err != nil:
		return nil, toGRPCError(err)
	}
	resp.Header = s.a.header(s.b.Rev())
	return resp, nil
}

func (s *leaseServer) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	resp, err := s.b.LeaseLeases(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = s.a.header(s.b.Rev())
	return resp, nil
}

// LeaseKeepAlive answers each keep-alive in order. An unknown or expired
// lease gets TTL 0, as in etcd; other failures end the stream.
func (s *leaseServer) LeaseKeepAlive(stream grpc.BidiStreamingServer[pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse]) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err // ended by the server (a stream that requires a leader)
		}
		ttl, err := s.b.LeaseRenew(ctx, req.ID)
		if errors.Is(err, lease.ErrLeaseNotFound) {
			ttl, err = 0, nil
		}
		if err != nil {
			return toGRPCError(err)
		}
		resp := &pb.LeaseKeepAliveResponse{Header: s.a.header(s.b.Rev()), ID: req.ID, TTL: ttl}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
