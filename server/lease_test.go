package server_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/lease"
	"github.com/cairn-kv/cairn/mvcc"
)

// TestLeasesThroughFollowerAndSnapshot drives leases through a follower
// (keep-alive and TimeToLive forwarded to the leader), lets one expire, and
// checks that a member that catches up through a state copy reloads the
// leases and their attachments from it.
func TestLeasesThroughFollowerAndSnapshot(t *testing.T) {
	c := newCluster(t, 3, "--snapshot-count=20")
	c.start()
	leader := c.waitLeader()
	var others []*member
	for _, m := range c.members {
		if m != leader {
			others = append(others, m)
		}
	}
	f, lagger := others[0], others[1]
	lagger.srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	g, err := f.srv.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 60})
	if err != nil || g.ID <= 0 || g.TTL != 60 {
		t.Fatalf("LeaseGrant = %v, %v", g, err)
	}
	if _, err := f.srv.Put(ctx, &pb.PutRequest{Key: []byte("lk"), Lease: g.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.Put(ctx, &pb.PutRequest{Key: []byte("bad"), Lease: g.ID + 1}); !errors.Is(err, mvcc.ErrLeaseNotFound) {
		t.Errorf("put with an unknown lease: %v", err)
	}
	if ttl, err := f.srv.LeaseRenew(ctx, g.ID); err != nil || ttl != 60 {
		t.Errorf("LeaseRenew via a follower = %d, %v", ttl, err)
	}
	if _, err := f.srv.LeaseRenew(ctx, g.ID+1); !errors.Is(err, lease.ErrLeaseNotFound) {
		t.Errorf("LeaseRenew of an unknown lease via a follower: %v", err)
	}
	ttl, err := f.srv.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: g.ID, Keys: true})
	if err != nil || ttl.TTL < 55 || ttl.TTL > 60 || ttl.GrantedTTL != 60 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "lk" {
		t.Errorf("LeaseTimeToLive via a follower = %v, %v", ttl, err)
	}

	// A short lease expires on the leader's decision, with its key.
	short, err := f.srv.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.srv.Put(ctx, &pb.PutRequest{Key: []byte("sk"), Lease: short.ID}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 15*time.Second, "the short lease's key to expire", func() bool {
		_, ok := get(t, f, "sk", false)
		return !ok
	})

	for i := 0; i < 40; i++ {
		if err := put(ctx, leader, fmt.Sprintf("fill/%02d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	c.restart(lagger)
	waitUntil(t, 30*time.Second, "the lagging member to install a snapshot and catch up", func() bool {
		return lagger.srv.SnapshotsInstalled() > 0 && lagger.srv.AppliedIndex() >= leader.srv.AppliedIndex()
	})
	ls, err := lagger.srv.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ids := []int64{}
	for _, l := range ls.Leases {
		ids = append(ids, l.ID)
	}
	if !slices.Equal(ids, []int64{g.ID}) {
		t.Errorf("leases on the member that installed a state copy = %x, want [%x]", ids, g.ID)
	}
	if _, err := lagger.srv.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: g.ID}); err != nil {
		t.Fatal(err)
	}
	if _, ok := get(t, lagger, "lk", false); ok {
		t.Error("revoking through the member that installed a state copy left the lease's key")
	}
}

// TestConcurrentKeepAlivesThroughFollowerBatch sends many keep-alives at
// once through a follower, for leases that exist and for IDs that do not:
// each gets its own answer, and they reach the leader in fewer requests
// than keep-alives.
func TestConcurrentKeepAlivesThroughFollowerBatch(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	leader := c.waitLeader()
	var f *member
	for _, m := range c.members {
		if m != leader {
			f = m
			break
		}
	}
	reg := prometheus.NewRegistry()
	if err := f.srv.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ttls := map[int64]int64{}
	for _, ttl := range []int64{30, 40, 50} {
		g, err := leader.srv.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		ttls[g.ID] = ttl
		ttls[g.ID+1000] = 0 // never granted
	}
	const rounds = 20
	type answer struct {
		id, ttl int64
		err     error
	}
	answers := make(chan answer, rounds*len(ttls))
	var wg sync.WaitGroup
	for range rounds {
		for id := range ttls {
			wg.Go(func() {
				ttl, err := f.srv.LeaseRenew(ctx, id)
				answers <- answer{id, ttl, err}
			})
		}
	}
	wg.Wait()
	close(answers)
	n := 0
	for a := range answers {
		n++
		switch want := ttls[a.id]; {
		case want == 0 && !errors.Is(a.err, lease.ErrLeaseNotFound):
			t.Errorf("LeaseRenew(%x) of a lease never granted = %d, %v", a.id, a.ttl, a.err)
		case want != 0 && (a.err != nil || a.ttl != want):
			t.Errorf("LeaseRenew(%x) = %d, %v; want %d", a.id, a.ttl, a.err, want)
		}
	}
	forwarded, batches := counter(t, reg, "cairn_lease_keepalives_forwarded_total"), counter(t, reg, "cairn_lease_keepalive_batches_total")
	if forwarded != float64(n) || batches < 1 || batches >= forwarded {
		t.Errorf("%d keep-alives through the follower: %v forwarded in %v requests, want all in fewer requests", n, forwarded, batches)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
