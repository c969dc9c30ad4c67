package mvcc

import (
	"bytes"
	"cmp"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// model is a plain in-memory statement of etcd's v3 semantics: every version
// of every key kept in a map, scanned naively.
type model struct {
	hist       map[string][]mver // versions, oldest first
	rev        int64
	compactRev int64
	sub        int64
	changed    bool
	leases     map[int64]bool
	events     []*mvccpb.Event
}

type mver struct {
	rev revision
	kv  *mvccpb.KeyValue // nil: tombstone
}

// newModel is an empty store: like etcd's, it is at revision 1, so the first
// write makes revision 2.
func newModel() *model {
	return &model{rev: 1, hist: map[string][]mver{}, leases: map[int64]bool{1: true, 2: true}}
}

func cloneKV(kv *mvccpb.KeyValue) *mvccpb.KeyValue {
	if kv == nil {
		return nil
	}
	return proto.Clone(kv).(*mvccpb.KeyValue)
}

// at is the live version of key at rev, or nil.
func (m *model) at(key string, rev int64) *mvccpb.KeyValue {
	vs := m.hist[key]
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].rev.main <= rev {
			return cloneKV(vs[i].kv)
		}
	}
	return nil
}

func (m *model) keysIn(key, end []byte) []string {
	var out []string
	sp := newSpan(key, end)
	for k := range m.hist {
		if sp.contains([]byte(k)) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (m *model) live(key, end []byte, rev int64) []*mvccpb.KeyValue {
	var out []*mvccpb.KeyValue
	for _, k := range m.keysIn(key, end) {
		if kv := m.at(k, rev); kv != nil {
			out = append(out, kv)
		}
	}
	return out
}

func (m *model) checkRev(req int64) (int64, error) {
	switch {
	case req <= 0:
		return m.rev, nil
	case req > m.rev:
		return 0, ErrFutureRev
	case req < m.compactRev:
		return 0, ErrCompacted
	}
	return req, nil
}

func (m *model) rangeAt(r *pb.RangeRequest, rev int64) *pb.RangeResponse {
	kvs := m.live(r.Key, r.RangeEnd, rev)
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: m.rev}, Count: int64(len(kvs))}
	if r.CountOnly {
		return resp
	}
	filtered := r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0
	if r.SortOrder == pb.RangeRequest_NONE && !filtered && r.Limit > 0 && int64(len(kvs)) > r.Limit+1 {
		// etcd's quirk: with order NONE it sorts only the first limit+1 keys.
		kvs = kvs[:r.Limit+1]
	}
	var keep []*mvccpb.KeyValue
	for _, kv := range kvs {
		if (r.MaxModRevision == 0 || kv.ModRevision <= r.MaxModRevision) &&
			(r.MinModRevision == 0 || kv.ModRevision >= r.MinModRevision) &&
			(r.MaxCreateRevision == 0 || kv.CreateRevision <= r.MaxCreateRevision) &&
			(r.MinCreateRevision == 0 || kv.CreateRevision >= r.MinCreateRevision) {
			keep = append(keep, kv)
		}
	}
	key := func(kv *mvccpb.KeyValue) int64 {
		switch r.SortTarget {
		case pb.RangeRequest_VERSION:
			return kv.Version
		case pb.RangeRequest_CREATE:
			return kv.CreateRevision
		case pb.RangeRequest_MOD:
			return kv.ModRevision
		}
		return 0
	}
	less := func(a, b *mvccpb.KeyValue) int {
		switch r.SortTarget {
		case pb.RangeRequest_KEY:
			return bytes.Compare(a.Key, b.Key)
		case pb.RangeRequest_VALUE:
			return bytes.Compare(a.Value, b.Value)
		}
		return cmp.Compare(key(a), key(b))
	}
	if r.SortOrder == pb.RangeRequest_DESCEND {
		sort.SliceStable(keep, func(i, j int) bool { return less(keep[i], keep[j]) > 0 })
	} else if r.SortOrder == pb.RangeRequest_ASCEND || r.SortTarget != pb.RangeRequest_KEY {
		sort.SliceStable(keep, func(i, j int) bool { return less(keep[i], keep[j]) < 0 })
	}
	if r.Limit > 0 && int64(len(keep)) > r.Limit {
		keep, resp.More = keep[:r.Limit], true
	}
	for _, kv := range keep {
		if r.KeysOnly {
			kv.Value = nil
		}
	}
	resp.Kvs = keep
	return resp
}

func (m *model) Range(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	rev, err := m.checkRev(r.Revision)
	if err != nil {
		return nil, err
	}
	return m.rangeAt(r, rev), nil
}

func (m *model) bump() revision {
	if !m.changed {
		m.changed, m.rev, m.sub = true, m.rev+1, 0
	}
	m.sub++
	return revision{m.rev, m.sub - 1}
}

func (m *model) write(key string, kv *mvccpb.KeyValue, prev *mvccpb.KeyValue) {
	r := m.bump()
	ev := &mvccpb.Event{Type: mvccpb.PUT, Kv: cloneKV(kv), PrevKv: cloneKV(prev)}
	if kv == nil {
		ev.Type, ev.Kv = mvccpb.DELETE, &mvccpb.KeyValue{Key: []byte(key), ModRevision: r.main}
	} else {
		if kv.CreateRevision == 0 {
			kv.CreateRevision = r.main
		}
		kv.ModRevision = r.main
		ev.Kv = cloneKV(kv)
	}
	m.hist[key] = append(m.hist[key], mver{r, cloneKV(kv)})
	m.events = append(m.events, ev)
}

func (m *model) checkPut(p *pb.PutRequest) error {
	if (p.IgnoreValue || p.IgnoreLease) && m.at(string(p.Key), m.rev) == nil {
		return ErrKeyNotFound
	}
	if p.Lease != 0 && !m.leases[p.Lease] {
		return ErrLeaseNotFound
	}
	return nil
}

func (m *model) put(p *pb.PutRequest) *pb.PutResponse {
	prev := m.at(string(p.Key), m.rev)
	kv := &mvccpb.KeyValue{Key: p.Key, Value: p.Value, Lease: p.Lease, Version: 1}
	if prev != nil {
		kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
		if p.IgnoreValue {
			kv.Value = prev.Value
		}
		if p.IgnoreLease {
			kv.Lease = prev.Lease
		}
	}
	m.write(string(p.Key), kv, prev)
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{Revision: m.rev}}
	if p.PrevKv {
		resp.PrevKv = prev
	}
	return resp
}

func (m *model) Put(p *pb.PutRequest) (*pb.PutResponse, error) {
	if err := m.checkPut(p); err != nil {
		return nil, err
	}
	m.changed = false
	return m.put(p), nil
}

func (m *model) del(d *pb.DeleteRangeRequest) *pb.DeleteRangeResponse {
	live := m.live(d.Key, d.RangeEnd, m.rev)
	for _, kv := range live {
		m.write(string(kv.Key), nil, kv)
	}
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{Revision: m.rev}, Deleted: int64(len(live))}
	if d.PrevKv {
		resp.PrevKvs = live
	}
	return resp
}

func (m *model) DeleteRange(d *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	m.changed = false
	return m.del(d), nil
}

func (m *model) compareOK(c *pb.Compare) bool {
	kvs := m.live(c.Key, c.RangeEnd, m.rev)
	if len(kvs) == 0 {
		return c.Target != pb.Compare_VALUE && compareKV(c, &mvccpb.KeyValue{})
	}
	for _, kv := range kvs {
		if !compareKV(c, kv) {
			return false
		}
	}
	return true
}

// branch evaluates compares of t and nested txns up front (pre-txn state) and
// returns the chosen ops per txn in depth-first order.
func (m *model) branch(t *pb.TxnRequest, path *[]bool) error {
	ok := true
	for _, c := range t.Compare {
		ok = ok && m.compareOK(c)
	}
	*path = append(*path, ok)
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	for _, op := range ops {
		switch o := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			if _, err := m.checkRev(o.RequestRange.Revision); err != nil {
				return err
			}
		case *pb.RequestOp_RequestPut:
			if err := m.checkPut(o.RequestPut); err != nil {
				return err
			}
		case *pb.RequestOp_RequestTxn:
			if err := m.branch(o.RequestTxn, path); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *model) Txn(t *pb.TxnRequest) (*pb.TxnResponse, error) {
	var path []bool
	if err := m.branch(t, &path); err != nil {
		return nil, err
	}
	m.changed = false
	resp := m.exec(t, &path)
	setTxnRev(resp, m.rev)
	return resp, nil
}

func (m *model) exec(t *pb.TxnRequest, path *[]bool) *pb.TxnResponse {
	ok := (*path)[0]
	*path = (*path)[1:]
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	resp := &pb.TxnResponse{Succeeded: ok}
	for _, op := range ops {
		var r *pb.ResponseOp
		switch o := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			rev, _ := m.checkRev(o.RequestRange.Revision)
			rr := m.rangeAt(o.RequestRange, rev)
			r = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rr}}
		case *pb.RequestOp_RequestPut:
			r = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: m.put(o.RequestPut)}}
		case *pb.RequestOp_RequestDeleteRange:
			r = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: m.del(o.RequestDeleteRange)}}
		case *pb.RequestOp_RequestTxn:
			r = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: m.exec(o.RequestTxn, path)}}
		}
		resp.Responses = append(resp.Responses, r)
	}
	return resp
}

func (m *model) Compact(rev int64) (*pb.CompactionResponse, error) {
	if rev <= m.compactRev {
		return nil, ErrCompacted
	}
	if rev > m.rev {
		return nil, ErrFutureRev
	}
	m.compactRev = rev
	for k, vs := range m.hist {
		keepFrom := 0
		for i, v := range vs {
			if v.rev.main <= rev {
				keepFrom = i
			}
		}
		if vs[keepFrom].rev.main <= rev && vs[keepFrom].kv == nil {
			keepFrom++
		}
		if keepFrom >= len(vs) {
			delete(m.hist, k)
		} else {
			m.hist[k] = vs[keepFrom:]
		}
	}
	return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: m.rev}}, nil
}

// eventsFrom lists every event at or above from touching keys in the span.
func (m *model) eventsFrom(from int64, key, end []byte) []*mvccpb.Event {
	sp := newSpan(key, end)
	var out []*mvccpb.Event
	for _, ev := range m.events {
		if ev.Kv.ModRevision >= from && sp.contains(ev.Kv.Key) {
			out = append(out, ev)
		}
	}
	return out
}
