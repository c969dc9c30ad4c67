package v3rpc

import (
	"context"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// observed receives the values an Observe stream reports.
func observe(ctx context.Context, t *testing.T, ec v3electionpb.ElectionClient, name string) <-chan *v3electionpb.LeaderResponse {
	t.Helper()
	stream, err := ec.Observe(ctx, &v3electionpb.LeaderRequest{Name: []byte(name)})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *v3electionpb.LeaderResponse, 16)
	go func() {
		defer close(ch)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			ch <- resp
		}
	}()
	return ch
}

func expectObserved(ctx context.Context, t *testing.T, ch <-chan *v3electionpb.LeaderResponse, key, val string) {
	t.Helper()
	select {
	case resp, ok := <-ch:
		if !ok {
			t.Fatalf("observe ended; want %s=%s", key, val)
		}
		if string(resp.Kv.Key) != key || string(resp.Kv.Value) != val || resp.Header.Revision < resp.Kv.ModRevision {
			t.Fatalf("observed %s=%s (mod %d) at %d, want %s=%s", resp.Kv.Key, resp.Kv.Value, resp.Kv.ModRevision, resp.Header.Revision, key, val)
		}
	case <-ctx.Done():
		t.Fatalf("observe: no %s=%s", key, val)
	}
}

func wantCoordErr(t *testing.T, err error, msg string) {
	t.Helper()
	if st := status.Convert(err); st.Code() != codes.Unknown || st.Message() != msg {
		t.Fatalf("error = %v, want Unknown %q", err, msg)
	}
}

func TestElectionLifecycle(t *testing.T) {
	ta := startTestAPI(t)
	ctx := testContext(t)
	ec, kv := v3electionpb.NewElectionClient(ta.conn), pb.NewKVClient(ta.conn)

	_, err := ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("e")})
	wantCoordErr(t, err, "election: no leader")
	obs := observe(ctx, t, ec, "e") // starts before there is a leader

	a, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("e"), Lease: 0xa, Value: []byte("a1")})
	if err != nil {
		t.Fatal(err)
	}
	if l := a.Leader; string(l.Name) != "e" || string(l.Key) != "e/a" || l.Lease != 0xa || l.Rev != a.Header.Revision {
		t.Fatalf("leader key = %+v (header %+v)", l, a.Header)
	}
	expectObserved(ctx, t, obs, "e/a", "a1")

	type campaignResult struct {
		resp *v3electionpb.CampaignResponse
		err  error
	}
	bc := make(chan campaignResult, 1)
	go func() {
		resp, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("e"), Lease: 0xb, Value: []byte("b1")})
		bc <- campaignResult{resp, err}
	}()
	waitKey(ctx, t, kv, "e/b")

	if _, err := ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: a.Leader, Value: []byte("a2")}); err != nil {
		t.Fatal(err)
	}
	expectObserved(ctx, t, obs, "e/a", "a2")
	lead, err := ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("e")})
	if err != nil || string(lead.Kv.Value) != "a2" {
		t.Fatalf("leader = %v, %v", lead, err)
	}
	select {
	case r := <-bc:
		t.Fatalf("second campaign won while the first leads: %+v", r)
	default:
	}

	resigned, err := ec.Resign(ctx, &v3electionpb.ResignRequest{Leader: a.Leader})
	if err != nil {
		t.Fatal(err)
	}
	b := <-bc
	if b.err != nil || string(b.resp.Leader.Key) != "e/b" {
		t.Fatalf("second campaign = %+v", b)
	}
	if b.resp.Header.Revision >= resigned.Header.Revision {
		// etcd answers with the header of the campaign's first write.
		t.Fatalf("campaign header revision %d, want the creation before the resign at %d", b.resp.Header.Revision, resigned.Header.Revision)
	}
	expectObserved(ctx, t, obs, "e/b", "b1")

	// The old leader key no longer leads; resigning again is harmless.
	_, err = ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: a.Leader, Value: []byte("a3")})
	wantCoordErr(t, err, "election: not leader")
	if _, err := ec.Resign(ctx, &v3electionpb.ResignRequest{Leader: a.Leader}); err != nil {
		t.Fatal(err)
	}
	_, err = ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{Value: []byte("x")})
	wantCoordErr(t, err, `"leader" field must be provided`)
	_, err = ec.Resign(ctx, &v3electionpb.ResignRequest{})
	wantCoordErr(t, err, `"leader" field must be provided`)
}

func TestCampaignAgainUpdatesValue(t *testing.T) {
	ta := startTestAPI(t)
	ctx := testContext(t)
	ec := v3electionpb.NewElectionClient(ta.conn)
	first, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("r"), Lease: 5, Value: []byte("v1")})
	if err != nil {
		t.Fatal(err)
	}
	again, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("r"), Lease: 5, Value: []byte("v2")})
	if err != nil {
		t.Fatal(err)
	}
	if again.Leader.Rev != first.Leader.Rev {
		t.Fatalf("re-campaign rev %d, want the original %d", again.Leader.Rev, first.Leader.Rev)
	}
	lead, err := ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("r")})
	if err != nil || string(lead.Kv.Value) != "v2" || lead.Kv.CreateRevision != first.Leader.Rev {
		t.Fatalf("leader = %v, %v", lead, err)
	}
}

func TestCampaignCanceledResigns(t *testing.T) {
	ta := startTestAPI(t)
	ctx := testContext(t)
	ec, kv := v3electionpb.NewElectionClient(ta.conn), pb.NewKVClient(ta.conn)
	if _, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("x"), Lease: 1}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := ec.Campaign(cctx, &v3electionpb.CampaignRequest{Name: []byte("x"), Lease: 2})
		done <- err
	}()
	waitKey(ctx, t, kv, "x/2")
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("canceled campaign = %v", err)
	}
	waitGone(ctx, t, kv, "x/2")
}

// waitGone polls until key does not exist.
func waitGone(ctx context.Context, t *testing.T, kv pb.KVClient, key string) {
	t.Helper()
	for {
		resp, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte(key)})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%q was never deleted", key)
		}
	}
}
