package server

import (
	"errors"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestDivergentFindsTheMinority(t *testing.T) {
	at := func(id uint64, h uint32) hashReport {
		return hashReport{Member: id, Hash: h, CompactRev: 3, HashRev: 10}
	}
	failed := hashReport{Member: 9, err: errors.New("unreachable")}
	cases := []struct {
		name   string
		leader hashReport
		peers  []hashReport
		want   []uint64
	}{
		{"all agree", at(1, 7), []hashReport{at(2, 7), at(3, 7)}, nil},
		{"one follower diverged", at(1, 7), []hashReport{at(2, 7), at(3, 8)}, []uint64{3}},
		{"the leader diverged", at(1, 8), []hashReport{at(2, 7), at(3, 7)}, []uint64{1}},
		{"tie keeps the leader's hash", at(1, 7), []hashReport{at(2, 8)}, []uint64{2}},
		{"failed peers are not compared", at(1, 7), []hashReport{failed, at(3, 8)}, []uint64{3}},
		{"another revision is not compared", at(1, 7), []hashReport{{Member: 2, Hash: 8, CompactRev: 3, HashRev: 11}}, nil},
		{"another compaction point is not compared", at(1, 7), []hashReport{{Member: 2, Hash: 8, CompactRev: 4, HashRev: 10}}, nil},
		{"two of five diverged", at(1, 7), []hashReport{at(2, 7), at(3, 5), at(4, 7), at(5, 6)}, []uint64{3, 5}},
	}
	for _, c := range cases {
		if got := divergent(c.leader, c.peers); !slices.Equal(got, c.want) {
			t.Errorf("%s: divergent = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestCorruptAlarmRefusesWritesLikeEtcd(t *testing.T) {
	refused := []*pb.InternalRaftRequest{
		{Put: &pb.PutRequest{Key: []byte("k")}},
		{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("k")}},
		{Txn: &pb.TxnRequest{}},
		{Compaction: &pb.CompactionRequest{Revision: 1}},
		{LeaseGrant: &pb.LeaseGrantRequest{TTL: 5}},
		{LeaseRevoke: &pb.LeaseRevokeRequest{ID: 1}},
	}
	for _, r := range refused {
		if !corruptRefuses(r) {
			t.Errorf("not refused under CORRUPT: %v", r)
		}
	}
	allowed := []*pb.InternalRaftRequest{
		{Alarm: &pb.AlarmRequest{}},
		{Range: &pb.RangeRequest{Key: []byte("k")}},
		{LeaseCheckpoint: &pb.LeaseCheckpointRequest{}},
	}
	for _, r := range allowed {
		if corruptRefuses(r) {
			t.Errorf("refused under CORRUPT: %v", r)
		}
	}
}
