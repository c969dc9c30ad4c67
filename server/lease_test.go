package server_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

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
