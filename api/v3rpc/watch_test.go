package v3rpc

import (
	"bytes"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

func fragmentInput(sizes []int) *pb.WatchResponse {
	wr := &pb.WatchResponse{Header: &pb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 99, RaftTerm: 3}, WatchId: 7}
	for i, n := range sizes {
		wr.Events = append(wr.Events, &mvccpb.Event{Kv: &mvccpb.KeyValue{
			Key: []byte(fmt.Sprintf("k%03d", i)), Value: bytes.Repeat([]byte{'v'}, n), ModRevision: int64(i + 2),
		}})
	}
	return wr
}

func TestSendFragmentsSplitsInOrderUnderLimit(t *testing.T) {
	const limit = 1000
	sizes := []int{100, 300, 50, 1500, 10, 10, 400, 400, 400, 5, 700}
	wr := fragmentInput(sizes)
	var got []*pb.WatchResponse
	if err := sendFragments(wr, limit, func(r *pb.WatchResponse) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) < 3 {
		t.Fatalf("%d responses for %d bytes over a %d-byte limit", len(got), proto.Size(wr), limit)
	}
	var evs []*mvccpb.Event
	for i, r := range got {
		last := i == len(got)-1
		if r.Fragment == last {
			t.Errorf("response %d: fragment %v (want true on all but the last)", i, r.Fragment)
		}
		if r.WatchId != 7 || r.Header.Revision != 99 {
			t.Errorf("response %d lost its header or ID: %v", i, r)
		}
		if size := proto.Size(r); size > limit && len(r.Events) > 1 {
			t.Errorf("response %d: %d bytes over the limit with %d events", i, size, len(r.Events))
		}
		if !last {
			// Greedy: the next event would not have fit.
			more := proto.Clone(r).(*pb.WatchResponse)
			more.Events = append(more.Events, got[i+1].Events[0])
			if proto.Size(more) < limit {
				t.Errorf("response %d: the next event would have fit (%d bytes)", i, proto.Size(more))
			}
		}
		evs = append(evs, r.Events...)
	}
	if len(evs) != len(wr.Events) {
		t.Fatalf("%d events after splitting, want %d", len(evs), len(wr.Events))
	}
	for i := range evs {
		if !proto.Equal(evs[i], wr.Events[i]) {
			t.Fatalf("event %d differs or is out of order", i)
		}
	}
}

func TestSendFragmentsLeavesSmallOrSingleResponses(t *testing.T) {
	for _, sizes := range [][]int{{10, 10}, {5000}} {
		wr := fragmentInput(sizes)
		var got []*pb.WatchResponse
		_ = sendFragments(wr, 1000, func(r *pb.WatchResponse) error { got = append(got, r); return nil })
		if len(got) != 1 || got[0] != wr || got[0].Fragment {
			t.Errorf("sizes %v: %d responses, want the original once", sizes, len(got))
		}
	}
}
