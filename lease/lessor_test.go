package lease

import (
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/mvcc"
)

func TestGrantErrors(t *testing.T) {
	m := newMember(t)
	m.grant(1, 10)
	m.apply(func(tx *Tx, _ *mvcc.Writer) {
		_, err := tx.Grant(&pb.LeaseGrantRequest{ID: 1, TTL: 10})
		wantErr(t, "grant existing", err, ErrLeaseExists)
		_, err = tx.Grant(&pb.LeaseGrantRequest{ID: 2, TTL: MaxTTL + 1})
		wantErr(t, "grant too large", err, ErrTTLTooLarge)
		_, err = tx.Grant(&pb.LeaseGrantRequest{ID: 0, TTL: 10})
		wantErr(t, "grant ID 0", err, ErrLeaseNotFound)
		resp, err := tx.Grant(&pb.LeaseGrantRequest{ID: 3, TTL: MaxTTL})
		if err != nil || resp.ID != 3 || resp.TTL != MaxTTL {
			t.Errorf("grant max TTL = %v, %v", resp, err)
		}
	})
	if got := m.l.Leases(); len(got) != 2 || got[0].ID != 1 || got[1].ID != 3 {
		t.Errorf("Leases() = %v, want IDs 1 and 3", got)
	}
}

func TestRevokeDeletesAttachedKeysInOneRevision(t *testing.T) {
	m := newMember(t)
	m.grant(7, 10)
	m.put("a", 7)
	m.put("b", 7)
	m.put("c", 0)
	wantKeys(t, "keys of 7", m.keys(7), "a", "b")
	before := m.kv.Rev()
	if err := m.revoke(7); err != nil {
		t.Fatal(err)
	}
	if got := m.kv.Rev(); got != before+1 {
		t.Errorf("revision after revoke = %d, want %d (one revision for both keys)", got, before+1)
	}
	if live := m.live(); len(live) != 1 || live["c"] != 0 {
		t.Errorf("live keys after revoke = %v, want only c", live)
	}
	wantKeys(t, "keys of 7 after revoke", m.keys(7))
	if _, ok := m.l.Lookup(7); ok {
		t.Error("lease 7 still exists after revoke")
	}
	wantErr(t, "revoke again", m.revoke(7), ErrLeaseNotFound)
	// A lease without keys is revoked without a revision.
	m.grant(8, 10)
	before = m.kv.Rev()
	if err := m.revoke(8); err != nil {
		t.Fatal(err)
	}
	if got := m.kv.Rev(); got != before {
		t.Errorf("revoking a lease without keys moved the revision %d -> %d", before, got)
	}
}

func TestAttachmentsFollowEvents(t *testing.T) {
	m := newMember(t)
	m.grant(1, 10)
	m.grant(2, 10)
	m.put("k", 1)
	wantKeys(t, "put with 1", m.keys(1), "k")
	m.put("k", 2)
	wantKeys(t, "moved: keys of 1", m.keys(1))
	wantKeys(t, "moved: keys of 2", m.keys(2), "k")
	m.apply(func(_ *Tx, w *mvcc.Writer) {
		if _, err := w.Put(&pb.PutRequest{Key: []byte("k"), Value: []byte("x"), IgnoreLease: true}); err != nil {
			t.Fatal(err)
		}
	})
	wantKeys(t, "ignore_lease keeps it", m.keys(2), "k")
	m.put("k", 0)
	wantKeys(t, "put without lease", m.keys(2))
	m.put("x1", 1)
	m.put("x2", 1)
	m.put("y", 1)
	m.apply(func(_ *Tx, w *mvcc.Writer) {
		if _, err := w.DeleteRange(&pb.DeleteRangeRequest{Key: []byte("x"), RangeEnd: []byte("y")}); err != nil {
			t.Fatal(err)
		}
	})
	wantKeys(t, "after range delete", m.keys(1), "y")
	m.apply(func(_ *Tx, w *mvcc.Writer) {
		put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("t"), Lease: 2}}}
		del := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("y")}}}
		if _, err := w.Txn(&pb.TxnRequest{Success: []*pb.RequestOp{put, del}}); err != nil {
			t.Fatal(err)
		}
	})
	wantKeys(t, "txn: keys of 1", m.keys(1))
	wantKeys(t, "txn: keys of 2", m.keys(2), "t")
}

func TestPutWithUnknownLeaseFails(t *testing.T) {
	m := newMember(t)
	m.apply(func(tx *Tx, w *mvcc.Writer) {
		_, err := w.Put(&pb.PutRequest{Key: []byte("k"), Lease: 5})
		wantErr(t, "put with unknown lease", err, mvcc.ErrLeaseNotFound)
		// A lease granted earlier in the same batch is visible.
		if _, err := tx.Grant(&pb.LeaseGrantRequest{ID: 5, TTL: 10}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Put(&pb.PutRequest{Key: []byte("k"), Lease: 5}); err != nil {
			t.Errorf("put with lease granted in the batch: %v", err)
		}
		if _, err := tx.Revoke(&pb.LeaseRevokeRequest{ID: 5}); err != nil {
			t.Fatal(err)
		}
		_, err = w.Put(&pb.PutRequest{Key: []byte("j"), Lease: 5})
		wantErr(t, "put with lease revoked in the batch", err, mvcc.ErrLeaseNotFound)
	})
	if live := m.live(); len(live) != 0 {
		t.Errorf("live keys = %v, want none (k was revoked with its lease)", live)
	}
}

func TestDroppedTxChangesNothing(t *testing.T) {
	m := newMember(t)
	bt := m.be.NewBatch()
	w := m.kv.Write(bt)
	tx := m.l.Begin(bt, w)
	if _, err := tx.Grant(&pb.LeaseGrantRequest{ID: 9, TTL: 10}); err != nil {
		t.Fatal(err)
	}
	if !m.l.Exists(9) {
		t.Error("lease not visible inside its batch")
	}
	if _, ok := m.l.Lookup(9); ok {
		t.Error("lease visible to readers before End")
	}
	bt.Close()
	m.grant(10, 10) // the next batch replaces the dropped Tx
	if m.l.Exists(9) {
		t.Error("lease of a dropped batch exists")
	}
	m.restart()
	if _, ok := m.l.Lookup(9); ok {
		t.Error("lease of a dropped batch was persisted")
	}
}

func TestRestartReloadsLeasesAndAttachments(t *testing.T) {
	m := newMember(t)
	m.grant(1, 10)
	m.grant(-3, 20)
	m.put("a", 1)
	m.put("b", -3)
	m.checkpoint([]*pb.LeaseCheckpoint{{ID: -3, Remaining_TTL: 12}})
	m.restart()
	got := m.l.Leases()
	want := []Lease{{ID: -3, TTL: 20, Remaining: 12}, {ID: 1, TTL: 10}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Leases() after restart = %v, want %v", got, want)
	}
	wantKeys(t, "keys of 1", m.keys(1), "a")
	wantKeys(t, "keys of -3", m.keys(-3), "b")
	if err := m.revoke(-3); err != nil {
		t.Fatal(err)
	}
	if live := m.live(); len(live) != 1 || live["a"] != 1 {
		t.Errorf("live after revoke = %v, want a only", live)
	}
}

func TestExpiryOnlyOnPrimary(t *testing.T) {
	m := newMember(t)
	m.grant(1, 10)
	m.clock.Advance(time.Hour)
	if ids := m.l.Expired(10); len(ids) != 0 {
		t.Fatalf("a follower found expired leases: %v", ids)
	}
	m.l.Promote(time.Second)
	m.grant(2, 5) // granted while primary: countdown from now
	m.clock.Advance(5*time.Second - time.Millisecond)
	if ids := m.l.Expired(10); len(ids) != 0 {
		t.Fatalf("expired too early: %v", ids)
	}
	m.clock.Advance(time.Millisecond)
	if ids := m.l.Expired(10); len(ids) != 1 || ids[0] != 2 {
		t.Fatalf("Expired = %v, want [2]", ids)
	}
	if ids := m.l.Expired(10); len(ids) != 0 {
		t.Fatalf("Expired proposed lease 2 twice: %v", ids)
	}
	if _, err := m.l.Renew(2); err != ErrLeaseNotFound {
		t.Errorf("renew of an expired lease: %v, want ErrLeaseNotFound", err)
	}
	m.clock.Advance(6 * time.Second) // lease 1: 10 s + 1 s extension; lease 2's retry is due
	ids := m.l.Expired(1)
	if len(ids) != 1 || ids[0] != 2 {
		t.Fatalf("Expired(1) = %v, want [2]: the earliest deadline first, limit kept", ids)
	}
	if ids := m.l.Expired(10); len(ids) != 1 || ids[0] != 1 {
		t.Fatalf("Expired = %v, want [1]", ids)
	}
	m.clock.Advance(DefaultRevokeRetry)
	if ids := m.l.Expired(10); len(ids) != 2 {
		t.Fatalf("after the retry interval Expired = %v, want both again", ids)
	}
	if err := m.revoke(2); err != nil {
		t.Fatal(err)
	}
	m.clock.Advance(DefaultRevokeRetry)
	if ids := m.l.Expired(10); len(ids) != 1 || ids[0] != 1 {
		t.Fatalf("after revoking 2, Expired = %v, want [1]", ids)
	}
}

func TestRenewAndTimeToLive(t *testing.T) {
	m := newMember(t)
	m.grant(1, 10)
	if _, err := m.l.Renew(1); err != ErrNotPrimary {
		t.Errorf("renew on a follower: %v, want ErrNotPrimary", err)
	}
	if _, _, err := m.l.TimeToLive(1); err != ErrNotPrimary {
		t.Errorf("TimeToLive on a follower: %v, want ErrNotPrimary", err)
	}
	m.l.Promote(0)
	m.clock.Advance(7 * time.Second)
	if rem, granted, err := m.l.TimeToLive(1); err != nil || rem != 3 || granted != 10 {
		t.Errorf("TimeToLive = %d, %d, %v; want 3, 10", rem, granted, err)
	}
	if ttl, err := m.l.Renew(1); err != nil || ttl != 10 {
		t.Fatalf("Renew = %d, %v; want 10", ttl, err)
	}
	m.clock.Advance(500 * time.Millisecond)
	if rem, _, _ := m.l.TimeToLive(1); rem != 9 {
		t.Errorf("TimeToLive after renew = %d, want 9", rem)
	}
	if _, err := m.l.Renew(99); err != ErrLeaseNotFound {
		t.Errorf("renew unknown: %v", err)
	}
	m.clock.Advance(10 * time.Second)
	if ids := m.l.Expired(10); len(ids) != 1 {
		t.Errorf("renewed lease not expired 10 s after renewal: %v", ids)
	}
	m.l.Demote()
	if _, err := m.l.Renew(1); err != ErrNotPrimary {
		t.Errorf("renew after demotion: %v", err)
	}
	if ids := m.l.Expired(10); ids != nil {
		t.Errorf("Expired after demotion = %v", ids)
	}
}

func TestCheckpointSurvivesLeaderChange(t *testing.T) {
	m := newMember(t)
	m.l.Promote(0)
	m.grant(1, 30)
	m.grant(2, 300)
	m.clock.Advance(10 * time.Second)
	// Lease 1 is due (10 s > max(1 s, 3 s)); lease 2 is not (10 s < 30 s).
	cps := m.l.CheckpointsDue(10)
	if len(cps) != 1 || cps[0].ID != 1 || cps[0].Remaining_TTL != 20 {
		t.Fatalf("CheckpointsDue = %v, want lease 1 with 20 s", cps)
	}
	if again := m.l.CheckpointsDue(10); len(again) != 0 {
		t.Fatalf("checkpoint taken twice: %v", again)
	}
	m.checkpoint(cps)
	// The leader dies; another member (here: the restarted one) leads.
	m.restart()
	if le, _ := m.l.Lookup(1); le.Remaining != 20 {
		t.Fatalf("persisted remaining TTL = %d, want 20", le.Remaining)
	}
	m.clock.Advance(3 * time.Second) // the election
	m.l.Promote(time.Second)
	if rem, _, _ := m.l.TimeToLive(1); rem != 21 {
		t.Errorf("TimeToLive on the new leader = %d, want 21 (20 persisted + 1 extension), not the full 30", rem)
	}
	if rem, _, _ := m.l.TimeToLive(2); rem != 301 {
		t.Errorf("TimeToLive of a never checkpointed lease = %d, want 301", rem)
	}
	// A renewal is recorded at the next checkpoint, as the full TTL.
	if _, err := m.l.Renew(1); err != nil {
		t.Fatal(err)
	}
	cps = m.l.CheckpointsDue(10)
	if len(cps) != 1 || cps[0].ID != 1 || cps[0].Remaining_TTL != 30 {
		t.Fatalf("CheckpointsDue after renew = %v, want lease 1 with 30 s", cps)
	}
	m.l.CheckpointFailed(cps)
	if again := m.l.CheckpointsDue(10); len(again) != 1 {
		t.Fatalf("a failed checkpoint is not due again: %v", again)
	}
	m.checkpoint(cps)
	if le, _ := m.l.Lookup(1); le.Remaining != 0 {
		t.Errorf("remaining after a full-TTL checkpoint = %d, want 0 (full TTL)", le.Remaining)
	}
}

func TestCheckpointLimitPrefersRenewed(t *testing.T) {
	m := newMember(t)
	m.l.Promote(0)
	for id := int64(1); id <= 5; id++ {
		m.grant(id, 10)
	}
	m.clock.Advance(2 * time.Second)
	if _, err := m.l.Renew(4); err != nil {
		t.Fatal(err)
	}
	cps := m.l.CheckpointsDue(1)
	if len(cps) != 1 || cps[0].ID != 4 {
		t.Fatalf("CheckpointsDue(1) = %v, want the renewed lease 4", cps)
	}
	if rest := m.l.CheckpointsDue(100); len(rest) != 4 {
		t.Fatalf("remaining due = %d, want 4", len(rest))
	}
}

func TestLoadKeepsPrimaryDeadlines(t *testing.T) {
	m := newMember(t)
	m.l.Promote(0)
	m.grant(1, 10)
	m.clock.Advance(4 * time.Second)
	if err := m.l.Load(m.be); err != nil {
		t.Fatal(err)
	}
	if rem, _, err := m.l.TimeToLive(1); err != nil || rem != 6 {
		t.Errorf("TimeToLive after reload = %d, %v; want 6 (deadline kept)", rem, err)
	}
}

func TestMinTTL(t *testing.T) {
	for _, tc := range []struct {
		ticks int
		hb    time.Duration
		want  int64
	}{
		{10, 100 * time.Millisecond, 2}, // 1.5 s -> 2
		{10, 50 * time.Millisecond, 1},  // 0.75 s -> 1
		{20, 100 * time.Millisecond, 3},
		{5, 10 * time.Millisecond, 1},
	} {
		if got := MinTTL(tc.ticks, tc.hb); got != tc.want {
			t.Errorf("MinTTL(%d, %v) = %d, want %d", tc.ticks, tc.hb, got, tc.want)
		}
	}
}

func TestDecodeLeaseRejectsCorruption(t *testing.T) {
	k := leaseKey(5)
	good := encodeLease(Lease{ID: 5, TTL: 10, Remaining: 3})
	if le, err := decodeLease(k, good); err != nil || le != (Lease{ID: 5, TTL: 10, Remaining: 3}) {
		t.Fatalf("decode = %v, %v", le, err)
	}
	for name, v := range map[string][]byte{
		"empty": nil, "version": {2, 20, 6}, "truncated": good[:2], "trailing": append(good, 0), "zero TTL": {1, 0, 0},
	} {
		if _, err := decodeLease(k, v); err == nil {
			t.Errorf("%s: decoded %x", name, v)
		}
	}
	if _, err := decodeLease(k[:5], good); err == nil {
		t.Error("short key decoded")
	}
}
