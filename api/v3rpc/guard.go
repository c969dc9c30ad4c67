package v3rpc

import (
	"context"
	"errors"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"

	"github.com/cairn-kv/cairn/internal/h2rpc"
)

// Two checks etcd makes before a call reaches its service, made here by one
// interceptor pair (callGuard) ahead of the gRPC metrics.
//
// A learner serves only what etcd lets a learner serve: Maintenance.Status,
// serializable ranges and the Snapshot stream. Every other call fails with
// etcd's "rpc not supported for learner" (FailedPrecondition) until the
// member is promoted.
//
// A client may ask that its calls be served only while the member knows a
// leader: clientv3.WithRequireLeader adds the metadata "hasleader: true".
// Such a call fails with etcd's "no leader" error (Unavailable) when the
// member knows none as it starts. A stream that asked (a watch, lease
// keep-alives) is ended with that error once the member has known no
// leader for maxNoLeaderChecks checks in a row, one per election timeout,
// as etcd does; clientv3 then closes the watch channel with
// rpctypes.ErrNoLeader instead of retrying, which is how a watcher learns
// that its member was cut off from the cluster. Calls without the metadata
// are served as before.

// maxNoLeaderChecks is how many leader checks in a row must find none
// before the streams that require a leader are ended.
const maxNoLeaderChecks = 3

// errNoLeader is the cause with which callGuard cancels a stream.
var errNoLeader = errors.New("v3rpc: the member knows no leader")

// requiresLeader reports whether the call in ctx asked for a leader.
func requiresLeader(ctx context.Context) bool {
	v, ok := h2rpc.IncomingValue(ctx, rpctypes.MetadataRequireLeaderKey)
	return ok && v == rpctypes.MetadataHasLeader
}

// snapshotMethod is the one stream a learner serves.
const snapshotMethod = "/etcdserverpb.Maintenance/Snapshot"

// servedByLearner reports whether a learner serves the unary request req.
func servedByLearner(req any) bool {
	switch r := req.(type) {
	case *pb.StatusRequest:
		return true
	case *pb.RangeRequest:
		return r.Serializable
	}
	return false
}

// callGuard makes both checks. It holds the streams that require a leader
// and checks, while there are any, whether the member knows one.
type callGuard struct {
	leader   func() uint64 // the member's leader, 0 if none
	learner  func() bool   // whether the member is a learner
	interval time.Duration // between leader checks: the election timeout
	// The interceptors the guard's run next, if any (the gRPC metrics):
	// called directly, not through a chain that builds a closure per call.
	nextUnary  grpc.UnaryServerInterceptor
	nextStream grpc.StreamServerInterceptor

	mu       sync.Mutex
	streams  map[*guardedStream]struct{}
	checking bool // a check loop runs
}

// guardedStream is a stream whose context callGuard may cancel.
type guardedStream struct {
	grpc.ServerStream
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// aborter is a server stream that can be ended while its handler waits in
// Recv (internal/h2rpc's). On grpc-go's a guarded handler notices its
// canceled context only between messages.
type aborter interface{ Abort(err error) }

// end cancels the stream's context and, where it can, its Recv.
func (gs *guardedStream) end() {
	gs.cancel(errNoLeader)
	if a, ok := gs.ServerStream.(aborter); ok {
		a.Abort(rpctypes.ErrGRPCNoLeader)
	}
}

func (s *guardedStream) Context() context.Context { return s.ctx }

func (g *callGuard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if g.learner() && !servedByLearner(req) {
		return nil, rpctypes.ErrGRPCNotSupportedForLearner
	}
	if requiresLeader(ctx) && g.leader() == 0 {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	if g.nextUnary != nil {
		return g.nextUnary(ctx, req, info, handler)
	}
	return handler(ctx, req)
}

func (g *callGuard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if g.learner() && info.FullMethod != snapshotMethod {
		return rpctypes.ErrGRPCNotSupportedForLearner
	}
	if !requiresLeader(ss.Context()) {
		return g.next(srv, ss, info, handler)
	}
	if g.leader() == 0 {
		return rpctypes.ErrGRPCNoLeader
	}
	ctx, cancel := context.WithCancelCause(ss.Context())
	gs := &guardedStream{ServerStream: ss, ctx: ctx, cancel: cancel}
	g.add(gs)
	defer g.remove(gs)
	err := g.next(srv, gs, info, handler)
	if errors.Is(context.Cause(ctx), errNoLeader) {
		return rpctypes.ErrGRPCNoLeader
	}
	return err
}

func (g *callGuard) next(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if g.nextStream != nil {
		return g.nextStream(srv, ss, info, handler)
	}
	return handler(srv, ss)
}

func (g *callGuard) add(gs *guardedStream) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.streams == nil {
		g.streams = map[*guardedStream]struct{}{}
	}
	g.streams[gs] = struct{}{}
	if !g.checking {
		g.checking = true
		go g.check()
	}
}

func (g *callGuard) remove(gs *guardedStream) {
	gs.cancel(nil)
	g.mu.Lock()
	delete(g.streams, gs)
	g.mu.Unlock()
}

// check runs while streams require a leader: every interval it asks for
// the leader, and after maxNoLeaderChecks in a row without one it ends
// every such stream.
func (g *callGuard) check() {
	t := time.NewTicker(g.interval)
	defer t.Stop()
	none := 0
	for range t.C {
		if g.leader() == 0 {
			none++
		} else {
			none = 0
		}
		g.mu.Lock()
		if len(g.streams) == 0 {
			g.checking = false
			g.mu.Unlock()
			return
		}
		if none >= maxNoLeaderChecks {
			for gs := range g.streams {
				gs.end()
				delete(g.streams, gs)
			}
			none = 0
		}
		g.mu.Unlock()
	}
}
