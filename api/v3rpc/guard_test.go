package v3rpc

import (
	"context"
	"os"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// requireLeader is the context clientv3.WithRequireLeader makes.
func requireLeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader)
}

// isNoLeader reports whether err is etcd's "no leader" error as clientv3
// recognizes it (rpctypes.Error maps it to rpctypes.ErrNoLeader).
func isNoLeader(err error) bool {
	return err != nil && rpctypes.Error(err) == rpctypes.ErrNoLeader
}

func TestUnaryCallRequiringALeader(t *testing.T) {
	ta := startTestAPI(t)
	kv := pb.NewKVClient(ta.conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kv.Put(requireLeader(ctx), &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("with a leader: %v", err)
	}
	ta.m.leader.Store(0)
	_, err := kv.Range(requireLeader(ctx), &pb.RangeRequest{Key: []byte("k")})
	if !isNoLeader(err) {
		t.Fatalf("without a leader, a call that requires one: %v, want %v", err, rpctypes.ErrGRPCNoLeader)
	}
	if s, _ := status.FromError(err); s.Message() != "etcdserver: no leader" {
		t.Errorf("message %q", s.Message())
	}
	if _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("k")}); err != nil {
		t.Fatalf("without a leader, a call that does not require one: %v", err)
	}
	// The metadata key's other values do not ask for a leader.
	other := metadata.AppendToOutgoingContext(ctx, rpctypes.MetadataRequireLeaderKey, "false")
	if _, err := kv.Range(other, &pb.RangeRequest{Key: []byte("k")}); err != nil {
		t.Fatalf("hasleader=false: %v", err)
	}
	ta.m.leader.Store(9)
	if _, err := kv.Range(requireLeader(ctx), &pb.RangeRequest{Key: []byte("k")}); err != nil {
		t.Fatalf("with a leader again: %v", err)
	}
}

// Streams that require a leader end with "no leader" once the member has
// known none for a few checks; others go on. A stream that requires a
// leader cannot start without one.
func TestStreamsRequiringALeaderEndWithoutOne(t *testing.T) {
	ta := startTestAPIWith(t, Config{MaxRequestBytes: 1 << 20, ElectionTimeout: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wc, lc, kv := pb.NewWatchClient(ta.conn), pb.NewLeaseClient(ta.conn), pb.NewKVClient(ta.conn)

	openWatch := func(ctx context.Context) pb.Watch_WatchClient {
		t.Helper()
		ws, err := wc.Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("k")}}}); err != nil {
			t.Fatal(err)
		}
		if resp, err := ws.Recv(); err != nil || !resp.Created {
			t.Fatalf("watch not created: %v %v", resp, err)
		}
		return ws
	}
	guarded, plain := openWatch(requireLeader(ctx)), openWatch(ctx)
	ka, err := lc.LeaseKeepAlive(requireLeader(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: 0x101}); err != nil {
		t.Fatal(err)
	}
	if _, err := ka.Recv(); err != nil {
		t.Fatal(err)
	}

	start := time.Now() // before the loss: no check after it can come earlier
	ta.m.leader.Store(0)
	if os.Getenv("CAIRNTEST_GRPC_SERVER") == "grpc-go" {
		// grpc-go's streams cannot be ended under a handler waiting in
		// Recv: the keep-alive handler notices at its next message.
		go func() {
			for ctx.Err() == nil && ka.Send(&pb.LeaseKeepAliveRequest{ID: 0x101}) == nil {
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	for {
		_, err := guarded.Recv()
		if err == nil {
			continue // a progress notification or the like
		}
		if !isNoLeader(err) {
			t.Fatalf("the watch that requires a leader ended with %v, want no leader", err)
		}
		break
	}
	// Three checks 20 ms apart must find no leader; the first may come at
	// once.
	if d := time.Since(start); d < 2*20*time.Millisecond {
		t.Errorf("the watch ended %v after the leader was lost, before three checks", d)
	}
	for {
		_, err := ka.Recv()
		if err == nil {
			continue
		}
		if !isNoLeader(err) {
			t.Fatalf("the keep-alive stream ended with %v, want no leader", err)
		}
		break
	}

	// The plain watch still delivers.
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := plain.Recv()
		if err != nil {
			t.Fatalf("the watch that does not require a leader: %v", err)
		}
		if len(resp.Events) > 0 {
			break
		}
	}

	// No leader: a new stream that requires one fails at once.
	ws, err := wc.Watch(requireLeader(ctx))
	if err == nil {
		_, err = ws.Recv()
	}
	if !isNoLeader(err) {
		t.Fatalf("a watch requiring a leader opened without one: %v", err)
	}
}

// A learner serves serializable ranges (and Status, not faked here) and
// refuses every other call, unary or stream, until it is promoted.
func TestLearnerServesOnlyWhatEtcdsLearnersServe(t *testing.T) {
	ta := startTestAPI(t)
	kv, wc, lc := pb.NewKVClient(ta.conn), pb.NewWatchClient(ta.conn), pb.NewLeaseClient(ta.conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ta.m.learner.Store(true)
	refused := func(what string, err error) {
		t.Helper()
		if s, _ := status.FromError(err); err == nil || s.Code() != codes.FailedPrecondition || s.Message() != "etcdserver: rpc not supported for learner" {
			t.Fatalf("%s on a learner: %v, want %v", what, err, rpctypes.ErrGRPCNotSupportedForLearner)
		}
	}
	_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
	refused("put", err)
	_, err = kv.Range(ctx, &pb.RangeRequest{Key: []byte("k")})
	refused("linearizable range", err)
	_, err = lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 10})
	refused("lease grant", err)
	ws, err := wc.Watch(ctx)
	if err == nil {
		_, err = ws.Recv()
	}
	refused("watch", err)
	if _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Serializable: true}); err != nil {
		t.Fatalf("serializable range on a learner: %v", err)
	}
	ta.m.learner.Store(false)
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("put once promoted: %v", err)
	}
}
