package server

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/apply"
	"github.com/cairn-kv/cairn/backend"
)

// Alarms
//
// An alarm (NOSPACE, CORRUPT) is raised for one member and is cluster state:
// it is changed only by an AlarmRequest that went through raft, applied in
// log order on every member, and persisted in the backend under
//
//	"m/alarm/" + type (4 bytes big-endian) + member ID (8 bytes big-endian) → ""
//
// so it survives restarts and travels with state copies. While any NOSPACE
// alarm is active the applier refuses requests that may grow the store
// (Put, a Txn containing a Put, LeaseGrant) with [ErrNoSpace], and the
// proposers refuse them before proposing. Reads, deletes and compactions
// keep working so an operator can free space, defragment, and disarm.

// ErrNoSpace refuses a write while the space quota is exhausted.
var ErrNoSpace = errors.New("server: mvcc: database space exceeded")

// alarmPfx is the backend prefix of active alarms (under the meta prefix).
var alarmPfx = []byte("m/alarm/")

// Space costs of a request, like etcd's quota: what a write may add.
const (
	kvOverhead    = 256
	leaseOverhead = 64
)

// alarmKey is the backend key of an active alarm.
func alarmKey(m *pb.AlarmMember) []byte {
	k := make([]byte, len(alarmPfx)+12)
	copy(k, alarmPfx)
	binary.BigEndian.PutUint32(k[len(alarmPfx):], uint32(m.Alarm))
	binary.BigEndian.PutUint64(k[len(alarmPfx)+4:], m.MemberID)
	return k
}

// alarmString formats an alarm as etcd's Status errors list does.
func alarmString(m *pb.AlarmMember) string {
	return fmt.Sprintf("memberID:%d alarm:%s ", m.MemberID, m.Alarm)
}

// alarmWriter is where applied alarm changes are persisted (a backend batch).
type alarmWriter interface {
	Set(k, v []byte) error
	Delete(k []byte) error
}

// alarmSet is the active alarms, sorted by type then member ID. The apply
// goroutine changes it; anyone reads it.
type alarmSet struct {
	mu   sync.RWMutex
	list []*pb.AlarmMember // guarded by mu; elements are never mutated
}

func compareAlarms(a, b *pb.AlarmMember) int {
	if c := cmp.Compare(a.Alarm, b.Alarm); c != 0 {
		return c
	}
	return cmp.Compare(a.MemberID, b.MemberID)
}

// get returns the active alarms of type t (all for NONE).
func (a *alarmSet) get(t pb.AlarmType) []*pb.AlarmMember {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []*pb.AlarmMember
	for _, m := range a.list {
		if t == pb.AlarmType_NONE || m.Alarm == t {
			out = append(out, &pb.AlarmMember{MemberID: m.MemberID, Alarm: m.Alarm})
		}
	}
	return out
}

// active reports whether an alarm of type t is raised for any member.
func (a *alarmSet) active(t pb.AlarmType) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, m := range a.list {
		if m.Alarm == t {
			return true
		}
	}
	return false
}

func (a *alarmSet) reset(list []*pb.AlarmMember) {
	slices.SortFunc(list, compareAlarms)
	a.mu.Lock()
	a.list = list
	a.mu.Unlock()
}

// apply applies one replicated alarm request: GET lists, ACTIVATE raises
// (and answers the alarm even if it was already raised), DEACTIVATE clears
// (and answers the alarm only if it was raised). known tells whether a
// member ID belongs to the cluster; alarms for others are ignored.
func (a *alarmSet) apply(w alarmWriter, r *pb.AlarmRequest, known func(uint64) bool) (*pb.AlarmResponse, error) {
	resp := &pb.AlarmResponse{}
	m := &pb.AlarmMember{MemberID: r.MemberID, Alarm: r.Alarm}
	switch r.Action {
	case pb.AlarmRequest_GET:
		resp.Alarms = a.get(r.Alarm)
		return resp, nil
	case pb.AlarmRequest_ACTIVATE:
		if _, ok := pb.AlarmType_name[int32(r.Alarm)]; !ok || r.Alarm == pb.AlarmType_NONE || !known(r.MemberID) {
			return resp, nil
		}
	case pb.AlarmRequest_DEACTIVATE:
	default:
		return resp, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	i, found := slices.BinarySearchFunc(a.list, m, compareAlarms)
	switch {
	case r.Action == pb.AlarmRequest_ACTIVATE && !found:
		if err := w.Set(alarmKey(m), nil); err != nil {
			return nil, err
		}
		a.list = slices.Insert(a.list, i, m)
	case r.Action == pb.AlarmRequest_DEACTIVATE && found:
		if err := w.Delete(alarmKey(m)); err != nil {
			return nil, err
		}
		a.list = slices.Delete(a.list, i, i+1)
	case r.Action == pb.AlarmRequest_DEACTIVATE:
		return resp, nil
	}
	resp.Alarms = []*pb.AlarmMember{{MemberID: m.MemberID, Alarm: m.Alarm}}
	return resp, nil
}

// loadAlarms reads the active alarms from a freshly opened backend.
func loadAlarms(be *backend.Backend) ([]*pb.AlarmMember, error) {
	upper := slices.Clone(alarmPfx)
	upper[len(upper)-1]++
	it, err := be.NewIter(alarmPfx, upper)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*pb.AlarmMember
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[len(alarmPfx):]
		if len(k) != 12 {
			return nil, fmt.Errorf("%w: alarm key %q", backend.ErrCorrupt, it.Key())
		}
		out = append(out, &pb.AlarmMember{
			Alarm:    pb.AlarmType(binary.BigEndian.Uint32(k)),
			MemberID: binary.BigEndian.Uint64(k[4:]),
		})
	}
	return out, it.Error()
}

// spaceCost is how many bytes req may add to the store; 0 for requests
// that cannot grow it (reads, deletes, compactions, alarms, ...).
func spaceCost(req *pb.InternalRaftRequest) int64 {
	switch {
	case req.Put != nil:
		return putCost(req.Put)
	case req.Txn != nil:
		return txnCost(req.Txn)
	case req.LeaseGrant != nil:
		return leaseOverhead
	}
	return 0
}

func putCost(p *pb.PutRequest) int64 {
	return int64(kvOverhead + len(p.Key) + len(p.Value))
}

// txnCost is the cost of the more expensive branch.
func txnCost(t *pb.TxnRequest) int64 {
	return max(opsCost(t.Success), opsCost(t.Failure))
}

func opsCost(ops []*pb.RequestOp) int64 {
	var c int64
	for _, op := range ops {
		switch o := op.Request.(type) {
		case *pb.RequestOp_RequestPut:
			c += putCost(o.RequestPut)
		case *pb.RequestOp_RequestTxn:
			c += txnCost(o.RequestTxn)
		}
	}
	return c
}

// applyMaintenance applies the requests this file owns and refuses, while
// a NOSPACE alarm is active, the requests that may grow the store. It
// reports false for requests it leaves to the rest of the applier.
func (s *Server) applyMaintenance(bt *backend.Batch, req *pb.InternalRaftRequest) (any, bool) {
	if r := req.GetAlarm(); r != nil {
		resp, err := s.alarms.apply(bt, r, func(id uint64) bool {
			_, ok := s.cluster.Member(id)
			return ok
		})
		if err == nil && r.Action != pb.AlarmRequest_GET && len(resp.Alarms) > 0 {
			s.log.Warn("alarm changed", "action", r.Action.String(), "alarm", r.Alarm.String(),
				"member", fmt.Sprintf("%x", r.MemberID))
		}
		return applyResult(resp, err), true
	}
	if corruptRefuses(req) && s.alarms.active(pb.AlarmType_CORRUPT) {
		return apply.Result{Err: ErrCorrupt}, true
	}
	if spaceCost(req) > 0 && s.alarms.active(pb.AlarmType_NOSPACE) {
		return apply.Result{Err: ErrNoSpace}, true
	}
	return nil, false
}

// checkQuota refuses, before proposing, a request that may grow the store
// while a NOSPACE alarm is active or when it would take the store over
// --quota-backend-bytes; in the second case it first raises the alarm
// (through raft) for this member, like etcd.
func (s *Server) checkQuota(ctx context.Context, req *pb.InternalRaftRequest) error {
	cost := spaceCost(req)
	if cost == 0 {
		return nil
	}
	if s.alarms.active(pb.AlarmType_NOSPACE) {
		return ErrNoSpace
	}
	be, _ := s.store()
	if be == nil || s.quota.estimate(be, cost, s.cfg.QuotaBackendBytes, time.Now()) < s.cfg.QuotaBackendBytes {
		return nil
	}
	s.log.Warn("database space exceeds the quota; raising the NOSPACE alarm",
		"size", be.Size(), "quota", s.cfg.QuotaBackendBytes)
	_, err := s.propose(ctx, &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{
		Action: pb.AlarmRequest_ACTIVATE, MemberID: s.id, Alarm: pb.AlarmType_NOSPACE,
	}})
	if err != nil {
		s.log.Warn("raising the NOSPACE alarm failed", "err", err)
	}
	return ErrNoSpace
}
