package apply

import pb "go.etcd.io/etcd/api/v3/etcdserverpb"

// Lessor is the lease owner's side of one batch of entries.
type Lessor interface {
	Grant(*pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error)
	Revoke(*pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error)
	Checkpoint(*pb.LeaseCheckpointRequest) (*pb.LeaseCheckpointResponse, error)
}

// ApplyLease applies r to l if it is a lease request (LeaseGrant,
// LeaseRevoke, LeaseCheckpoint); ok is false for any other request.
func ApplyLease(l Lessor, r *pb.InternalRaftRequest) (res Result, ok bool) {
	switch {
	case r.GetLeaseGrant() != nil:
		resp, err := l.Grant(r.GetLeaseGrant())
		return result(resp, err), true
	case r.GetLeaseRevoke() != nil:
		resp, err := l.Revoke(r.GetLeaseRevoke())
		return result(resp, err), true
	case r.GetLeaseCheckpoint() != nil:
		resp, err := l.Checkpoint(r.GetLeaseCheckpoint())
		return result(resp, err), true
	default:
		return Result{}, false
	}
}
