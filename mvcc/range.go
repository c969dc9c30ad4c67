package mvcc

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// keySpan is a user-key interval with etcd's meaning of range_end.
type keySpan struct {
	key []byte
	end []byte // nil: the single key; empty: no upper bound
}

// newSpan interprets key and range_end as etcd does: empty range_end is the
// single key, "\x00" is every key >= key.
func newSpan(key, rangeEnd []byte) keySpan {
	switch {
	case len(rangeEnd) == 0:
		return keySpan{key: key}
	case len(rangeEnd) == 1 && rangeEnd[0] == 0:
		return keySpan{key: key, end: []byte{}}
	default:
		return keySpan{key: key, end: rangeEnd}
	}
}

func (sp keySpan) single() bool { return sp.end == nil }

func (sp keySpan) empty() bool {
	return !sp.single() && len(sp.end) > 0 && bytes.Compare(sp.key, sp.end) >= 0
}

func (sp keySpan) contains(k []byte) bool {
	if sp.single() {
		return bytes.Equal(k, sp.key)
	}
	return bytes.Compare(k, sp.key) >= 0 && (len(sp.end) == 0 || bytes.Compare(k, sp.end) < 0)
}

// upper is the exclusive upper bound of the span in the 'k' space.
func (sp keySpan) upper() []byte {
	switch {
	case sp.single():
		return nextPrefixKey(keyPrefix(sp.key))
	case len(sp.end) == 0:
		return []byte{prefixKV + 1}
	default:
		return keyPrefix(sp.end)
	}
}

// scanFunc receives each live key at the read revision in key order. It may
// keep kv. Returning false stops the scan.
type scanFunc func(kv *mvccpb.KeyValue) bool

// scan visits the newest non-tombstone version at or below rev of every key
// in sp, using it (an iterator over the 'k' span). countOnly skips decoding:
// fn then gets nil.
func scan(ctx context.Context, it *pebble.Iterator, sp keySpan, rev int64, countOnly bool, fn scanFunc) error {
	if sp.empty() {
		return nil
	}
	upper := sp.upper()
	it.SeekGE(seekKey(keyPrefix(sp.key), rev))
	for n := 0; it.Valid(); n++ {
		k := it.Key()
		if bytes.Compare(k, upper) >= 0 {
			break
		}
		if n%1024 == 1023 && ctx.Err() != nil {
			return ctx.Err()
		}
		p, r, ok := splitKVKey(k)
		if !ok {
			return fmt.Errorf("%w: kv key %q", ErrBadEncoding, k)
		}
		p = append([]byte(nil), p...) // it.Key() changes when it moves
		if r.main > rev {
			it.SeekGE(seekKey(p, rev))
			if it.Valid() && !samePrefix(it.Key(), p) {
				continue
			}
			if !it.Valid() {
				break
			}
			k = it.Key()
			_, r, _ = splitKVKey(k)
		}
		if v := it.Value(); !isTombstone(v) {
			var kv *mvccpb.KeyValue
			if !countOnly {
				key, _, err := decodeKVKey(k)
				if err != nil {
					return err
				}
				if kv, err = decodeValue(key, r, v); err != nil {
					return err
				}
			}
			if !fn(kv) {
				return nil
			}
		}
		if sp.single() {
			break // the one key's version at rev was found
		}
		skipPrefix(it, p)
	}
	return it.Error()
}

// samePrefix reports whether backend key k is a version of the key with
// prefix p (escaped keys are prefix-free, so length decides).
func samePrefix(k, p []byte) bool {
	return len(k) == len(p)+revSuffixLen && bytes.HasPrefix(k, p)
}

// skipPrefix moves it past every version of the key with prefix p: a couple
// of Next calls (most keys have few versions), then a seek.
func skipPrefix(it *pebble.Iterator, p []byte) {
	for i := 0; i < 2; i++ {
		if !it.Next() || !samePrefix(it.Key(), p) {
			return
		}
	}
	it.SeekGE(nextPrefixKey(p))
}

// latest returns the newest version of key at or below rev, or nil if the
// key does not exist there.
func latest(it *pebble.Iterator, key []byte, rev int64) (*mvccpb.KeyValue, error) {
	p := keyPrefix(key)
	if !it.SeekGE(seekKey(p, rev)) || !samePrefix(it.Key(), p) {
		return nil, it.Error()
	}
	_, r, _ := splitKVKey(it.Key())
	return decodeValue(append([]byte(nil), key...), r, it.Value())
}

// rangeKVs runs etcd's range with the read revision already resolved.
func rangeKVs(ctx context.Context, it *pebble.Iterator, r *pb.RangeRequest, rev int64) (*pb.RangeResponse, error) {
	limit := r.Limit
	filtered := r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0
	if r.SortOrder != pb.RangeRequest_NONE || filtered {
		limit = 0 // fetch all: sort and filter before truncating
	}
	var kvs []*mvccpb.KeyValue
	var count int64
	err := scan(ctx, it, newSpan(r.Key, r.RangeEnd), rev, r.CountOnly, func(kv *mvccpb.KeyValue) bool {
		count++
		if !r.CountOnly && (limit <= 0 || int64(len(kvs)) <= limit) {
			kvs = append(kvs, kv)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	kvs = pruneKVs(r, kvs)
	sortKVs(r, kvs)
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: rev}, Count: count}
	if r.Limit > 0 && int64(len(kvs)) > r.Limit {
		kvs = kvs[:r.Limit]
		resp.More = true
	}
	if r.KeysOnly {
		for _, kv := range kvs {
			kv.Value = nil
		}
	}
	resp.Kvs = kvs
	return resp, nil
}

func pruneKVs(r *pb.RangeRequest, kvs []*mvccpb.KeyValue) []*mvccpb.KeyValue {
	keep := func(kv *mvccpb.KeyValue) bool {
		return (r.MaxModRevision == 0 || kv.ModRevision <= r.MaxModRevision) &&
			(r.MinModRevision == 0 || kv.ModRevision >= r.MinModRevision) &&
			(r.MaxCreateRevision == 0 || kv.CreateRevision <= r.MaxCreateRevision) &&
			(r.MinCreateRevision == 0 || kv.CreateRevision >= r.MinCreateRevision)
	}
	out := kvs[:0]
	for _, kv := range kvs {
		if keep(kv) {
			out = append(out, kv)
		}
	}
	return out
}

// sortKVs sorts as etcd does: a non-KEY target with order NONE sorts
// ascending; KEY ascending is the scan order already. Ties keep key order
// (the sort is stable).
func sortKVs(r *pb.RangeRequest, kvs []*mvccpb.KeyValue) {
	order := r.SortOrder
	if r.SortTarget != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	if order == pb.RangeRequest_NONE || (r.SortTarget == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND) {
		return
	}
	cmp := func(a, b *mvccpb.KeyValue) int {
		switch r.SortTarget {
		case pb.RangeRequest_VERSION:
			return cmp.Compare(a.Version, b.Version)
		case pb.RangeRequest_CREATE:
			return cmp.Compare(a.CreateRevision, b.CreateRevision)
		case pb.RangeRequest_MOD:
			return cmp.Compare(a.ModRevision, b.ModRevision)
		case pb.RangeRequest_VALUE:
			return bytes.Compare(a.Value, b.Value)
		default:
			return bytes.Compare(a.Key, b.Key)
		}
	}
	desc := order == pb.RangeRequest_DESCEND
	sort.SliceStable(kvs, func(i, j int) bool {
		c := cmp(kvs[i], kvs[j])
		if desc {
			return c > 0
		}
		return c < 0
	})
}

// checkRev resolves a requested revision (<= 0: current) against the current
// and compaction revisions.
func checkRev(req, cur, compactRev int64) (int64, error) {
	if req <= 0 {
		return cur, nil
	}
	if req > cur {
		return 0, fmt.Errorf("%w: %d > %d", ErrFutureRev, req, cur)
	}
	if req < compactRev {
		return 0, fmt.Errorf("%w: %d < %d", ErrCompacted, req, compactRev)
	}
	return req, nil
}

// Range serves a RangeRequest with every option, at r.Revision (0: current).
// The header carries the revision the read saw; cluster, member and term are
// left to the API layer. Safe on any goroutine.
func (s *Store) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if resp, ok := s.pointRead(r); ok {
		return resp, nil
	}
	it, cur, compactRev, release, err := s.readView()
	if err != nil {
		return nil, err
	}
	defer release()
	rev, err := checkRev(r.Revision, cur, compactRev)
	if err != nil {
		return nil, err
	}
	resp, err := rangeKVs(ctx, it, r, rev)
	if err != nil {
		return nil, err
	}
	resp.Header.Revision = cur
	return resp, nil
}

// pointRead answers a range of one key at the current revision without
// Pebble when the latest-version cache holds the key (its value, or only its
// metadata when the request needs no value) or the key filter rules it out;
// ok is false otherwise. The revision and the cache are read under one lock,
// which End also holds while it merges a commit's versions into the cache,
// so the answer is the state at the returned revision.
func (s *Store) pointRead(r *pb.RangeRequest) (*pb.RangeResponse, bool) {
	if len(r.RangeEnd) != 0 || r.Revision != 0 {
		return nil, false
	}
	s.mu.RLock()
	cur := s.rev
	m, value, full, ok := s.latest.get(r.Key)
	if !ok && s.absent(r.Key) {
		ok, full = true, true
	}
	s.mu.RUnlock()
	if !ok || (!full && !r.CountOnly && !r.KeysOnly) {
		return nil, false
	}
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: cur}}
	if m.absent() {
		return resp, true
	}
	resp.Count = 1
	if r.CountOnly {
		return resp, true
	}
	if r.KeysOnly {
		value = nil
	}
	resp.Kvs = pruneKVs(r, []*mvccpb.KeyValue{m.keyValue(r.Key, value)})
	return resp, true
}
