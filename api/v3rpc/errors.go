package v3rpc

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/lease"
	"github.com/cairn-kv/cairn/membership"
	"github.com/cairn-kv/cairn/mvcc"
	"github.com/cairn-kv/cairn/server"
)

// errorTable maps member errors to etcd's gRPC errors, first match wins.
var errorTable = []struct {
	err  error
	grpc error
}{
	{mvcc.ErrCompacted, rpctypes.ErrGRPCCompacted},
	{mvcc.ErrFutureRev, rpctypes.ErrGRPCFutureRev},
	{mvcc.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound},
	{mvcc.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
	{lease.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
	{lease.ErrLeaseExists, rpctypes.ErrGRPCLeaseExist},
	{lease.ErrTTLTooLarge, rpctypes.ErrGRPCLeaseTTLTooLarge},
	{server.ErrNoLeader, rpctypes.ErrGRPCNoLeader},
	{server.ErrTimeout, rpctypes.ErrGRPCTimeout},
	{server.ErrStopped, rpctypes.ErrGRPCStopped},
	{server.ErrRequestTooLarge, rpctypes.ErrGRPCRequestTooLarge},
	{server.ErrNotLeader, rpctypes.ErrGRPCNotLeader},
	{server.ErrLearnerNotReady, rpctypes.ErrGRPCLearnerNotReady},
	{server.ErrNoSpace, rpctypes.ErrGRPCNoSpace},
	{server.ErrCorrupt, rpctypes.ErrGRPCCorrupt},
	{server.ErrLeaderTransfer, errGRPCLeaderTransferTimeout},
	{membership.ErrLastVoter, rpctypes.ErrGRPCMemberNotEnoughStarted},
	{membership.ErrIDExists, rpctypes.ErrGRPCMemberExist},
	{membership.ErrPeerURLExists, rpctypes.ErrGRPCPeerURLExist},
	{membership.ErrIDNotFound, rpctypes.ErrGRPCMemberNotFound},
	{membership.ErrIDRemoved, rpctypes.ErrGRPCMemberNotFound},
	{membership.ErrMemberNotLearner, rpctypes.ErrGRPCMemberNotLearner},
	{membership.ErrTooManyLearners, rpctypes.ErrGRPCTooManyLearners},
	{membership.ErrBadURL, rpctypes.ErrGRPCMemberBadURLs},
	{membership.ErrNoPeerURLs, rpctypes.ErrGRPCMemberBadURLs},
}

// errGRPCLeaderTransferTimeout is etcd's error for a leader transfer that
// did not complete in time (etcd has no rpctypes row for it).
var errGRPCLeaderTransferTimeout = status.Error(codes.Unavailable, "etcdserver: request timed out, leader transfer took too long")

// toGRPCError converts an error from the member to the status error an etcd
// client expects. Errors that already carry a gRPC status pass through.
func toGRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return e.grpc
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}
