package e2e

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"

	"github.com/cairn-kv/cairn/tests/framework"
)

// TestClusterMembershipFlow drives the Cluster service with the official
// client: list, add a learner, start it, promote it, update it, remove it,
// and the errors etcd gives for the usual mistakes.
func TestClusterMembershipFlow(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 3})
	cli := c.Client()
	ctx := framework.Context(t, 90*time.Second)

	list, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Members) != 3 || list.Header.ClusterId == 0 || list.Header.MemberId == 0 || list.Header.RaftTerm == 0 {
		t.Fatalf("member list = %+v", list)
	}
	for _, m := range c.Members {
		pm := memberByPeerURL(list.Members, m.PeerURL)
		if pm == nil || pm.Name != m.Name || !slices.Equal(pm.ClientURLs, []string{m.ClientURL}) || pm.IsLearner || pm.ID == 0 {
			t.Fatalf("member %s listed as %+v", m.Name, pm)
		}
	}
	if _, err := cli.MemberList(ctx, clientv3.WithSerializable()); err != nil {
		t.Fatalf("serializable member list: %v", err)
	}

	m4 := c.NewJoiningMember("m4", "127.0.0.1")
	add, err := cli.MemberAddAsLearner(ctx, []string{m4.PeerURL})
	if err != nil {
		t.Fatal(err)
	}
	id := add.Member.ID
	if id == 0 || !add.Member.IsLearner || !slices.Equal(add.Member.PeerURLs, []string{m4.PeerURL}) || len(add.Members) != 4 {
		t.Fatalf("member add = %+v", add)
	}
	if _, err := cli.MemberAdd(ctx, []string{m4.PeerURL}); !errors.Is(err, rpctypes.ErrPeerURLExist) {
		t.Fatalf("adding a used peer URL: %v, want %v", err, rpctypes.ErrPeerURLExist)
	}
	// The official client checks URLs itself; the raw RPC reaches the server's check.
	raw := pb.NewClusterClient(cli.ActiveConnection())
	for _, bad := range [][]string{nil, {"ftp://127.0.0.1:1"}, {"http://127.0.0.1"}, {"http://127.0.0.1:1/path"}} {
		_, err := raw.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: bad})
		if rpctypes.Error(err) != rpctypes.ErrMemberBadURLs {
			t.Fatalf("adding bad URLs %q: %v, want %v", bad, err, rpctypes.ErrMemberBadURLs)
		}
	}

	c.StartMember(m4, "existing")
	maintWaitFor(t, 30*time.Second, "m4 published its name", func() bool {
		l, err := cli.MemberList(ctx)
		return err == nil && memberByPeerURL(l.Members, m4.PeerURL) != nil && memberByPeerURL(l.Members, m4.PeerURL).Name == "m4"
	})
	checkLearnerRefuses(t, ctx, c.Client(m4.ClientURL))
	if _, err := cli.MemberPromote(ctx, list.Members[0].ID); !errors.Is(err, rpctypes.ErrMemberNotLearner) {
		t.Fatalf("promoting a voter: %v, want %v", err, rpctypes.ErrMemberNotLearner)
	}
	var promoted *clientv3.MemberPromoteResponse
	maintWaitFor(t, 30*time.Second, "the learner promoted", func() bool {
		promoted, err = cli.MemberPromote(ctx, id)
		if err != nil && !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) {
			t.Fatalf("promote: %v", err)
		}
		return err == nil
	})
	if pm := memberByPeerURL(promoted.Members, m4.PeerURL); pm == nil || pm.IsLearner || len(promoted.Members) != 4 {
		t.Fatalf("after promotion: %+v", promoted.Members)
	}
	// Promoted, m4 serves everything (once it has applied the promotion).
	m4cli := c.Client(m4.ClientURL)
	maintWaitFor(t, 30*time.Second, "m4 serving a put after its promotion", func() bool {
		_, err := m4cli.Put(ctx, "learner-key", "promoted")
		return err == nil
	})

	urls := []string{m4.PeerURL, "http://127.0.0.1:1"}
	upd, err := cli.MemberUpdate(ctx, id, urls)
	if err != nil {
		t.Fatal(err)
	}
	if pm := memberByPeerURL(upd.Members, m4.PeerURL); pm == nil || !slices.Equal(pm.PeerURLs, urls) {
		t.Fatalf("after update: %+v", upd.Members)
	}
	if _, err := cli.MemberUpdate(ctx, 12345, urls); !errors.Is(err, rpctypes.ErrMemberNotFound) {
		t.Fatalf("updating an unknown member: %v, want %v", err, rpctypes.ErrMemberNotFound)
	}

	rm, err := cli.MemberRemove(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Members) != 3 || memberByPeerURL(rm.Members, m4.PeerURL) != nil {
		t.Fatalf("after remove: %+v", rm.Members)
	}
	c.WaitExit(m4, 30*time.Second)
	if _, err := cli.MemberRemove(ctx, id); !errors.Is(err, rpctypes.ErrMemberNotFound) {
		t.Fatalf("removing a removed member: %v, want %v", err, rpctypes.ErrMemberNotFound)
	}
	final, err := cli.MemberList(ctx)
	if err != nil || len(final.Members) != 3 {
		t.Fatalf("final member list = %+v, %v", final, err)
	}
}

func memberByPeerURL(ms []*pb.Member, u string) *pb.Member {
	for _, m := range ms {
		if slices.Contains(m.PeerURLs, u) {
			return m
		}
	}
	return nil
}

// waitFor polls cond until it holds, failing the test after d.
func maintWaitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkLearnerRefuses checks, through cli on a learner, that it serves only
// what etcd's learners serve: Status and serializable reads, not writes,
// linearizable reads, member lists or watches.
func checkLearnerRefuses(t *testing.T, ctx context.Context, cli *clientv3.Client) {
	t.Helper()
	const refusal = "etcdserver: rpc not supported for learner"
	isRefusal := func(err error) bool {
		var ee rpctypes.EtcdError
		return errors.As(err, &ee) && ee.Error() == refusal && ee.Code() == codes.FailedPrecondition
	}
	refused := func(what string, err error) {
		t.Helper()
		if !isRefusal(err) {
			t.Fatalf("%s on a learner: %v, want %q (FailedPrecondition)", what, err, refusal)
		}
	}
	// A joining member may serve calls until it has applied its own
	// addition (a state copy taken before it lists no such member), as
	// etcd's does: wait for that with a call that changes nothing.
	maintWaitFor(t, 30*time.Second, "the learner applied its own addition", func() bool {
		_, err := cli.MemberList(ctx)
		return isRefusal(err)
	})
	_, err := cli.Put(ctx, "learner-key", "v")
	refused("put", err)
	_, err = cli.Get(ctx, "learner-key")
	refused("linearizable get", err)
	_, err = cli.Grant(ctx, 10)
	refused("lease grant", err)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wr := <-cli.Watch(wctx, "learner-key")
	refused("watch", wr.Err())
	if _, err := cli.Get(ctx, "learner-key", clientv3.WithSerializable()); err != nil {
		t.Fatalf("serializable get on a learner: %v", err)
	}
	st, err := cli.Status(ctx, cli.Endpoints()[0])
	if err != nil || !st.IsLearner {
		t.Fatalf("status on a learner: %+v, %v", st, err)
	}
}
