package v3rpc

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/cairn-kv/cairn/membership"

	"github.com/cairn-kv/cairn/server"
)

// MaintenanceBackend is the member's maintenance side.
type MaintenanceBackend interface {
	Member
	Rev() int64
	Leader() uint64
	Members() []membership.Member
	MaintenanceStatus(ctx context.Context) (*pb.StatusResponse, error)
	Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error)
	Alarms() []*pb.AlarmMember
	Hash(ctx context.Context) (*pb.HashResponse, error)
	HashKV(ctx context.Context, rev int64) (*pb.HashKVResponse, error)
	Defragment(ctx context.Context) error
	MoveLeader(ctx context.Context, transferee uint64) error
	// SnapshotArchive returns a consistent state archive and its size.
	SnapshotArchive(ctx context.Context) (io.ReadCloser, int64, error)
}

// snapshotChunkSize is the blob size of one Snapshot stream message.
const snapshotChunkSize = 32 << 10

type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	a *API
	b MaintenanceBackend
}

func (s *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	resp, err := s.b.MaintenanceStatus(ctx)
	if err != nil {
		return nil, toGRPCError(err)
	}
	s.a.fillHeader(&resp.Header)
	return resp, nil
}

// Alarm passes GET, ACTIVATE and DEACTIVATE to the member, which applies
// them through raft.
func (s *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	resp, err := s.b.Alarm(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = s.a.header(s.b.Rev())
	return resp, nil
}

func (s *maintenanceServer) Hash(ctx context.Context, _ *pb.HashRequest) (*pb.HashResponse, error) {
	resp, err := s.b.Hash(ctx)
	if err != nil {
		return nil, toGRPCError(err)
	}
	s.a.fillHeader(&resp.Header)
	return resp, nil
}

func (s *maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	resp, err := s.b.HashKV(ctx, r.Revision)
	if err != nil {
		return nil, toGRPCError(err)
	}
	s.a.fillHeader(&resp.Header)
	return resp, nil
}

func (s *maintenanceServer) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := s.b.Defragment(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.DefragmentResponse{Header: s.a.header(s.b.Rev())}, nil
}

// MoveLeader hands leadership to a voting member; only the leader accepts
// it, like etcd.
func (s *maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if s.b.Leader() != s.b.ID() {
		return nil, rpctypes.ErrGRPCNotLeader
	}
	if !isVoter(s.b.Members(), r.TargetID) {
		return nil, rpctypes.ErrGRPCBadLeaderTransferee
	}
	if err := s.b.MoveLeader(ctx, r.TargetID); err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MoveLeaderResponse{Header: s.a.header(s.b.Rev())}, nil
}

func isVoter(ms []membership.Member, id uint64) bool {
	for _, m := range ms {
		if m.ID == id {
			return !m.IsLearner
		}
	}
	return false
}

// Snapshot streams one consistent state archive in chunks, each with the
// bytes still to come in remaining_bytes, then one last message whose blob
// is the SHA-256 of all the archive bytes (remaining_bytes 0): the client
// writes the blobs one after another, so the file it saves ends with the
// 32-byte checksum of what precedes it, as etcd's does (see
// snap.VerifyChecksum).
func (s *maintenanceServer) Snapshot(_ *pb.SnapshotRequest, srv pb.Maintenance_SnapshotServer) error {
	ctx := srv.Context()
	rc, total, err := s.b.SnapshotArchive(ctx)
	if err != nil {
		return toGRPCError(err)
	}
	defer rc.Close()
	h := sha256.New()
	buf := make([]byte, snapshotChunkSize)
	hdr := s.a.header(s.b.Rev())
	for sent := int64(0); sent < total; {
		n, err := io.ReadFull(rc, buf[:min(int64(len(buf)), total-sent)])
		if err != nil {
			return toGRPCError(fmt.Errorf("v3rpc: read snapshot after %d of %d bytes: %w", sent, total, err))
		}
		sent += int64(n)
		h.Write(buf[:n])
		resp := &pb.SnapshotResponse{Header: hdr, RemainingBytes: uint64(total - sent), Blob: buf[:n], Version: server.Version}
		if err := srv.Send(resp); err != nil {
			return toGRPCError(err)
		}
	}
	if err := srv.Send(&pb.SnapshotResponse{Header: hdr, Blob: h.Sum(nil), Version: server.Version}); err != nil {
		return toGRPCError(err)
	}
	return nil
}
