package lease

import (
	"bytes"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/backend"
)

// KV is the revisioned store's writer for the batch, as a Tx uses it.
type KV interface {
	// Txn applies a transaction as one revision.
	Txn(*pb.TxnRequest) (*pb.TxnResponse, error)
	// Pending returns the events written so far in the batch.
	Pending() []*mvccpb.Event
	// Rev is the revision including the batch's writes.
	Rev() int64
}

// Tx applies lease requests to one backend batch. See the package doc.
type Tx struct {
	l    *Lessor
	bt   *backend.Batch
	kv   KV
	seen int // events of kv already indexed
	// view holds the leases this batch granted, revoked (nil) or
	// checkpointed, on top of the committed table.
	view map[int64]*staged
}

// staged is a lease as changed by the open batch.
type staged struct {
	Lease
	fresh bool // granted in this batch: replaces any committed lease
}

// Begin opens a Tx over bt and the store's writer kv, replacing any Tx that
// was dropped without End.
func (l *Lessor) Begin(bt *backend.Batch, kv KV) *Tx {
	tx := &Tx{l: l, bt: bt, kv: kv, view: map[int64]*staged{}}
	l.tx = tx
	return tx
}

// lookup returns the lease as the batch sees it.
func (tx *Tx) lookup(id int64) (Lease, bool) {
	if st, ok := tx.view[id]; ok {
		if st == nil {
			return Lease{}, false
		}
		return st.Lease, true
	}
	return tx.l.Lookup(id)
}

// Grant applies a LeaseGrantRequest whose ID the proposer chose.
func (tx *Tx) Grant(r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.ID == 0 {
		return nil, ErrLeaseNotFound
	}
	if r.TTL > MaxTTL {
		return nil, fmt.Errorf("%w: %d > %d", ErrTTLTooLarge, r.TTL, MaxTTL)
	}
	if _, ok := tx.lookup(r.ID); ok {
		return nil, fmt.Errorf("%w: %x", ErrLeaseExists, r.ID)
	}
	le := Lease{ID: r.ID, TTL: max(r.TTL, 1)}
	if err := tx.bt.Set(leaseKey(le.ID), encodeLease(le)); err != nil {
		return nil, err
	}
	tx.view[le.ID] = &staged{Lease: le, fresh: true}
	return &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{Revision: tx.kv.Rev()}, ID: le.ID, TTL: le.TTL}, nil
}

// Revoke applies a LeaseRevokeRequest: it deletes every attached key in one
// revision (none if no key is attached), then the lease.
func (tx *Tx) Revoke(r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	if _, ok := tx.lookup(r.ID); !ok {
		return nil, fmt.Errorf("%w: %x", ErrLeaseNotFound, r.ID)
	}
	if err := tx.Flush(); err != nil {
		return nil, err
	}
	keys, err := tx.attached(r.ID)
	if err != nil {
		return nil, err
	}
	if len(keys) > 0 {
		ops := make([]*pb.RequestOp, len(keys))
		for i, k := range keys {
			ops[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: k}}}
		}
		if _, err := tx.kv.Txn(&pb.TxnRequest{Success: ops}); err != nil {
			return nil, fmt.Errorf("lease: delete the keys of lease %x: %w", r.ID, err)
		}
		if err := tx.Flush(); err != nil {
			return nil, err
		}
	}
	if err := tx.bt.Delete(leaseKey(r.ID)); err != nil {
		return nil, err
	}
	tx.view[r.ID] = nil
	return &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: tx.kv.Rev()}}, nil
}

// attached lists the keys attached to a lease, as the batch sees them.
func (tx *Tx) attached(id int64) ([][]byte, error) {
	pfx := attachPrefix(id)
	it, err := tx.bt.NewIter(pfx, prefixEnd(pfx))
	if err != nil {
		return nil, fmt.Errorf("lease: iterate batch: %w", err)
	}
	defer it.Close()
	var keys [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		keys = append(keys, bytes.Clone(it.Key()[len(pfx):]))
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("lease: iterate batch: %w", err)
	}
	return keys, nil
}

// Checkpoint applies a LeaseCheckpointRequest: it records the remaining TTL
// of each listed lease that still exists (0 means the full TTL).
func (tx *Tx) Checkpoint(r *pb.LeaseCheckpointRequest) (*pb.LeaseCheckpointResponse, error) {
	for _, cp := range r.Checkpoints {
		le, ok := tx.lookup(cp.ID)
		if !ok || cp.Remaining_TTL < 0 {
			continue
		}
		le.Remaining = min(cp.Remaining_TTL, le.TTL)
		if le.Remaining == le.TTL {
			le.Remaining = 0
		}
		if err := tx.bt.Set(leaseKey(le.ID), encodeLease(le)); err != nil {
			return nil, err
		}
		fresh := false
		if st := tx.view[le.ID]; st != nil {
			fresh = st.fresh
		}
		tx.view[le.ID] = &staged{Lease: le, fresh: fresh}
	}
	return &pb.LeaseCheckpointResponse{Header: &pb.ResponseHeader{Revision: tx.kv.Rev()}}, nil
}

// Flush indexes the attachments of the events written since the last
// Flush. Call it before committing the batch.
func (tx *Tx) Flush() error {
	evs := tx.kv.Pending()
	if tx.seen > len(evs) {
		return errors.New("lease: the store's pending events went backwards")
	}
	for _, ev := range evs[tx.seen:] {
		if err := tx.index(ev); err != nil {
			return err
		}
	}
	tx.seen = len(evs)
	return nil
}

// index applies one event to the attachment index.
func (tx *Tx) index(ev *mvccpb.Event) error {
	var prev, next int64
	if ev.PrevKv != nil {
		prev = ev.PrevKv.Lease
	}
	if ev.Type == mvccpb.PUT {
		next = ev.Kv.Lease
	}
	if prev == next {
		return nil
	}
	key := ev.Kv.Key
	if prev != 0 {
		if err := tx.bt.Delete(attachKey(prev, key)); err != nil {
			return err
		}
	}
	if next != 0 {
		return tx.bt.Set(attachKey(next, key), nil)
	}
	return nil
}

// End publishes the batch's changes once it is committed. A primary lessor
// starts the countdown of the leases granted in it.
func (tx *Tx) End() {
	l := tx.l
	if l.tx == tx {
		l.tx = nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	for id, st := range tx.view {
		old, ok := l.leases[id]
		switch {
		case st == nil:
			delete(l.leases, id)
		case st.fresh || !ok:
			le := &lease{Lease: st.Lease}
			if l.primary {
				l.startLocked(le, now, 0)
			}
			l.leases[id] = le
		default:
			old.Lease = st.Lease
		}
	}
}
