package v3rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors of the Lock and Election services, with etcd's messages (clients
// of etcd's services see these texts with code Unknown).
var (
	errSessionExpired    = errors.New("mutex: session is expired")
	errElectionNotLeader = errors.New("election: not leader")
	errElectionNoLeader  = errors.New("election: no leader")
	errMissingLeaderKey  = errors.New(`"leader" field must be provided`)
	// errNoLeases answers a request without a lease while the member cannot
	// grant one.
	errNoLeases = status.Error(codes.Unimplemented, "v3rpc: leases are not available")
)

// LeaseGranter grants leases. Lock and Campaign requests without a lease
// (lease 0) get a new one with sessionTTL seconds, as etcd's services do;
// the member implements it once leases exist (found by type assertion).
type LeaseGranter interface {
	LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error)
}

const (
	// sessionTTL is the TTL of a lease granted for a request without one
	// (the default of etcd's concurrency sessions).
	sessionTTL = 60
	// cleanupTimeout bounds the deletion of a key left by a canceled wait.
	cleanupTimeout = 10 * time.Second
)

// coordinator holds what the Lock and Election services share. Both work
// like etcd's services (which are clients of their own member using the
// client/v3/concurrency recipes): keys under "<name>/" named for the lease,
// ordered by create revision; the holder is the oldest key; a waiter waits
// for every older key to be deleted.
type coordinator struct {
	kv    coordKV
	w     changeWaiter
	grant LeaseGranter // nil: leases cannot be granted
}

// sessionLease returns lease, or a new lease when lease is 0.
func (c *coordinator) sessionLease(ctx context.Context, lease int64) (int64, error) {
	if lease != 0 {
		return lease, nil
	}
	if c.grant == nil {
		return 0, errNoLeases
	}
	resp, err := c.grant.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: sessionTTL})
	if err != nil {
		return 0, err
	}
	return resp.ID, nil
}

// cleanup deletes key after a failed wait, even if ctx was canceled.
func (c *coordinator) cleanup(ctx context.Context, key []byte) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, _ = c.kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: key})
}

// coordError converts an error the way etcd's Lock and Election services
// return them: they call their member through the Go client, which turns a
// failed call into an error with etcd's message and no gRPC status, so the
// caller gets code Unknown and that message (the official client maps the
// message back to the rpctypes error). Cancellation keeps its code.
func coordError(err error) error {
	if err == nil {
		return nil
	}
	st := status.Convert(toGRPCError(err))
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Unimplemented:
		return st.Err()
	}
	return status.Error(codes.Unknown, st.Message())
}

// lockKey is the key a lease holds for the lock or election name.
func lockKey(name []byte, lease int64) (pfx, key []byte) {
	pfx = append(append([]byte(nil), name...), '/')
	return pfx, fmt.Appendf(bytes.Clone(pfx), "%x", lease)
}

type lockServer struct {
	v3lockpb.UnimplementedLockServer
	c *coordinator
}

// Lock acquires the lock name for the request's lease and returns the key
// that holds it; the lock is held until the key is deleted (Unlock) or the
// lease ends.
func (s *lockServer) Lock(ctx context.Context, r *v3lockpb.LockRequest) (*v3lockpb.LockResponse, error) {
	hdr, key, err := s.c.lock(ctx, r.Name, r.Lease)
	if err != nil {
		return nil, coordError(err)
	}
	return &v3lockpb.LockResponse{Header: hdr, Key: key}, nil
}

// Unlock deletes the key returned by Lock.
func (s *lockServer) Unlock(ctx context.Context, r *v3lockpb.UnlockRequest) (*v3lockpb.UnlockResponse, error) {
	resp, err := s.c.kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: r.Key})
	if err != nil {
		return nil, coordError(err)
	}
	return &v3lockpb.UnlockResponse{Header: resp.Header}, nil
}

// lock creates name/<lease> unless it exists, then waits until every key
// created before it under name/ is gone. A failed wait deletes the key.
func (c *coordinator) lock(ctx context.Context, name []byte, lease int64) (*pb.ResponseHeader, []byte, error) {
	lease, err := c.sessionLease(ctx, lease)
	if err != nil {
		return nil, nil, err
	}
	pfx, key := lockKey(name, lease)
	resp, err := c.kv.Txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{createdAt(key, 0)},
		Success: []*pb.RequestOp{opPut(key, nil, lease), opRange(firstCreated(pfx))},
		Failure: []*pb.RequestOp{opRange(&pb.RangeRequest{Key: key}), opRange(firstCreated(pfx))},
	})
	if err != nil {
		return nil, nil, err
	}
	myRev := resp.Header.Revision
	if !resp.Succeeded {
		myRev = resp.Responses[0].GetResponseRange().Kvs[0].CreateRevision
	}
	owner := resp.Responses[1].GetResponseRange().Kvs
	if len(owner) == 0 || owner[0].CreateRevision == myRev {
		return resp.Header, key, nil
	}
	if err := waitDeletes(ctx, c.kv, c.w, pfx, myRev-1); err != nil {
		c.cleanup(ctx, key)
		return nil, nil, err
	}
	// The lease may have ended while we waited.
	g, err := c.kv.Range(ctx, &pb.RangeRequest{Key: key})
	if err != nil {
		c.cleanup(ctx, key)
		return nil, nil, err
	}
	if len(g.Kvs) == 0 {
		return nil, nil, errSessionExpired
	}
	return g.Header, key, nil
}
