package e2e

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/tests/framework"
)

// TestLeaseAPI exercises every lease RPC and option with the official
// client on one member.
func TestLeaseAPI(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	cli := c.Client()
	ctx := framework.Context(t, 60*time.Second)

	g, err := cli.Grant(ctx, 60)
	if err != nil || g.ID == 0 || g.TTL != 60 {
		t.Fatalf("Grant(60) = %+v, %v", g, err)
	}
	if g.ResponseHeader == nil || g.ResponseHeader.ClusterId == 0 || g.ResponseHeader.MemberId == 0 {
		t.Errorf("grant header = %+v", g.ResponseHeader)
	}
	small, err := cli.Grant(ctx, 0)
	if err != nil || small.TTL < 1 {
		t.Errorf("Grant(0) = %+v, %v; want the minimum TTL (>= 1)", small, err)
	}
	if _, err := cli.Put(ctx, "a", "1", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "b", "2", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "c", "3"); err != nil {
		t.Fatal(err)
	}
	ttl, err := cli.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.GrantedTTL != 60 || ttl.TTL < 50 || ttl.TTL > 60 {
		t.Fatalf("TimeToLive = %+v, %v", ttl, err)
	}
	if got := keyStrings(ttl.Keys); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("attached keys = %q, want [a b]", got)
	}
	ls, err := cli.Leases(ctx)
	if err != nil || !hasLease(ls.Leases, g.ID) || !hasLease(ls.Leases, small.ID) {
		t.Errorf("Leases = %+v, %v; want %x and %x", ls, err, g.ID, small.ID)
	}
	ka, err := cli.KeepAliveOnce(ctx, g.ID)
	if err != nil || ka.TTL != 60 || ka.ID != g.ID {
		t.Errorf("KeepAliveOnce = %+v, %v", ka, err)
	}

	testLeaseErrors(t, ctx, cli, int64(g.ID))

	rv, err := cli.Revoke(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	get, err := cli.Get(ctx, "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	if len(get.Kvs) != 1 || string(get.Kvs[0].Key) != "c" {
		t.Errorf("keys after revoke = %v, want only c", get.Kvs)
	}
	if get.Header.Revision != rv.Header.Revision {
		t.Errorf("revision after revoke %d, revoke answered %d", get.Header.Revision, rv.Header.Revision)
	}
	if ttl, err := cli.TimeToLive(ctx, g.ID); err != nil || ttl.TTL != -1 {
		t.Errorf("TimeToLive of a revoked lease = %+v, %v; want TTL -1", ttl, err)
	}
	if _, err := cli.Revoke(ctx, g.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("second revoke: %v, want ErrLeaseNotFound", err)
	}
	if _, err := cli.KeepAliveOnce(ctx, g.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("KeepAliveOnce of a revoked lease: %v, want ErrLeaseNotFound", err)
	}
}

// testLeaseErrors checks etcd's errors, and that a put with an unknown
// lease changes nothing.
func testLeaseErrors(t *testing.T, ctx context.Context, cli *clientv3.Client, existing int64) {
	t.Helper()
	lc := pb.NewLeaseClient(cli.ActiveConnection())
	if r, err := lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 0x1234, TTL: 30}); err != nil || r.ID != 0x1234 {
		t.Errorf("grant with ID = %+v, %v", r, err)
	}
	_, err := lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: existing, TTL: 30})
	if !errors.Is(rpctypes.Error(err), rpctypes.ErrLeaseExist) {
		t.Errorf("grant of an existing ID: %v, want ErrLeaseExist", err)
	}
	_, err = lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 9_000_000_001})
	if !errors.Is(rpctypes.Error(err), rpctypes.ErrLeaseTTLTooLarge) {
		t.Errorf("grant with a too large TTL: %v, want ErrLeaseTTLTooLarge", err)
	}
	before, err := cli.Get(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "c", "changed", clientv3.WithLease(0x777)); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("put with an unknown lease: %v, want ErrLeaseNotFound", err)
	}
	after, err := cli.Get(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if after.Header.Revision != before.Header.Revision || string(after.Kvs[0].Value) != "3" {
		t.Errorf("a put with an unknown lease changed the store: rev %d -> %d, value %q",
			before.Header.Revision, after.Header.Revision, after.Kvs[0].Value)
	}
}

// TestLeaseExpiresAndKeepAliveStream checks that a lease nobody keeps alive
// expires with its keys, no earlier than its TTL, while a lease kept alive
// by the client's stream outlives its TTL several times.
func TestLeaseExpiresAndKeepAliveStream(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	cli := c.Client()
	ctx := framework.Context(t, 60*time.Second)

	start := time.Now()
	dying, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for key, id := range map[string]clientv3.LeaseID{"dying": dying.ID, "kept": kept.ID} {
		if _, err := cli.Put(ctx, key, "v", clientv3.WithLease(id)); err != nil {
			t.Fatal(err)
		}
	}
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	ch, err := cli.KeepAlive(kctx, kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, ctx, cli, "dying", 15*time.Second)
	if el := time.Since(start); el < 2*time.Second {
		t.Errorf("lease expired after %v, before its TTL of 2 s", el)
	}
	// Keep the other one alive for three TTLs.
	answers := 0
	for deadline := time.After(6 * time.Second); ; {
		select {
		case resp, ok := <-ch:
			if !ok {
				t.Fatal("keep-alive channel closed")
			}
			if resp.TTL != 2 {
				t.Errorf("keep-alive answered TTL %d, want 2", resp.TTL)
			}
			answers++
			continue
		case <-deadline:
		}
		break
	}
	if answers < 3 {
		t.Errorf("%d keep-alive answers in 6 s, want several", answers)
	}
	if r, err := cli.Get(ctx, "kept"); err != nil || len(r.Kvs) != 1 {
		t.Errorf("key of the kept-alive lease: %v, %v", r, err)
	}
	stop()
	waitGone(t, ctx, cli, "kept", 15*time.Second)
}

// TestLeaseAcrossLeaders checks, on three members, that keep-alives sent to
// a follower reach the leader, and that a lease's remaining TTL survives
// the leader's death instead of restarting at the full TTL.
func TestLeaseAcrossLeaders(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 3})
	ctx := framework.Context(t, 90*time.Second)
	leader := waitLeader(t, c, 0)
	var follower *framework.Member
	for _, m := range c.Members {
		if m != leader {
			follower = m
		}
	}
	fcli := c.Client(follower.ClientURL)

	// Keep-alive through a follower keeps a short lease alive past its TTL.
	short, err := fcli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fcli.Put(ctx, "short", "v", clientv3.WithLease(short.ID)); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		ka, err := fcli.KeepAliveOnce(ctx, short.ID)
		if err != nil || ka.TTL != 2 {
			t.Fatalf("KeepAliveOnce via a follower = %+v, %v", ka, err)
		}
		select {
		case <-time.After(500 * time.Millisecond): // the keep-alive period, not a wait for a condition
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	if r, err := fcli.Get(ctx, "short"); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("key of the lease kept alive via a follower is gone: %v, %v", r, err)
	}
	if ttl, err := fcli.TimeToLive(ctx, short.ID); err != nil || ttl.TTL < 0 || ttl.GrantedTTL != 2 {
		t.Errorf("TimeToLive via a follower = %+v, %v", ttl, err)
	}

	// The remaining TTL survives the leader's death.
	const grantTTL, wait, slack = 30, 10 * time.Second, 6
	start := time.Now()
	long, err := fcli.Grant(ctx, grantTTL)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-time.After(wait): // let the lease run down: the point of the test
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	oldTerm := promotedTerm(leader)
	c.Kill(leader)
	waitLeader(t, c, oldTerm)
	elapsed := time.Since(start)
	ttl, err := fcli.TimeToLive(ctx, long.ID)
	if err != nil {
		t.Fatal(err)
	}
	limit := grantTTL - int64(elapsed/time.Second) + slack
	t.Logf("after %v and a leader change, TTL %d (ideal %d, limit %d)", elapsed.Round(time.Millisecond), ttl.TTL, grantTTL-int64(elapsed/time.Second), limit)
	if ttl.TTL <= 0 || ttl.TTL >= limit {
		t.Errorf("TTL on the new leader = %d after %v; want in (0, %d): the countdown must not restart at %d",
			ttl.TTL, elapsed, limit, grantTTL)
	}
}

var promotedRE = regexp.MustCompile(`msg="lessor (promoted|demoted)"(?: term=(\d+))?`)

// promotedTerm returns the term m's lessor was last promoted in, 0 if it was
// demoted since or never promoted. The member logs both events.
func promotedTerm(m *framework.Member) uint64 {
	all := promotedRE.FindAllStringSubmatch(m.Logs(), -1)
	if len(all) == 0 || all[len(all)-1][1] != "promoted" {
		return 0
	}
	term, _ := strconv.ParseUint(all[len(all)-1][2], 10, 64)
	return term
}

// waitLeader waits until a running member leads with a promoted lessor in a
// term after afterTerm.
func waitLeader(t *testing.T, c *framework.Cluster, afterTerm uint64) *framework.Member {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		var best *framework.Member
		var bestTerm uint64
		for _, m := range c.Members {
			if term := promotedTerm(m); m.Running() && term > afterTerm && term > bestTerm {
				best, bestTerm = m, term
			}
		}
		if best != nil {
			return best
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader with a promoted lessor after term %d", afterTerm)
	return nil
}

// waitGone polls until key is deleted.
func waitGone(t *testing.T, ctx context.Context, cli *clientv3.Client, key string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; {
		r, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %q still present after %v", key, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func keyStrings(keys [][]byte) []string {
	var out []string
	for _, k := range keys {
		out = append(out, string(k))
	}
	return out
}

func hasLease(ls []clientv3.LeaseStatus, id clientv3.LeaseID) bool {
	for _, l := range ls {
		if l.ID == id {
			return true
		}
	}
	return false
}
