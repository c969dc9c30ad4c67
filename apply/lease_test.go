package apply

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// fakeLessor records which lease request it received.
type fakeLessor struct{ got string }

func (f *fakeLessor) Grant(r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	f.got = "grant"
	return &pb.LeaseGrantResponse{ID: r.ID, TTL: r.TTL}, nil
}

func (f *fakeLessor) Revoke(*pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	f.got = "revoke"
	return nil, errors.New("revoke failed")
}

func (f *fakeLessor) Checkpoint(*pb.LeaseCheckpointRequest) (*pb.LeaseCheckpointResponse, error) {
	f.got = "checkpoint"
	return &pb.LeaseCheckpointResponse{}, nil
}

func TestApplyLeaseDispatch(t *testing.T) {
	for _, tc := range []struct {
		req     *pb.InternalRaftRequest
		want    string
		wantErr bool
	}{
		{&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: 3, TTL: 5}}, "grant", false},
		{&pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: 3}}, "revoke", true},
		{&pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{}}, "checkpoint", false},
		{&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k")}}, "", false},
	} {
		f := &fakeLessor{}
		res, ok := ApplyLease(f, tc.req)
		if ok != (tc.want != "") || f.got != tc.want {
			t.Errorf("ApplyLease(%v): ok %v, called %q; want %q", tc.req, ok, f.got, tc.want)
		}
		if ok && (res.Err != nil) != tc.wantErr {
			t.Errorf("ApplyLease(%v): err %v", tc.req, res.Err)
		}
		if ok && !tc.wantErr && res.Resp == nil {
			t.Errorf("ApplyLease(%v): no response", tc.req)
		}
	}
	res, _ := ApplyLease(&fakeLessor{}, &pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: 3, TTL: 5}})
	if g := res.Resp.(*pb.LeaseGrantResponse); g.ID != 3 || g.TTL != 5 {
		t.Errorf("grant response = %v", g)
	}
}
