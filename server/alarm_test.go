package server

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/apply"
	"github.com/cairn-kv/cairn/backend"
)

// recordingWriter records what an alarm change persists.
type recordingWriter struct{ set, deleted [][]byte }

func (w *recordingWriter) Set(k, _ []byte) error { w.set = append(w.set, k); return nil }
func (w *recordingWriter) Delete(k []byte) error { w.deleted = append(w.deleted, k); return nil }

func req(a pb.AlarmRequest_AlarmAction, id uint64, t pb.AlarmType) *pb.AlarmRequest {
	return &pb.AlarmRequest{Action: a, MemberID: id, Alarm: t}
}

func alarmsEqual(t *testing.T, what string, got []*pb.AlarmMember, want ...*pb.AlarmMember) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
	for i := range got {
		if got[i].MemberID != want[i].MemberID || got[i].Alarm != want[i].Alarm {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
	}
}

func am(id uint64, t pb.AlarmType) *pb.AlarmMember { return &pb.AlarmMember{MemberID: id, Alarm: t} }

func TestAlarmApplyActivateGetDeactivate(t *testing.T) {
	var a alarmSet
	w := &recordingWriter{}
	known := func(id uint64) bool { return id == 1 || id == 2 }
	apply := func(r *pb.AlarmRequest) []*pb.AlarmMember {
		t.Helper()
		resp, err := a.apply(w, r, known)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Alarms
	}
	const (
		get, on, off     = pb.AlarmRequest_GET, pb.AlarmRequest_ACTIVATE, pb.AlarmRequest_DEACTIVATE
		none, nosp, corr = pb.AlarmType_NONE, pb.AlarmType_NOSPACE, pb.AlarmType_CORRUPT
	)
	alarmsEqual(t, "raise NOSPACE for 2", apply(req(on, 2, nosp)), am(2, nosp))
	alarmsEqual(t, "raise again answers it", apply(req(on, 2, nosp)), am(2, nosp))
	alarmsEqual(t, "raise CORRUPT for 1", apply(req(on, 1, corr)), am(1, corr))
	alarmsEqual(t, "raise NOSPACE for 1", apply(req(on, 1, nosp)), am(1, nosp))
	alarmsEqual(t, "NONE is not an alarm", apply(req(on, 1, none)))
	alarmsEqual(t, "unknown member ignored", apply(req(on, 9, nosp)))
	alarmsEqual(t, "unknown type ignored", apply(req(on, 1, pb.AlarmType(7))))
	if len(w.set) != 3 {
		t.Fatalf("persisted %d alarms, want 3 (re-raising must not write)", len(w.set))
	}
	alarmsEqual(t, "GET NONE lists all, sorted", apply(req(get, 0, none)), am(1, nosp), am(2, nosp), am(1, corr))
	alarmsEqual(t, "GET CORRUPT", apply(req(get, 0, corr)), am(1, corr))
	if !a.active(nosp) || !a.active(corr) {
		t.Fatal("alarms not active")
	}
	alarmsEqual(t, "clear a missing alarm", apply(req(off, 2, corr)))
	alarmsEqual(t, "clear NOSPACE of 1", apply(req(off, 1, nosp)), am(1, nosp))
	alarmsEqual(t, "clear NOSPACE of 2", apply(req(off, 2, nosp)), am(2, nosp))
	if a.active(nosp) || len(w.deleted) != 2 {
		t.Fatalf("after clearing: active=%v deletes=%d", a.active(nosp), len(w.deleted))
	}
	alarmsEqual(t, "left", apply(req(get, 0, none)), am(1, corr))
}

func TestAlarmsPersistAndReload(t *testing.T) {
	be, err := backend.Open(filepath.Join(t.TempDir(), "db"), backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	var a alarmSet
	bt := be.NewBatch()
	for _, r := range []*pb.AlarmRequest{
		req(pb.AlarmRequest_ACTIVATE, 7, pb.AlarmType_CORRUPT),
		req(pb.AlarmRequest_ACTIVATE, 1<<60, pb.AlarmType_NOSPACE),
		req(pb.AlarmRequest_ACTIVATE, 3, pb.AlarmType_NOSPACE),
		req(pb.AlarmRequest_DEACTIVATE, 3, pb.AlarmType_NOSPACE),
	} {
		if _, err := a.apply(bt, r, func(uint64) bool { return true }); err != nil {
			t.Fatal(err)
		}
	}
	if err := bt.Commit(5); err != nil {
		t.Fatal(err)
	}
	list, err := loadAlarms(be)
	if err != nil {
		t.Fatal(err)
	}
	var b alarmSet
	b.reset(list)
	alarmsEqual(t, "reloaded", b.get(pb.AlarmType_NONE), am(1<<60, pb.AlarmType_NOSPACE), am(7, pb.AlarmType_CORRUPT))
}

func TestSpaceCost(t *testing.T) {
	put := &pb.PutRequest{Key: []byte("k"), Value: []byte("value")}
	putOp := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: put}}
	delOp := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("k")}}}
	rangeOp := &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k")}}}
	nested := &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Failure: []*pb.RequestOp{putOp}}}}
	grows := []*pb.InternalRaftRequest{
		{Put: put},
		{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{rangeOp}, Failure: []*pb.RequestOp{putOp}}},
		{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{nested}}},
		{LeaseGrant: &pb.LeaseGrantRequest{TTL: 10}},
	}
	for i, r := range grows {
		if spaceCost(r) <= 0 {
			t.Errorf("request %d may grow the store but costs %d", i, spaceCost(r))
		}
	}
	free := []*pb.InternalRaftRequest{
		{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("k")}},
		{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{rangeOp, delOp}, Failure: []*pb.RequestOp{rangeOp}}},
		{Compaction: &pb.CompactionRequest{Revision: 3}},
		{Alarm: &pb.AlarmRequest{}},
		{Range: &pb.RangeRequest{Key: []byte("k")}},
		{LeaseRevoke: &pb.LeaseRevokeRequest{ID: 1}},
	}
	for i, r := range free {
		if spaceCost(r) != 0 {
			t.Errorf("request %d cannot grow the store but costs %d", i, spaceCost(r))
		}
	}
	if c := spaceCost(&pb.InternalRaftRequest{Put: put}); c != kvOverhead+6 {
		t.Errorf("put cost %d, want %d", c, kvOverhead+6)
	}
}

func TestApplierRefusesGrowingRequestsWhileNoSpace(t *testing.T) {
	s := &Server{}
	put := &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}
	putOp := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: put}}
	delOp := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("k")}}}
	growing := []*pb.InternalRaftRequest{
		{Put: put},
		{Txn: &pb.TxnRequest{Failure: []*pb.RequestOp{putOp}}},
		{LeaseGrant: &pb.LeaseGrantRequest{TTL: 5}},
	}
	others := []*pb.InternalRaftRequest{
		{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("k")}},
		{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{delOp}}},
		{Compaction: &pb.CompactionRequest{Revision: 2}},
	}
	check := func(noSpace bool) {
		t.Helper()
		for i, r := range growing {
			res, ok := s.applyMaintenance(nil, r)
			if ok != noSpace {
				t.Fatalf("NOSPACE=%v: growing request %d intercepted=%v", noSpace, i, ok)
			}
			if ok && !errors.Is(res.(apply.Result).Err, ErrNoSpace) {
				t.Fatalf("growing request %d: result %+v, want ErrNoSpace", i, res)
			}
		}
		for i, r := range others {
			if _, ok := s.applyMaintenance(nil, r); ok {
				t.Fatalf("NOSPACE=%v: request %d intercepted", noSpace, i)
			}
		}
	}
	check(false)
	// CORRUPT refuses every write and compaction (corrupt.go), not just
	// the growing ones.
	s.alarms.reset([]*pb.AlarmMember{am(1, pb.AlarmType_CORRUPT)})
	for i, r := range append(slices.Clone(growing), others...) {
		res, ok := s.applyMaintenance(nil, r)
		if !ok || !errors.Is(res.(apply.Result).Err, ErrCorrupt) {
			t.Fatalf("CORRUPT: request %d: intercepted=%v result %+v, want ErrCorrupt", i, ok, res)
		}
	}
	s.alarms.reset([]*pb.AlarmMember{am(1, pb.AlarmType_NOSPACE)})
	check(true)
}
