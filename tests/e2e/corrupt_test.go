package e2e

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/backend"
	"github.com/cairn-kv/cairn/tests/framework"
)

// TestCorruptCheckRaisesAlarmForDivergedMember changes one value in a
// stopped member's store behind its back (same revision, same applied
// index: every checksum holds) and checks that the leader's periodic hash
// comparison raises the CORRUPT alarm for that member only, after which
// writes are refused like etcd's.
func TestCorruptCheckRaisesAlarmForDivergedMember(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 3, Extra: []string{"--corrupt-check-time=300ms"}})
	leader := c.Leader()
	victim := c.Follower(leader)
	cli := c.Client(leader.ClientURL)
	ctx := framework.Context(t, 60*time.Second)
	putKeys(t, cli, 20)
	resp, err := cli.Put(ctx, "corrupt/target", "original-value")
	if err != nil {
		t.Fatal(err)
	}
	checkHashesAgree(t, ctx, cli, c, resp.Header.Revision)
	victimID := memberID(t, cli, victim.Name)

	c.Terminate(victim)
	tamper(t, filepath.Join(victim.DataDir, "member", "db"), []byte("corrupt/target"), []byte("original-value"), []byte("tampered-value"))
	c.StartMember(victim, "new")

	var alarms []*pb.AlarmMember
	waitFor(t, 30*time.Second, "a CORRUPT alarm", func() bool {
		ar, err := cli.AlarmList(ctx)
		if err != nil {
			return false
		}
		alarms = ar.Alarms
		return len(alarms) > 0
	})
	if len(alarms) != 1 || alarms[0].Alarm != pb.AlarmType_CORRUPT || alarms[0].MemberID != victimID {
		t.Fatalf("alarms = %v, want CORRUPT for the tampered member %x only", alarms, victimID)
	}
	if !containsLine(leader.Logs(), "member state diverged") {
		t.Fatalf("the leader did not log the divergence:\n%s", leader.Logs())
	}
	if _, err := cli.Put(ctx, "after", "alarm"); !errors.Is(err, rpctypes.ErrCorrupt) {
		t.Fatalf("put under a CORRUPT alarm: %v, want %v", err, rpctypes.ErrCorrupt)
	}
	if _, err := cli.Get(ctx, "corrupt/target"); err != nil {
		t.Fatalf("read under a CORRUPT alarm: %v", err)
	}
}

func memberID(t *testing.T, cli *clientv3.Client, name string) uint64 {
	t.Helper()
	ml, err := cli.MemberList(framework.Context(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ml.Members {
		if m.Name == name {
			return m.ID
		}
	}
	t.Fatalf("no member %s in %v", name, ml.Members)
	return 0
}

// tamper replaces, in a stopped member's store, the value of every stored
// version of key that ends with from by to (same length), leaving the
// revision, the applied index and every checksum consistent.
func tamper(t *testing.T, dir string, key, from, to []byte) {
	t.Helper()
	be, err := backend.Open(dir, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := be.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	it, err := be.NewIter([]byte("k"), []byte("l"))
	if err != nil {
		t.Fatal(err)
	}
	bt := be.NewBatch()
	defer bt.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		if !bytes.Contains(it.Key(), key) || !bytes.HasSuffix(it.Value(), from) {
			continue
		}
		v := append(bytes.TrimSuffix(bytes.Clone(it.Value()), from), to...)
		if err := bt.Set(bytes.Clone(it.Key()), v); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("tampered with %d versions of %s, want 1", n, key)
	}
	if err := bt.CommitNoIndex(); err != nil {
		t.Fatal(err)
	}
}
