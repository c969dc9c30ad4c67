package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/tests/framework"
)

// lockGrant grants a lease of ttl seconds.
func lockGrant(ctx context.Context, t *testing.T, cli *clientv3.Client, ttl int64) clientv3.LeaseID {
	t.Helper()
	resp, err := cli.Grant(ctx, ttl)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	return resp.ID
}

func TestLockServiceWithOfficialClient(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	ctx := framework.Context(t, 30*time.Second)
	cli := c.Client()
	lc := v3lockpb.NewLockClient(cli.ActiveConnection())
	_, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{})
	if st := status.Convert(err); st.Code() != codes.Unknown || !errors.Is(rpctypes.Error(err), rpctypes.ErrEmptyKey) {
		t.Fatalf("unlock without a key = %v, want code Unknown and %v", err, rpctypes.ErrEmptyKey)
	}
	l1, l2 := lockGrant(ctx, t, cli, 60), lockGrant(ctx, t, cli, 60)

	held, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("e2e-lock"), Lease: int64(l1)})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("e2e-lock/%x", int64(l1)); string(held.Key) != want {
		t.Fatalf("key = %q, want %q", held.Key, want)
	}
	done := make(chan *v3lockpb.LockResponse, 1)
	go func() {
		resp, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("e2e-lock"), Lease: int64(l2)})
		if err != nil {
			t.Errorf("second lock: %v", err)
		}
		done <- resp
	}()
	waitForKey(ctx, t, cli, fmt.Sprintf("e2e-lock/%x", int64(l2)))
	// Revoking the holder's lease releases the lock.
	rev, err := cli.Revoke(ctx, l1)
	if err != nil {
		t.Fatal(err)
	}
	second := <-done
	if second == nil || second.Header.Revision < rev.Header.Revision {
		t.Fatalf("second lock = %v, want it after the revoke at %d", second, rev.Header.Revision)
	}
	if _, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: second.Key}); err != nil {
		t.Fatal(err)
	}
	_, err = lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("e2e-lock"), Lease: 0x7777777})
	if !errors.Is(rpctypes.Error(err), rpctypes.ErrLeaseNotFound) {
		t.Fatalf("lock with a missing lease = %v, want %v", err, rpctypes.ErrLeaseNotFound)
	}
}

func waitForKey(ctx context.Context, t *testing.T, cli *clientv3.Client, key string) {
	t.Helper()
	for {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		if len(resp.Kvs) == 1 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never appeared", key)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestElectionServiceWithOfficialClient(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	ctx := framework.Context(t, 30*time.Second)
	cli := c.Client()
	ec := v3electionpb.NewElectionClient(cli.ActiveConnection())
	_, err := ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("e2e-el")})
	if st := status.Convert(err); st.Code() != codes.Unknown || st.Message() != concurrency.ErrElectionNoLeader.Error() {
		t.Fatalf("leader of an empty election = %v", err)
	}
	_, err = ec.Resign(ctx, &v3electionpb.ResignRequest{})
	if st := status.Convert(err); st.Code() != codes.Unknown || st.Message() != `"leader" field must be provided` {
		t.Fatalf("resign without a leader = %v", err)
	}
	lease := lockGrant(ctx, t, cli, 60)
	camp, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("e2e-el"), Lease: int64(lease), Value: []byte("v1")})
	if err != nil {
		t.Fatal(err)
	}
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	obs, err := ec.Observe(octx, &v3electionpb.LeaderRequest{Name: []byte("e2e-el")})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := obs.Recv(); err != nil || string(r.Kv.Value) != "v1" {
		t.Fatalf("observe = %v, %v", r, err)
	}
	if _, err := ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: camp.Leader, Value: []byte("v2")}); err != nil {
		t.Fatal(err)
	}
	if r, err := obs.Recv(); err != nil || string(r.Kv.Value) != "v2" {
		t.Fatalf("observe after proclaim = %v, %v", r, err)
	}
	lead, err := ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("e2e-el")})
	if err != nil || string(lead.Kv.Value) != "v2" || string(lead.Kv.Key) != string(camp.Leader.Key) {
		t.Fatalf("leader = %v, %v", lead, err)
	}
	if _, err := ec.Resign(ctx, &v3electionpb.ResignRequest{Leader: camp.Leader}); err != nil {
		t.Fatal(err)
	}
	_, err = ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: camp.Leader, Value: []byte("v3")})
	if err == nil || status.Convert(err).Message() != concurrency.ErrElectionNotLeader.Error() {
		t.Fatalf("proclaim after resign = %v", err)
	}
}

// TestConcurrencyRecipes runs the client-side Mutex, Election and STM of
// client/v3/concurrency against the member: they use KV, leases (sessions
// with keep-alives) and watches.
func TestConcurrencyRecipes(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	ctx := framework.Context(t, 30*time.Second)
	cli := c.Client()
	s1, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()

	m1, m2 := concurrency.NewMutex(s1, "e2e-mu"), concurrency.NewMutex(s2, "e2e-mu")
	if err := m1.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m2.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("TryLock of a held mutex = %v", err)
	}
	locked := make(chan error, 1)
	go func() { locked <- m2.Lock(ctx) }()
	if err := m1.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-locked; err != nil {
		t.Fatalf("second Lock: %v", err)
	}
	if err := m2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	e1, e2 := concurrency.NewElection(s1, "e2e-elect"), concurrency.NewElection(s2, "e2e-elect")
	if err := e1.Campaign(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(ctx, "two") }()
	if err := e1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-won; err != nil {
		t.Fatal(err)
	}
	if l, err := e2.Leader(ctx); err != nil || string(l.Kvs[0].Value) != "two" {
		t.Fatalf("leader = %v, %v", l, err)
	}

	// STM: concurrent increments of one counter lose no update.
	const workers, rounds = 4, 5
	errc := make(chan error, workers)
	for range workers {
		go func() {
			for range rounds {
				_, err := concurrency.NewSTM(cli, func(stm concurrency.STM) error {
					n := 0
					fmt.Sscan(stm.Get("e2e-counter"), &n)
					stm.Put("e2e-counter", fmt.Sprint(n+1))
					return nil
				}, concurrency.WithAbortContext(ctx))
				if err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range workers {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if resp, err := cli.Get(ctx, "e2e-counter"); err != nil || string(resp.Kvs[0].Value) != fmt.Sprint(workers*rounds) {
		t.Fatalf("counter = %v, %v; want %d", resp, err, workers*rounds)
	}
}
