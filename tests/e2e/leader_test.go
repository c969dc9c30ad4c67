package e2e

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/tests/framework"
)

// clientv3.WithRequireLeader on a member cut off from the others: its
// calls fail with "no leader", a watch that asked ends with that error
// (clientv3 closes the channel instead of retrying), and a watch that did
// not ask goes on; once the member rejoins, calls that require a leader
// work again.
func TestRequireLeaderOnAnIsolatedMember(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 3, PeerProxy: true})
	ctx := framework.Context(t, 90*time.Second)
	leader := c.Leader()
	m := c.Follower(leader)
	cli := c.Client(m.ClientURL)
	if _, err := cli.Put(clientv3.WithRequireLeader(ctx), "k", "0"); err != nil {
		t.Fatalf("put requiring a leader, with one: %v", err)
	}
	guarded := cli.Watch(clientv3.WithRequireLeader(ctx), "k")
	plain := cli.Watch(ctx, "k")
	if _, err := cli.Put(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	recvEvents(t, ctx, guarded, 1, "guarded watch")
	recvEvents(t, ctx, plain, 1, "plain watch")

	// Isolate m: the others drop its connections and it drops theirs.
	resp, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mid string
	for _, mm := range resp.Members {
		if mm.Name == m.Name {
			mid = strconv.FormatUint(mm.ID, 16)
		}
	}
	for _, o := range c.Members {
		if o == m {
			o.Proxy.Set(framework.ProxyRules{DropAll: true})
		} else {
			o.Proxy.Set(framework.ProxyRules{DropFrom: map[string]bool{mid: true}})
		}
	}
	isolated := time.Now()

	// The guarded watch ends with "no leader": the member loses its leader
	// after an election timeout (500 ms here), and streams end after three
	// checks without one.
	var werr error
	for werr == nil {
		select {
		case wr, ok := <-guarded:
			if !ok {
				t.Fatal("the guarded watch closed without an error")
			}
			werr = wr.Err()
		case <-time.After(20 * time.Second):
			t.Fatal("the guarded watch did not end within 20 s of the isolation")
		}
	}
	if !errors.Is(werr, rpctypes.ErrNoLeader) {
		t.Fatalf("the guarded watch ended with %v, want %v", werr, rpctypes.ErrNoLeader)
	}
	t.Logf("the guarded watch ended %v after the isolation", time.Since(isolated).Round(time.Millisecond))
	if _, ok := <-guarded; ok {
		t.Fatal("the guarded watch's channel stays open after its error")
	}
	if _, err := cli.Get(clientv3.WithRequireLeader(ctx), "k", clientv3.WithSerializable()); !errors.Is(err, rpctypes.ErrNoLeader) {
		t.Fatalf("a read requiring a leader on the isolated member: %v, want %v", err, rpctypes.ErrNoLeader)
	}
	if r, err := cli.Get(ctx, "k", clientv3.WithSerializable()); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("a serializable read not requiring a leader: %v %v", r, err)
	}

	for _, o := range c.Members {
		o.Proxy.Heal()
	}
	waitFor(t, 20*time.Second, "a put requiring a leader after healing", func() bool {
		_, err := cli.Put(clientv3.WithRequireLeader(ctx), "k", "2")
		return err == nil
	})
	// The plain watch lived through it and sees the new value.
	for {
		evs := recvEvents(t, ctx, plain, 1, "plain watch after healing")
		if string(evs[0].Kv.Value) == "2" {
			break
		}
	}
}
