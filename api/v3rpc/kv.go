package v3rpc

import (
	"bytes"
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

type kvServer struct {
	pb.UnimplementedKVServer
	a *API
}

func (s *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := checkRange(r); err != nil {
		return nil, err
	}
	resp, err := s.a.b.Range(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	s.a.fillHeader(&resp.Header)
	return resp, nil
}

func (s *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := checkPut(r); err != nil {
		return nil, err
	}
	resp, err := s.a.b.Put(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	s.a.fillHeader(&resp.Header)
	return resp, nil
}

func (s *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := checkDeleteRange(r); err != nil {
		return nil, err
	}
	resp, err := s.a.b.DeleteRange(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	s.a.fillHeader(&resp.Header)
	return resp, nil
}

func (s *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := checkTxn(r, s.a.cfg.MaxTxnOps); err != nil {
		return nil, err
	}
	if _, _, err := txnIntervals(r.Success); err != nil {
		return nil, err
	}
	if _, _, err := txnIntervals(r.Failure); err != nil {
		return nil, err
	}
	resp, err := s.a.b.Txn(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	s.a.fillTxnHeaders(resp)
	return resp, nil
}

// fillTxnHeaders fills the header of a txn response and of every response
// nested in it.
func (a *API) fillTxnHeaders(resp *pb.TxnResponse) {
	a.fillHeader(&resp.Header)
	for _, op := range resp.Responses {
		switch r := op.Response.(type) {
		case *pb.ResponseOp_ResponseRange:
			a.fillHeader(&r.ResponseRange.Header)
		case *pb.ResponseOp_ResponsePut:
			a.fillHeader(&r.ResponsePut.Header)
		case *pb.ResponseOp_ResponseDeleteRange:
			a.fillHeader(&r.ResponseDeleteRange.Header)
		case *pb.ResponseOp_ResponseTxn:
			a.fillTxnHeaders(r.ResponseTxn)
		}
	}
}

func (s *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := s.a.b.Compact(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	s.a.fillHeader(&resp.Header)
	return resp, nil
}

func checkRange(r *pb.RangeRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.SortOrder)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	return nil
}

func checkPut(r *pb.PutRequest) error {
	switch {
	case len(r.Key) == 0:
		return rpctypes.ErrGRPCEmptyKey
	case r.IgnoreValue && len(r.Value) != 0:
		return rpctypes.ErrGRPCValueProvided
	case r.IgnoreLease && r.Lease != 0:
		return rpctypes.ErrGRPCLeaseProvided
	}
	return nil
}

func checkDeleteRange(r *pb.DeleteRangeRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	return nil
}

// checkTxn checks sizes and every operation, recursively.
func checkTxn(r *pb.TxnRequest, maxOps int) error {
	if len(r.Compare) > maxOps || len(r.Success) > maxOps || len(r.Failure) > maxOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if err := checkOp(op, maxOps); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkOp(op *pb.RequestOp, maxOps int) error {
	switch o := op.Request.(type) {
	case *pb.RequestOp_RequestRange:
		return checkRange(o.RequestRange)
	case *pb.RequestOp_RequestPut:
		return checkPut(o.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		return checkDeleteRange(o.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return checkTxn(o.RequestTxn, maxOps)
	default:
		return rpctypes.ErrGRPCKeyNotFound
	}
}

// interval is a half-open key range [start, end); end nil means unbounded.
type interval struct{ start, end []byte }

func (iv interval) contains(k []byte) bool {
	return bytes.Compare(k, iv.start) >= 0 && (iv.end == nil || bytes.Compare(k, iv.end) < 0)
}

func deleteInterval(r *pb.DeleteRangeRequest) interval {
	switch {
	case len(r.RangeEnd) == 0:
		return interval{start: r.Key, end: append(append([]byte{}, r.Key...), 0)}
	case bytes.Equal(r.RangeEnd, []byte{0}):
		return interval{start: r.Key}
	default:
		return interval{start: r.Key, end: r.RangeEnd}
	}
}

func inAny(ivs []interval, k []byte) bool {
	for _, iv := range ivs {
		if iv.contains(k) {
			return true
		}
	}
	return false
}

// txnIntervals returns the keys put and the ranges deleted by one branch of
// a txn (nested txns included), failing with ErrGRPCDuplicateKey when a key
// is put twice, or put and deleted, in the branch. The two branches of a
// nested txn exclude each other, so a key put in both is not a duplicate.
func txnIntervals(ops []*pb.RequestOp) (map[string]bool, []interval, error) {
	var dels []interval
	for _, op := range ops {
		if d, ok := op.Request.(*pb.RequestOp_RequestDeleteRange); ok && d.RequestDeleteRange != nil {
			dels = append(dels, deleteInterval(d.RequestDeleteRange))
		}
	}
	puts := map[string]bool{}
	for _, op := range ops {
		t, ok := op.Request.(*pb.RequestOp_RequestTxn)
		if !ok || t.RequestTxn == nil {
			continue
		}
		thenPuts, thenDels, err := txnIntervals(t.RequestTxn.Success)
		if err != nil {
			return nil, nil, err
		}
		elsePuts, elseDels, err := txnIntervals(t.RequestTxn.Failure)
		if err != nil {
			return nil, nil, err
		}
		for k := range thenPuts {
			if puts[k] || inAny(dels, []byte(k)) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
		}
		for k := range elsePuts {
			if (puts[k] && !thenPuts[k]) || inAny(dels, []byte(k)) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
		}
		for k := range thenPuts {
			puts[k] = true
		}
		for k := range elsePuts {
			puts[k] = true
		}
		dels = append(append(dels, thenDels...), elseDels...)
	}
	for _, op := range ops {
		p, ok := op.Request.(*pb.RequestOp_RequestPut)
		if !ok || p.RequestPut == nil {
			continue
		}
		k := string(p.RequestPut.Key)
		if puts[k] || inAny(dels, p.RequestPut.Key) {
			return nil, nil, rpctypes.ErrGRPCDuplicateKey
		}
		puts[k] = true
	}
	return puts, dels, nil
}
