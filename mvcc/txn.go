package mvcc

import (
	"bytes"
	"cmp"
	"context"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Txn applies a TxnRequest as one revision (if it changes anything). Compares
// of the txn and of every nested txn are evaluated against the state before
// the txn, as etcd does; the chosen branches are checked completely before
// the first write, so a failing txn changes nothing. Ranges inside the txn see
// its earlier ops.
func (w *Writer) Txn(t *pb.TxnRequest) (*pb.TxnResponse, error) {
	ctx := context.Background()
	it := &lazyIter{w: w}
	path, err := w.txnPath(ctx, it, t)
	it.close()
	if err != nil {
		return nil, err
	}
	w.beginRequest()
	resp, _, err := w.execTxn(ctx, t, path)
	if err != nil {
		// Checked beforehand; only backend failures reach here, and those
		// stop the member.
		return nil, err
	}
	setTxnRev(resp, w.rev)
	return resp, nil
}

// txnPath evaluates compares (depth first, success flag per txn) and checks
// the ops of the chosen branches.
func (w *Writer) txnPath(ctx context.Context, it *lazyIter, t *pb.TxnRequest) ([]bool, error) {
	ok, err := w.compares(ctx, it, t.Compare)
	if err != nil {
		return nil, err
	}
	path := []bool{ok}
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	for _, op := range ops {
		switch o := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			if _, err := checkRev(o.RequestRange.Revision, w.rev, w.compactRev); err != nil {
				return nil, err
			}
		case *pb.RequestOp_RequestPut:
			if err := w.checkPut(it, o.RequestPut); err != nil {
				return nil, err
			}
		case *pb.RequestOp_RequestDeleteRange:
		case *pb.RequestOp_RequestTxn:
			sub, err := w.txnPath(ctx, it, o.RequestTxn)
			if err != nil {
				return nil, err
			}
			path = append(path, sub...)
		default:
			return nil, errUnknownRequest
		}
	}
	return path, nil
}

// execTxn runs the branch chosen by path[0] and returns how many path entries
// the txn and its nested txns used.
func (w *Writer) execTxn(ctx context.Context, t *pb.TxnRequest, path []bool) (*pb.TxnResponse, int, error) {
	ops := t.Success
	if !path[0] {
		ops = t.Failure
	}
	used := 1
	resp := &pb.TxnResponse{Succeeded: path[0], Responses: make([]*pb.ResponseOp, 0, len(ops))}
	for _, op := range ops {
		var r *pb.ResponseOp
		var err error
		if nt, ok := op.Request.(*pb.RequestOp_RequestTxn); ok {
			var sub *pb.TxnResponse
			var n int
			sub, n, err = w.execTxn(ctx, nt.RequestTxn, path[used:])
			used += n
			r = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: sub}}
		} else {
			r, err = w.execOp(ctx, op)
		}
		if err != nil {
			return nil, 0, err
		}
		resp.Responses = append(resp.Responses, r)
	}
	return resp, used, nil
}

func (w *Writer) execOp(ctx context.Context, op *pb.RequestOp) (*pb.ResponseOp, error) {
	li := &lazyIter{w: w}
	defer li.close()
	switch o := op.Request.(type) {
	case *pb.RequestOp_RequestRange:
		rev, err := checkRev(o.RequestRange.Revision, w.rev, w.compactRev)
		if err != nil {
			return nil, err
		}
		it, err := li.get()
		if err != nil {
			return nil, err
		}
		rr, err := rangeKVs(ctx, it, o.RequestRange, rev)
		if err != nil {
			return nil, err
		}
		rr.Header.Revision = w.rev
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rr}}, nil
	case *pb.RequestOp_RequestPut:
		pr, err := w.put(li, o.RequestPut)
		if err != nil {
			return nil, err
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: pr}}, nil
	case *pb.RequestOp_RequestDeleteRange:
		it, err := li.get()
		if err != nil {
			return nil, err
		}
		dr, err := w.deleteRange(it, o.RequestDeleteRange)
		if err != nil {
			return nil, err
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}}, nil
	}
	return nil, errUnknownRequest
}

// setTxnRev sets the header of a txn response and of its nested txn
// responses to the revision after the txn.
func setTxnRev(resp *pb.TxnResponse, rev int64) {
	resp.Header = &pb.ResponseHeader{Revision: rev}
	for _, r := range resp.Responses {
		if nt, ok := r.Response.(*pb.ResponseOp_ResponseTxn); ok {
			setTxnRev(nt.ResponseTxn, rev)
		}
	}
}

// compares reports whether every compare holds at the writer's revision.
func (w *Writer) compares(ctx context.Context, li *lazyIter, cs []*pb.Compare) (bool, error) {
	for _, c := range cs {
		var ok bool
		var err error
		if len(c.RangeEnd) == 0 {
			ok, err = w.compareKey(li, c)
		} else {
			var it *pebble.Iterator
			if it, err = li.get(); err == nil {
				ok, err = compare(ctx, it, c, w.rev)
			}
		}
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// compareKey evaluates a compare on one key through prev (the writer's
// overlay, the cache, the filter, else a seek): the newest live version,
// as a scan of the key at the writer's revision finds it.
func (w *Writer) compareKey(li *lazyIter, c *pb.Compare) (bool, error) {
	var kv *mvccpb.KeyValue
	var err error
	if c.Target == pb.Compare_VALUE {
		kv, err = w.prevFull(li, c.Key)
	} else {
		kv, _, err = w.prev(li, c.Key)
	}
	if err != nil {
		return false, err
	}
	if kv == nil {
		return compareMissing(c), nil
	}
	return compareKV(c, kv), nil
}

// compare evaluates one compare as etcd does: over range_end it holds iff
// every existing key in the range satisfies it; with no key, VALUE compares
// fail and others compare against zero.
func compare(ctx context.Context, it *pebble.Iterator, c *pb.Compare, rev int64) (bool, error) {
	found, ok := false, true
	err := scan(ctx, it, newSpan(c.Key, c.RangeEnd), rev, false, func(kv *mvccpb.KeyValue) bool {
		found = true
		ok = compareKV(c, kv)
		return ok
	})
	if err != nil {
		return false, err
	}
	if !found {
		return compareMissing(c), nil
	}
	return ok, nil
}

// compareMissing is a compare's result when no key matches: VALUE compares
// fail, the others compare against zero.
func compareMissing(c *pb.Compare) bool {
	return c.Target != pb.Compare_VALUE && compareKV(c, &mvccpb.KeyValue{})
}

func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var res int
	switch c.Target {
	case pb.Compare_VALUE:
		res = bytes.Compare(kv.Value, c.GetValue())
	case pb.Compare_CREATE:
		res = cmp.Compare(kv.CreateRevision, c.GetCreateRevision())
	case pb.Compare_MOD:
		res = cmp.Compare(kv.ModRevision, c.GetModRevision())
	case pb.Compare_VERSION:
		res = cmp.Compare(kv.Version, c.GetVersion())
	case pb.Compare_LEASE:
		res = cmp.Compare(kv.Lease, c.GetLease())
	default:
		return false
	}
	switch c.Result {
	case pb.Compare_EQUAL:
		return res == 0
	case pb.Compare_NOT_EQUAL:
		return res != 0
	case pb.Compare_GREATER:
		return res > 0
	case pb.Compare_LESS:
		return res < 0
	}
	return false
}
