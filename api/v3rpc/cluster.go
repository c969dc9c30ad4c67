package v3rpc

import (
	"context"
	"net"
	"net/url"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/cairn-kv/cairn/membership"
)

// ClusterBackend is the member's membership side.
type ClusterBackend interface {
	Member
	Rev() int64
	Members() []membership.Member
	AddMember(ctx context.Context, peerURLs []string, learner bool) (membership.Member, []membership.Member, error)
	RemoveMember(ctx context.Context, id uint64) ([]membership.Member, error)
	UpdateMember(ctx context.Context, id uint64, peerURLs []string) ([]membership.Member, error)
	PromoteMember(ctx context.Context, id uint64) ([]membership.Member, error)
	LinearizableReadNotify(ctx context.Context) error
}

type clusterServer struct {
	pb.UnimplementedClusterServer
	a *API
	b ClusterBackend
}

func (s *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	if err := checkPeerURLs(r.PeerURLs); err != nil {
		return nil, err
	}
	m, ms, err := s.b.AddMember(ctx, r.PeerURLs, r.IsLearner)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberAddResponse{Header: s.header(), Member: toPBMember(m), Members: toPBMembers(ms)}, nil
}

func (s *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	ms, err := s.b.RemoveMember(ctx, r.ID)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberRemoveResponse{Header: s.header(), Members: toPBMembers(ms)}, nil
}

func (s *clusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	if err := checkPeerURLs(r.PeerURLs); err != nil {
		return nil, err
	}
	ms, err := s.b.UpdateMember(ctx, r.ID, r.PeerURLs)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberUpdateResponse{Header: s.header(), Members: toPBMembers(ms)}, nil
}

// MemberList answers from the local member list; with linearizable set it
// first waits until this member has applied everything committed before
// the call, like etcd.
func (s *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.Linearizable {
		if err := s.b.LinearizableReadNotify(ctx); err != nil {
			return nil, toGRPCError(err)
		}
	}
	return &pb.MemberListResponse{Header: s.header(), Members: toPBMembers(s.b.Members())}, nil
}

func (s *clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	ms, err := s.b.PromoteMember(ctx, r.ID)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberPromoteResponse{Header: s.header(), Members: toPBMembers(ms)}, nil
}

// header is etcd's cluster header: the current store revision.
func (s *clusterServer) header() *pb.ResponseHeader { return s.a.header(s.b.Rev()) }

func toPBMember(m membership.Member) *pb.Member {
	return &pb.Member{
		ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner,
	}
}

func toPBMembers(ms []membership.Member) []*pb.Member {
	out := make([]*pb.Member, len(ms))
	for i, m := range ms {
		out[i] = toPBMember(m)
	}
	return out
}

// checkPeerURLs accepts what etcd's types.NewURLs accepts: at least one URL,
// each with scheme http, https, unix or unixs, a host with a port (unix
// sockets excepted), and no path.
func checkPeerURLs(urls []string) error {
	if len(urls) == 0 {
		return rpctypes.ErrGRPCMemberBadURLs
	}
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			return rpctypes.ErrGRPCMemberBadURLs
		}
		switch u.Scheme {
		case "http", "https":
			if _, _, err := net.SplitHostPort(u.Host); err != nil {
				return rpctypes.ErrGRPCMemberBadURLs
			}
		case "unix", "unixs":
		default:
			return rpctypes.ErrGRPCMemberBadURLs
		}
		if u.Path != "" && u.Path != "/" {
			return rpctypes.ErrGRPCMemberBadURLs
		}
	}
	return nil
}
